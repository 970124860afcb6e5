// The headers and the default body of a rate-limited response, shared by
// sluice/http and sluice/fastify. Pure functions of a limiter's answer: the
// middleware sets what they return.
//
// The standard fields follow draft-ietf-httpapi-ratelimit-headers-11 (May
// 2026): two Structured Fields (RFC 9651) Lists,
//   RateLimit-Policy: "100-in-1min";q=100;w=60
//   RateLimit: "100-in-1min";r=42;t=17
// which is also what express-rate-limit 8 sends for `standardHeaders:
// 'draft-8'` (drafts 8 to 11 agree on this syntax), minus its `pk` parameter:
// a partition key made of a hash of the client's IP (the default key) is
// cheap to reverse, and the draft asks servers not to return keys that carry
// sensitive information.
import type { KeyedRateLimit, RateLimitResult } from './keyed-limit.js'
import { show } from './validate.js'

/** Which rate-limit headers to send; `Retry-After` goes with every refusal regardless. */
export type HeadersMode = 'draft' | 'legacy' | 'both' | false

/**
 * What `X-RateLimit-Reset` counts: seconds since the epoch at which the key
 * is full again (express-rate-limit, GitHub), or seconds from now
 * (@fastify/rate-limit). Each framework's entry keeps what its users are
 * migrating from.
 */
export type LegacyReset = 'epoch' | 'delta'

/** Whole seconds, rounded up: a client that waits that long is never early. */
export const seconds = (ms: number): number => Math.ceil(ms / 1000)

/**
 * `Retry-After` of a refusal, in seconds: at least 1, so that a limiter that
 * cannot say when (a zero `retryAfterMs`) does not invite an immediate retry.
 */
export const retryAfterSeconds = (result: RateLimitResult): number => Math.max(1, seconds(result.retryAfterMs))

/**
 * The default policy name, as express-rate-limit names its policies: the
 * quota and the window, `100-in-1min`, `10-in-1.5sec`, `5000-in-24hrs`.
 */
export function defaultPolicyName(limiter: KeyedRateLimit): string {
  const ms = limiter.windowMs
  const round = (n: number): number => Math.round(n * 1000) / 1000
  let window: string
  if (ms < 60_000) window = `${round(ms / 1000)}sec`
  else if (ms < 3_600_000) window = `${round(ms / 60_000)}min`
  else if (ms < 86_400_000) window = `${round(ms / 3_600_000)}hr${ms > 3_600_000 ? 's' : ''}`
  else window = `${round(ms / 86_400_000)}day${ms > 86_400_000 ? 's' : ''}`
  return `${limiter.capacity}-in-${window}`
}

/** Checks a policy name: a Structured Field String holds printable ASCII only. */
export function validatePolicyName(value: unknown, name: string): string {
  if (typeof value !== 'string' || value.length === 0 || !/^[\x20-\x7e]+$/.test(value)) {
    throw new TypeError(`${name} must be a non-empty string of printable ASCII characters, got ${show(value)}`)
  }
  return value
}

/** `value` as a Structured Field String (RFC 9651 section 4.1.6): quoted, `"` and `\` escaped. */
const sfString = (value: string): string => `"${value.replace(/[\\"]/g, '\\$&')}"`

/** What a limiter's headers need that does not change between requests. */
export interface HeaderPlan {
  readonly mode: HeadersMode
  readonly legacyReset: LegacyReset
  readonly capacity: string
  /** The policy name, serialized. */
  readonly name: string
  /** The whole `RateLimit-Policy` value. */
  readonly policy: string
}

export function headerPlan(limiter: KeyedRateLimit, mode: HeadersMode, legacyReset: LegacyReset, policyName: string): HeaderPlan {
  const name = sfString(policyName)
  // `w` must be a positive integer number of seconds (draft section 3.1.3).
  const window = Math.max(1, seconds(limiter.windowMs))
  return { mode, legacyReset, capacity: String(limiter.capacity), name, policy: `${name};q=${limiter.capacity};w=${window}` }
}

/** How to set headers on a `Target`: a node:http response, a fastify reply. */
export interface HeaderSink<Target> {
  /** Sets a field, replacing any value. */
  set(target: Target, name: string, value: string): void
  /** Adds a member to a List field (RateLimit, RateLimit-Policy), keeping another limiter's. */
  append(target: Target, name: string, value: string): void
}

/**
 * Writes the rate-limit headers of one answer. The effective window `t` is
 * the time within which the client should use no more than `r` (draft
 * section 4.1.2): until the key is full again when allowed, and until the
 * same request would be allowed when refused, so that it equals
 * `Retry-After` as the draft asks (section 6: `Retry-After` no earlier than
 * the end of the effective window).
 */
export function writeHeaders<Target>(plan: HeaderPlan, result: RateLimitResult, sink: HeaderSink<Target>, target: Target): void {
  if (!result.allowed) sink.set(target, 'Retry-After', String(retryAfterSeconds(result)))
  const mode = plan.mode
  if (mode === 'draft' || mode === 'both') {
    const t = result.allowed ? seconds(result.resetAfterMs) : retryAfterSeconds(result)
    sink.append(target, 'RateLimit-Policy', plan.policy)
    sink.append(target, 'RateLimit', `${plan.name};r=${result.remaining};t=${t}`)
  }
  if (mode === 'legacy' || mode === 'both') {
    sink.set(target, 'X-RateLimit-Limit', plan.capacity)
    sink.set(target, 'X-RateLimit-Remaining', String(result.remaining))
    sink.set(
      target,
      'X-RateLimit-Reset',
      String(plan.legacyReset === 'epoch' ? seconds(Date.now() + result.resetAfterMs) : seconds(result.resetAfterMs)),
    )
  }
}

/** The default 429 body, in the shape of fastify's error replies. */
export function refusalBody(result: RateLimitResult): string {
  return `{"statusCode":429,"error":"Too Many Requests","message":"Rate limit exceeded, retry in ${retryAfterSeconds(result)} s"}`
}

export const JSON_CONTENT_TYPE = 'application/json; charset=utf-8'
