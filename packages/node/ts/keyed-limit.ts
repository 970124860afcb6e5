// The interface every keyed rate limit offers, whatever its reach: the
// in-process RateLimiter, and later the cross-process and Redis ones. The
// HTTP middleware (sluice/http, sluice/fastify) depends on this alone, so a
// limiter passed to it may be shared, opened by name, or remote.

/** A key: a string (compared as its UTF-8 bytes) or a safe integer. `1` and `'1'` are different keys. */
export type RateLimitKey = string | number

/** Why a request was not allowed. */
export type RateLimitReason = 'limited' | 'keys-full'

/** The answer to `tryTake` (and `peek`). Times are whole milliseconds, rounded up. */
export interface RateLimitResult {
  /** Whether the tokens were taken. */
  readonly allowed: boolean
  /** Whole tokens the key has left after this decision. */
  readonly remaining: number
  /** Until a request of the same size would be allowed (0 when allowed). */
  readonly retryAfterMs: number
  /** Until the key is back to a fresh key's state (its full quota). */
  readonly resetAfterMs: number
  /** Set when not allowed: over the limit, or no room for a new key (`maxKeys`). */
  readonly reason?: RateLimitReason
}

/** What HTTP middleware needs from a keyed limit. */
export interface KeyedRateLimit {
  /** The quota: most tokens a fresh key can take at once. */
  readonly capacity: number
  /** Milliseconds for a key to go from empty back to its full quota (the window). */
  readonly windowMs: number
  /** Takes `n` tokens from `key` if it has them now. A remote limit answers with a promise. */
  tryTake(key: RateLimitKey, n?: number): RateLimitResult | Promise<RateLimitResult>
}
