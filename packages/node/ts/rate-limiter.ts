import { rateLimiterRefused, rateLimiterTake, traceWait } from './diagnostics.js'
import { nextToken } from './doorbell.js'
import { Errors } from './errors.js'
import { keepAliveInFlight } from './in-flight.js'
import type { KeyedRateLimit, RateLimitKey, RateLimitReason, RateLimitResult } from './keyed-limit.js'
import {
  attachById,
  DONE,
  KEYS_FULL,
  limiterCancel,
  limiterPeek,
  limiterRedeem,
  limiterReserve,
  limiterReset,
  limiterTryTake,
  MAX_RATE_LIMIT_KEY_BYTES,
  NativeNamedRateLimiter,
  NativeRateLimiter,
  type FastHandle,
  type LimiterOutcome,
} from './native.js'
import { isMetricsBuffer, metricsBytes, SharedMetrics, type WaitMetrics } from './metrics.js'
import { cached, callNative, checkSame, remember, validateDir } from './named.js'
import { openLanedMetrics, unlinkMetrics } from './named-metrics.js'
import { openInStore, type Store } from './open.js'
import { kAttach, kOpenRateLimiter } from './symbols.js'
import {
  intervalNanos,
  MAX_BURST_NANOS,
  MAX_CAPACITY,
  rateFields,
  validateRate,
  waitForReservation,
  type ReservationSteps,
  type TakeOptions,
} from './token-bucket.js'
import { show, validateInteger, validateName, validateOptions } from './validate.js'
import { validateWaitOptions } from './wait.js'

/** How a limiter counts: a token bucket per key, or the two-window estimate. */
export type RateLimitAlgorithm = 'gcra' | 'sliding-window'

/** What a new key gets when `maxKeys` keys are live. */
export type RateLimitWhenFull = 'evict' | 'refuse'

interface CommonOptions {
  /**
   * `'gcra'` (default): a token bucket per key, refilled continuously.
   * `'sliding-window'`: at most `limit` per window of `windowMs`, counted
   * as the current window plus the previous one weighted by its overlap.
   */
  algorithm?: RateLimitAlgorithm
  /** Most keys remembered at once (default 100,000): the memory bound. */
  maxKeys?: number
  /**
   * A new key when `maxKeys` keys are live: `'evict'` (default) forgets the
   * least recently used one, `'refuse'` answers `reason: 'keys-full'`.
   */
  whenFull?: RateLimitWhenFull
}

/** `limit` per `windowMs`: a burst of `limit`, refilled `limit` per `windowMs`. */
interface WindowOptions {
  limit: number
  windowMs: number
  capacity?: never
  refillPerSecond?: never
  tokensPerInterval?: never
  interval?: never
}

/** A key's burst and how fast it refills, as for a `TokenBucket`. */
interface RefillOptions {
  /** Most tokens a key holds (its burst); a new key starts full. */
  capacity: number
  /** Tokens added per second, continuously (fractions allowed). */
  refillPerSecond: number
  tokensPerInterval?: never
  interval?: never
  limit?: never
  windowMs?: never
}

interface IntervalOptions {
  capacity: number
  /** Tokens added per `interval` milliseconds, continuously. */
  tokensPerInterval: number
  /** Milliseconds per `tokensPerInterval`. */
  interval: number
  refillPerSecond?: never
  limit?: never
  windowMs?: never
}

/** One of the three ways to give the rate, and the common options. */
export type RateLimiterOptions = CommonOptions & (WindowOptions | RefillOptions | IntervalOptions)

/** Every option at once, as the constructor reads them (before it knows which form they take). */
interface AnyOptions extends CommonOptions {
  limit: number
  windowMs: number
  capacity: number
  refillPerSecond: number
  tokensPerInterval: number
  interval: number
}

/** A cloneable description of a limiter, for `RateLimiter.from` in another thread. */
export type RateLimiterHandle = LocalRateLimiterHandle | NamedRateLimiterHandle

/** The handle of a limiter made with `new RateLimiter` (threads of one process). */
export interface LocalRateLimiterHandle {
  readonly kind: 'sluice:RateLimiter'
  readonly id: number
  /**
   * The counters of `metrics()`, shared by every thread (always in a handle
   * sluice made; without it, `from` counts for its own thread alone).
   */
  readonly metrics?: SharedArrayBuffer
}

/** `RateLimiter.metrics()`: counts across every thread that shares the limiter, all keys together. */
export interface RateLimiterMetrics extends WaitMetrics {
  /** Keys remembered now (`size`). */
  keys: number
}

/** `RateLimiter.open`'s options: the constructor's (GCRA only), and where the segment lives. */
export type OpenRateLimiterOptions = RateLimiterOptions & {
  /** Directory of the segments (see `Semaphore.open`). */
  dir?: string
}

/** A cloneable description of a named limiter: `RateLimiter.from` re-opens it by name. */
export interface NamedRateLimiterHandle {
  readonly kind: 'sluice:NamedRateLimiter'
  readonly name: string
  readonly options: OpenRateLimiterOptions
}

const kDefaultOptions = { algorithm: 'gcra', maxKeys: 100_000, whenFull: 'evict' } as const


/** The most keys a limiter may remember. */
const MAX_KEYS = 2 ** 32 - 1
/** The most keys a named limiter may remember (its table is allocated up front, 64 B a key). */
const MAX_NAMED_KEYS = 2 ** 24

/**
 * Where native code writes a decision's numbers: `[remaining, retryAfterMs,
 * resetAfterMs]`. One per thread, registered with each limiter's handle
 * (`decisionHandle`) and read at once after each call, so that a decision
 * allocates nothing but the result object and passes no array. Shared
 * memory because it cannot be detached: native code keeps its address.
 */
const scratch = new Float64Array(new SharedArrayBuffer(3 * Float64Array.BYTES_PER_ELEMENT))

/**
 * A keyed rate limiter: one limit per key (a user, an API key, an IP),
 * shared by every thread that has its handle, in memory bounded by
 * `maxKeys`. Keys are strings (compared as UTF-8, 1 to 512 bytes) or safe
 * integers; `1` and `'1'` are different keys.
 */
export class RateLimiter implements KeyedRateLimit {
  /** Longest string key, in UTF-8 bytes. */
  static readonly MAX_KEY_BYTES: number = MAX_RATE_LIMIT_KEY_BYTES

  readonly #native: NativeRateLimiter | NativeNamedRateLimiter
  /** Only for a named limiter: what `handle` returns. */
  #named: NamedRateLimiterHandle | undefined
  readonly #fast: FastHandle
  readonly #capacity: number
  /** Nanoseconds to refill one token (GCRA); the window is `capacity` of them. */
  readonly #interval: number
  readonly #maxKeys: number
  readonly #metrics: SharedMetrics
  /** How a waiting take ends, for `waitForReservation`. */
  readonly #steps: ReservationSteps = {
    redeem: (token) => limiterRedeem(this.#fast, token),
    cancel: (token) => limiterCancel(this.#fast, token),
  }

  constructor(options: RateLimiterOptions)
  /** @internal adopts a native limiter already attached to this thread */
  constructor(attach: typeof kAttach, native: NativeRateLimiter | NativeNamedRateLimiter, metrics?: SharedArrayBuffer | SharedMetrics)
  constructor(
    options: RateLimiterOptions | typeof kAttach,
    attached?: NativeRateLimiter | NativeNamedRateLimiter,
    metrics?: SharedArrayBuffer | SharedMetrics,
  ) {
    this.#metrics = metrics instanceof SharedMetrics ? metrics : new SharedMetrics(metrics)
    if (options === kAttach) {
      this.#native = attached!
    } else {
      const opts = validateOptions<AnyOptions>(options, 'options')
      const { capacity, interval } = rateOf(opts)
      const algorithm = oneOf(opts.algorithm ?? kDefaultOptions.algorithm, 'options.algorithm', ['gcra', 'sliding-window'])
      const maxKeys = validateInteger(opts.maxKeys ?? kDefaultOptions.maxKeys, 'options.maxKeys', 1, MAX_KEYS)
      const whenFull = oneOf(opts.whenFull ?? kDefaultOptions.whenFull, 'options.whenFull', ['evict', 'refuse'])
      this.#native = new NativeRateLimiter(capacity, interval, algorithm, maxKeys, whenFull)
    }
    this.#fast = this.#native.decisionHandle(scratch) as FastHandle
    this.#capacity = this.#native.capacity
    this.#interval = this.#native.intervalNanos
    this.#maxKeys = this.#native.maxKeys
  }

  /**
   * The limiter that `handle` describes, attached to this thread.
   *
   * @throws {TypeError} if `handle` is not a rate limiter handle
   * @throws {InvalidHandleError} if its limiter no longer exists
   */
  static from(handle: RateLimiterHandle): RateLimiter {
    const named = validateOptions<NamedRateLimiterHandle>(handle, 'handle')
    if (named.kind === 'sluice:NamedRateLimiter') return RateLimiter.#openNamed(named.name!, named.options!)
    const { kind, id, metrics } = validateOptions<LocalRateLimiterHandle>(handle, 'handle')
    if (kind !== 'sluice:RateLimiter' || typeof id !== 'number' || (metrics !== undefined && !isMetricsBuffer(metrics))) {
      throw new TypeError(`handle must be a RateLimiter handle (limiter.handle), got ${show(handle)}`)
    }
    // A handle made by hand without `metrics` still attaches, with counters of this thread's own.
    const native = attachById((id) => NativeRateLimiter.fromId(id), id, 'rate limiter')
    return new RateLimiter(kAttach, native, metrics ?? new SharedArrayBuffer(metricsBytes()))
  }

  /** A cloneable description of this limiter, for `RateLimiter.from` in another thread. */
  get handle(): RateLimiterHandle {
    if (this.#named !== undefined) return this.#named
    keepAliveInFlight(this)
    this.#metrics.share()
    // Named ones returned above: a process-local primitive's counters are a SharedArrayBuffer.
    return { kind: 'sluice:RateLimiter', id: (this.#native as NativeRateLimiter).id, metrics: this.#metrics.buffer as SharedArrayBuffer }
  }

  /**
   * The limiter every process of this machine (and every thread in it) gets
   * for `name`, in shared memory: keys, tokens and waits are the same for all
   * of them. The first opener creates it; a later one must ask for the same
   * rate, `maxKeys` and `whenFull`. GCRA only. A process killed mid-`take`
   * leaves the tokens it had reserved spent (never more than the limit).
   *
   * @throws {TypeError | RangeError} naming `name` or the option at fault
   * @throws {MismatchError} if `name` exists with other parameters
   * @throws {UnsupportedPlatformError} anywhere but Linux
   */
  /** The limiter named `name` in `options.store` (`redis(client)` from `sluice/redis`). */
  static open<S>(name: string, options: RateLimiterOptions & { store: Store<typeof kOpenRateLimiter, S> }): S
  static open(name: string, options: OpenRateLimiterOptions): RateLimiter
  static open(name: string, options: OpenRateLimiterOptions | { store: unknown }): unknown {
    const stored = openInStore(kOpenRateLimiter, name, options)
    if (stored !== undefined) return stored
    return RateLimiter.#openNamed(name, options as OpenRateLimiterOptions)
  }

  static #openNamed(name: string, options: OpenRateLimiterOptions): RateLimiter {
    validateName(name, 'name')
    const opts = validateOptions<AnyOptions & { dir?: string }>(options, 'options')
    const { capacity, interval } = rateOf(opts)
    const algorithm = oneOf(opts.algorithm ?? kDefaultOptions.algorithm, 'options.algorithm', ['gcra', 'sliding-window'])
    if (algorithm !== 'gcra') {
      throw new RangeError(`options.algorithm must be 'gcra' for RateLimiter.open (the sliding window is not shared across processes yet), got ${show(algorithm)}`)
    }
    const maxKeys = validateInteger(opts.maxKeys ?? kDefaultOptions.maxKeys, 'options.maxKeys', 1, MAX_NAMED_KEYS)
    const whenFull = oneOf(opts.whenFull ?? kDefaultOptions.whenFull, 'options.whenFull', ['evict', 'refuse'])
    const dir = validateDir(opts.dir)
    const existing = cached<RateLimiter>('rate-limiter', dir, name)
    if (existing !== undefined) {
      const caller = 'RateLimiter.open'
      checkSame(caller, name, 'capacity', existing.capacity, capacity)
      checkSame(caller, name, 'interval (ns per token)', existing.#interval, interval)
      checkSame(caller, name, 'maxKeys', existing.maxKeys, maxKeys)
      if (existing.whenFull !== whenFull) checkSame(caller, name, 'whenFull', 0, 1)
      return existing
    }
    const native = callNative('RateLimiter.open', name, () =>
      NativeNamedRateLimiter.open(name, capacity, interval, maxKeys, whenFull, dir),
    )
    const limiter = new RateLimiter(kAttach, native, openLanedMetrics('RateLimiter.open', name, dir))
    limiter.#named = Object.freeze({ kind: 'sluice:NamedRateLimiter', name, options: Object.freeze({ ...options }) })
    remember('rate-limiter', dir, name, limiter, native)
    return limiter
  }

  /** Frees the name of a named limiter (see `Semaphore.unlink`); false if there was none. */
  static unlink(name: string, options?: { dir?: string }): boolean {
    validateName(name, 'name')
    const dir = validateDir(validateOptions<{ dir?: string }>(options, 'options').dir)
    const unlinked = callNative('RateLimiter.unlink', name, () => NativeNamedRateLimiter.unlink(name, dir))
    unlinkMetrics('RateLimiter.unlink', name, dir)
    return unlinked
  }

  /**
   * Counts of every thread that shares the limiter, over all keys: takes
   * granted (`take`, `tryTake`), refused (`tryTake` not allowed, a new key
   * refused by `whenFull: 'refuse'`), timed out, aborted, the takes waiting
   * now, and the wait-time histogram. `peek` counts nothing.
   */
  metrics(): RateLimiterMetrics {
    return { ...this.#metrics.read(), keys: this.#native.size }
  }

  /** Most tokens a fresh key can take at once (its burst, or the limit per window). */
  get capacity(): number {
    return this.#capacity
  }

  /** Milliseconds for a key to go from empty back to its full quota (the window). */
  get windowMs(): number {
    return (this.#capacity * this.#interval) / 1e6
  }

  get algorithm(): RateLimitAlgorithm {
    return this.#native.algorithm as RateLimitAlgorithm
  }

  /** Most keys remembered at once. */
  get maxKeys(): number {
    return this.#maxKeys
  }

  get whenFull(): RateLimitWhenFull {
    return this.#native.whenFull as RateLimitWhenFull
  }

  /** Keys remembered now (a key back to its full quota may be forgotten at any time). */
  get size(): number {
    return this.#native.size
  }

  /**
   * Takes `n` tokens (1..capacity) from `key` if it has them now and no
   * `take` on it waits ahead. Times in the result are whole ms, rounded up.
   *
   * @throws {TypeError | RangeError} naming `key` or `n`, for a bad one
   */
  tryTake(key: RateLimitKey, n = 1): RateLimitResult {
    // 1 is always valid (capacity >= 1): the common call skips the check.
    if (n !== 1) validateInteger(n, 'n', 1, this.#capacity)
    const outcome = limiterTryTake(this.#fast, key, n)
    if (outcome === DONE) {
      this.#metrics.acquired()
      return resultOf(outcome)
    }
    const result = resultOf(outcome)
    this.#refused(key, n, result.reason!)
    return result
  }

  /** Counts and publishes a refusal (rate limited, or a new key refused). */
  #refused(key: RateLimitKey, tokens: number, reason: RateLimitReason): void {
    this.#metrics.refused()
    if (rateLimiterRefused.hasSubscribers) rateLimiterRefused.publish({ limiter: this, key, tokens, reason })
  }

  /** What `tryTake(key, n)` would answer now, taking nothing. */
  peek(key: RateLimitKey, n = 1): RateLimitResult {
    if (n !== 1) validateInteger(n, 'n', 1, this.#capacity)
    return resultOf(limiterPeek(this.#fast, key, n))
  }

  /**
   * Waits for `n` tokens (1..capacity) of `key`; takes on one key are served
   * in the order made. Rejects with `signal.reason` if the signal aborts
   * first (the tokens go back), at once with a `TimeoutError` if they would
   * come after `timeout` ms, and with a `KeysFullError` if `key` is new and
   * `maxKeys` keys are live under `whenFull: 'refuse'`.
   */
  take(key: RateLimitKey, n = 1, options?: TakeOptions): Promise<void> {
    let signal: AbortSignal | undefined, timeout: number | undefined
    try {
      validateInteger(n, 'n', 1, this.#capacity)
      ;({ signal, timeout } = validateWaitOptions(options))
    } catch (error) {
      return Promise.reject(error)
    }
    if (signal?.aborted) return Promise.reject(signal.reason)
    if (rateLimiterTake.hasSubscribers) {
      return traceWait(rateLimiterTake, { limiter: this, key, tokens: n }, this.#take, this, key, n, signal, timeout)
    }
    return this.#take(key, n, signal, timeout)
  }

  #take(key: RateLimitKey, n: number, signal: AbortSignal | undefined, timeout: number | undefined): Promise<void> {
    const token = nextToken()
    let waitNanos: number | null
    try {
      waitNanos = limiterReserve(this.#fast, key, n, token)
    } catch (error) {
      return Promise.reject(error)
    }
    if (waitNanos === null) {
      this.#refused(key, n, 'keys-full')
      return Promise.reject(Errors.keysFull(this.#maxKeys))
    }
    return waitForReservation(waitNanos, token, this.#steps, signal, timeout, this.#metrics)
  }

  /** Forgets `key`, which starts again with its full quota; whether it was remembered. */
  reset(key: RateLimitKey): boolean {
    return limiterReset(this.#fast, key) === 1
  }
}

/** The result object of a decision whose numbers are in `scratch`. */
function resultOf(outcome: LimiterOutcome): RateLimitResult {
  const remaining = scratch[0]!
  const retryAfterMs = scratch[1]!
  const resetAfterMs = scratch[2]!
  if (outcome === DONE) return { allowed: true, remaining, retryAfterMs, resetAfterMs }
  return { allowed: false, remaining, retryAfterMs, resetAfterMs, reason: outcome === KEYS_FULL ? 'keys-full' : 'limited' }
}

/** @internal `capacity` and nanoseconds per token from whichever form the options use. */
export function rateOf(opts: Partial<AnyOptions>): { capacity: number; interval: number } {
  const { limit, windowMs, capacity, refillPerSecond, tokensPerInterval, interval } = opts
  const windowForm = limit !== undefined || windowMs !== undefined
  const refillForm = capacity !== undefined || refillPerSecond !== undefined || tokensPerInterval !== undefined || interval !== undefined
  if (windowForm && refillForm) {
    throw new TypeError(
      'options must give either limit and windowMs, or capacity with refillPerSecond (or tokensPerInterval and interval), not both',
    )
  }
  if (!windowForm) {
    if (!refillForm) {
      throw new TypeError('options must give limit and windowMs, or capacity with refillPerSecond (or tokensPerInterval and interval)')
    }
    const checked = validateInteger(capacity, 'options.capacity', 1, MAX_CAPACITY)
    const nanos = intervalNanos(opts)
    if (BigInt(checked) * BigInt(nanos) > MAX_BURST_NANOS) {
      throw new RangeError(
        `options.capacity (${checked}) tokens at ${rateFields(opts)} take longer than 2^63 ns (about 292 years) to refill: lower the capacity or raise the rate`,
      )
    }
    return { capacity: checked, interval: nanos }
  }
  const checked = validateInteger(limit, 'options.limit', 1, MAX_CAPACITY)
  const ms = validateRate(windowMs, 'options.windowMs')
  const nanos = Math.round((ms * 1e6) / checked)
  if (nanos < 1) {
    throw new RangeError(
      `options.windowMs must leave at least 1 ns per token of options.limit (${checked}), got ${show(windowMs)}`,
    )
  }
  if (!Number.isSafeInteger(nanos) || BigInt(checked) * BigInt(nanos) > MAX_BURST_NANOS) {
    throw new RangeError(`options.windowMs must be shorter than 2^63 ns (about 292 years), got ${show(windowMs)}`)
  }
  return { capacity: checked, interval: nanos }
}

export function oneOf<T extends string>(value: unknown, name: string, allowed: readonly T[]): T {
  if (!allowed.includes(value as T)) {
    throw new TypeError(`${name} must be ${allowed.map((a) => `'${a}'`).join(' or ')}, got ${show(value)}`)
  }
  return value as T
}
