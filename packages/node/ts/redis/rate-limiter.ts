import type { KeyedRateLimit, RateLimitKey, RateLimitResult } from '../keyed-limit.js'
import { oneOf, RateLimiter, rateOf, type RateLimiterOptions } from '../rate-limiter.js'
import type { TakeOptions } from '../token-bucket.js'
import { validateInteger, validateName, validateOptions } from '../validate.js'
import { keyPart, RedisGcra, unavailable, type DecisionMode, type OnDecisionError } from './gcra.js'
import type { RedisRateLimiterMetrics } from './metrics.js'
import type { RedisStore } from './store.js'

/** `RateLimiter.open(name, options)`'s options with a Redis store. */
export type RedisRateLimiterOptions = RateLimiterOptions & { store: RedisStore }

/** Longest string key, in UTF-8 bytes (as the in-process limiter). */
const MAX_KEY_BYTES = 512

/**
 * A keyed rate limiter (GCRA) in Redis, shared by every process that opens
 * its name on the same server with the same parameters. The same methods as
 * `RateLimiter`, except that every answer needs a round trip: `tryTake`,
 * `peek` and `reset` return promises. Keys are forgotten by Redis
 * (PEXPIRE) once back to their full quota, so memory is bounded by the keys
 * active within one window: `maxKeys` and `whenFull` are checked but have no
 * effect here (bound Redis itself with `maxmemory`).
 */
export class RedisRateLimiter implements KeyedRateLimit {
  static readonly MAX_KEY_BYTES: number = MAX_KEY_BYTES
  readonly name: string
  readonly capacity: number
  readonly #interval: number
  readonly #store: RedisStore
  readonly #gcra: RedisGcra
  readonly #cells: string
  readonly #options: RateLimiterOptions
  #local: RateLimiter | undefined

  /** @internal use `RateLimiter.open(name, { ..., store })` */
  constructor(store: RedisStore, name: string, options: RedisRateLimiterOptions) {
    this.name = validateName(name)
    const { store: _store, ...opts } = validateOptions<RedisRateLimiterOptions>(options, 'options')
    const { capacity, interval } = rateOf(opts as Parameters<typeof rateOf>[0])
    // Only GCRA has one cell per key that Redis can expire on its own.
    oneOf(opts.algorithm ?? 'gcra', 'options.algorithm', ['gcra'])
    if (opts.maxKeys !== undefined) validateInteger(opts.maxKeys, 'options.maxKeys', 1, 2 ** 32 - 1)
    oneOf(opts.whenFull ?? 'evict', 'options.whenFull', ['evict', 'refuse'])
    const tag = store.tag(this.name)
    this.capacity = capacity
    this.#interval = interval
    this.#store = store
    this.#options = opts as RateLimiterOptions
    this.#cells = `${tag}:rl:k:`
    this.#gcra = new RedisGcra(store, 'RateLimiter', this.name, `${tag}:rl:p`, `${tag}:rl:m`, capacity, interval)
  }

  /** Milliseconds for a key to go from empty back to its full quota (the window). */
  get windowMs(): number {
    return (this.capacity * this.#interval) / 1e6
  }

  get algorithm(): 'gcra' {
    return 'gcra'
  }

  /**
   * Resolves once the server holds this limiter's parameters: rejects with
   * a RangeError naming both values if another opener stored different ones
   * (as the first `tryTake`, `peek` or `take` would).
   */
  async ready(): Promise<void> {
    await this.#gcra.decide(`${this.#cells}-`, 1, 'peek')
  }

  /** The in-process twin asked under `whenUnavailable: 'local'`. */
  #twin(): RateLimiter {
    return (this.#local ??= new RateLimiter(this.#options))
  }

  /** A decision whose script call failed, by the store's policy (one function per limiter, none per decision). */
  readonly #onError: OnDecisionError = (error, key, n, mode) =>
    unavailable(this.#store, error, {
      open: (): RateLimitResult => ({ allowed: true, remaining: this.capacity - n, retryAfterMs: 0, resetAfterMs: 0 }),
      local: (): RateLimitResult => (mode === 'take' ? this.#twin().tryTake(key, n) : this.#twin().peek(key, n)),
    })

  #decide(key: RateLimitKey, n: number, mode: DecisionMode): Promise<RateLimitResult> {
    let cell: string
    try {
      if (n !== 1) validateInteger(n, 'n', 1, this.capacity)
      cell = this.#cells + keyPart(key, MAX_KEY_BYTES)
    } catch (error) {
      return Promise.reject(error)
    }
    return this.#gcra.decide(cell, n, mode, key, this.#onError)
  }

  /** Takes `n` tokens (1..capacity) from `key` if it has them now; one round trip. */
  tryTake(key: RateLimitKey, n = 1): Promise<RateLimitResult> {
    return this.#decide(key, n, 'take')
  }

  /** What `tryTake(key, n)` would answer now, taking nothing. */
  peek(key: RateLimitKey, n = 1): Promise<RateLimitResult> {
    return this.#decide(key, n, 'peek')
  }

  /**
   * Waits for `n` tokens of `key`, in order with every other take on it in
   * every process. Rejects with `signal.reason` if the signal aborts first
   * (the tokens go back), at once with a `TimeoutError` if they would come
   * after `timeout` ms.
   */
  take(key: RateLimitKey, n = 1, options?: TakeOptions): Promise<void> {
    let cell: string
    try {
      validateInteger(n, 'n', 1, this.capacity)
      cell = this.#cells + keyPart(key, MAX_KEY_BYTES)
    } catch (error) {
      return Promise.reject(error)
    }
    return this.#gcra.take(cell, n, options, {
      open: () => Promise.resolve(),
      local: () => this.#twin().take(key, n, options),
    })
  }

  /**
   * Counts of every process that uses this name on this server, all keys
   * together: one round trip, so a promise. `waiting` and `waitTime` are
   * this process's own; no `keys` (that would take a SCAN).
   */
  metrics(): Promise<RedisRateLimiterMetrics> {
    return this.#gcra.metrics()
  }

  /** Forgets `key` in every process; whether it was remembered. */
  async reset(key: RateLimitKey): Promise<boolean> {
    return this.#gcra.reset(this.#cells + keyPart(key, MAX_KEY_BYTES))
  }
}
