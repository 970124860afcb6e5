import { keepAliveInFlight } from './in-flight.js'
import { monotonicMs } from './clock.js'
import { tokenBucketRefused, tokenBucketTake, traceWait } from './diagnostics.js'
import { onCancellation } from './abort.js'
import { nextToken } from './doorbell.js'
import { Errors } from './errors.js'
import {
  attachById,
  bucketCancel,
  bucketReserve,
  bucketRedeem,
  bucketTryTake,
  DONE,
  NativeNamedTokenBucket,
  NativeTokenBucket,
  type FastHandle,
} from './native.js'
import { EXPIRED, LocalGcra } from './local-gcra.js'
import { isMetricsBuffer, metricsBytes, SharedMetrics, type WaitMetrics } from './metrics.js'
import { cached, callNative, checkSame, remember, validateDir } from './named.js'
import { openLanedMetrics, unlinkMetrics } from './named-metrics.js'
import { openInStore, type Store } from './open.js'
import { kAttach, kOpenTokenBucket } from './symbols.js'
import { MAX_TIMEOUT, show, validateInteger, validateName, validateOptions } from './validate.js'
import { validateWaitOptions } from './wait.js'

/** Either `refillPerSecond`, or `tokensPerInterval` per `interval` ms. */
export interface TokenBucketOptions {
  /** Most tokens the bucket holds (its burst); it starts full. */
  capacity: number
  /** Tokens added per second, continuously (fractions allowed). */
  refillPerSecond?: number
  /** Tokens added per `interval` milliseconds, continuously. */
  tokensPerInterval?: number
  /** Milliseconds per `tokensPerInterval`. */
  interval?: number
}

export interface TakeOptions {
  /** Aborting it withdraws the wait and gives its tokens back. */
  signal?: AbortSignal
  /**
   * Most milliseconds to wait. A take whose tokens would come later than
   * that rejects at once with a `TimeoutError`, taking nothing.
   */
  timeout?: number
}

/** A cloneable description of a bucket, for `TokenBucket.from` in another thread. */
export type TokenBucketHandle = LocalTokenBucketHandle | NamedTokenBucketHandle

/** A cloneable description of a named bucket: `TokenBucket.from` re-opens it by name. */
export interface NamedTokenBucketHandle {
  readonly kind: 'sluice:NamedTokenBucket'
  readonly name: string
  readonly options: OpenTokenBucketOptions
}

/** `TokenBucket.open`'s options: the constructor's, and where the segment lives (see `Semaphore.open`). */
export type OpenTokenBucketOptions = TokenBucketOptions & { dir?: string }

/** The handle of a bucket made with `new TokenBucket` (threads of one process). */
export interface LocalTokenBucketHandle {
  readonly kind: 'sluice:TokenBucket'
  readonly id: number
  /**
   * The counters of `metrics()`, shared by every thread (always in a handle
   * sluice made; without it, `from` counts for its own thread alone).
   */
  readonly metrics?: SharedArrayBuffer
}

/** `TokenBucket.metrics()`: counts across every thread that shares the bucket. */
export interface TokenBucketMetrics extends WaitMetrics {
  /** Whole tokens available now. */
  available: number
}

/** @internal The largest capacity (also a rate limiter's). */
export const MAX_CAPACITY = 2 ** 32 - 1
/** @internal The longest refill from empty the native bucket (or a rate limiter) can count (u64 nanoseconds). */
/**
 * The longest burst (refill from empty) a bucket or a keyed limiter's window
 * counts, 2^63 - 1 ns (the core's `MAX_BURST_NANOS`): a time past
 * `now + burst` then never wraps or saturates back within it.
 */
export const MAX_BURST_NANOS = 2n ** 63n - 1n

/**
 * A token bucket (GCRA): one rate limit shared by every thread that has its
 * handle. Waiting takes are served in the order they were made, a large one
 * included, with one timer each and no polling.
 *
 * Until its `handle` is first read, no other thread can reach the bucket, so
 * its state (one number) lives in JavaScript (`LocalGcra`) and a `tryTake`
 * costs no native call. Reading `handle` moves the state and this thread's
 * pending reservations to native memory, synchronously, and from then on
 * every call goes there. Takes waiting across the move carry on unchanged:
 * their timers redeem or cancel through whichever representation is current.
 */
export class TokenBucket {
  /** Set while the bucket is this thread's alone; then `#native` is unset. */
  #local: LocalGcra | undefined
  #native: NativeTokenBucket | NativeNamedTokenBucket | undefined
  /** Only for a named bucket: what `handle` returns. */
  #named: NamedTokenBucketHandle | undefined
  #fast: FastHandle | undefined
  readonly #capacity: number
  /** Nanoseconds to refill one token. */
  readonly #interval: number
  readonly #metrics: SharedMetrics
  /** How a waiting take ends, for `waitForReservation`. */
  readonly #steps: ReservationSteps = {
    redeem: (token) => this.#redeem(token),
    cancel: (token) => this.#cancel(token),
  }

  constructor(options: TokenBucketOptions)
  /** @internal adopts a native bucket already attached to this thread */
  constructor(attach: typeof kAttach, native: NativeTokenBucket | NativeNamedTokenBucket, metrics?: SharedArrayBuffer | SharedMetrics)
  constructor(
    options: TokenBucketOptions | typeof kAttach,
    attached?: NativeTokenBucket | NativeNamedTokenBucket,
    metrics?: SharedArrayBuffer | SharedMetrics,
  ) {
    this.#metrics = metrics instanceof SharedMetrics ? metrics : new SharedMetrics(metrics)
    if (options === kAttach) {
      this.#native = attached!
      this.#fast = this.#native.fastHandle() as FastHandle
      this.#capacity = this.#native.capacity
      this.#interval = this.#native.intervalNanos
    } else {
      const opts = validateOptions<TokenBucketOptions>(options, 'options')
      const capacity = validateInteger(opts.capacity, 'options.capacity', 1, MAX_CAPACITY)
      const nanos = intervalNanos(opts)
      // The bucket keeps `capacity * interval` (its burst) in 64-bit nanoseconds.
      if (BigInt(capacity) * BigInt(nanos) > MAX_BURST_NANOS) {
        throw new RangeError(
          `options.capacity (${capacity}) tokens at ${rateFields(opts)} take longer than 2^63 ns (about 292 years) to refill: lower the capacity or raise the rate`,
        )
      }
      this.#capacity = capacity
      this.#interval = nanos
      // A burst past 2^52 ns cannot be counted exactly in a double: native from the start.
      if (LocalGcra.fits(capacity, nanos)) this.#local = new LocalGcra(capacity, nanos)
      else this.#attach(new NativeTokenBucket(capacity, nanos))
    }
  }

  #attach(native: NativeTokenBucket): NativeTokenBucket {
    this.#native = native
    this.#fast = native.fastHandle() as FastHandle
    this.#local = undefined
    return native
  }

  /** The native bucket, moving the state there first if it is still local. */
  #shared(): NativeTokenBucket | NativeNamedTokenBucket {
    if (this.#native !== undefined) return this.#native
    const { fullIn, pending } = this.#local!.state()
    return this.#attach(NativeTokenBucket.adopt(this.#capacity, this.#interval, fullIn, pending))
  }

  /**
   * The bucket that `handle` describes, attached to this thread.
   *
   * @throws {TypeError} if `handle` is not a token bucket handle
   * @throws {InvalidHandleError} if its bucket no longer exists
   */
  static from(handle: TokenBucketHandle): TokenBucket {
    const named = validateOptions<NamedTokenBucketHandle>(handle, 'handle')
    if (named.kind === 'sluice:NamedTokenBucket') return TokenBucket.#openNamed(named.name!, named.options!)
    const { kind, id, metrics } = validateOptions<LocalTokenBucketHandle>(handle, 'handle')
    if (kind !== 'sluice:TokenBucket' || typeof id !== 'number' || (metrics !== undefined && !isMetricsBuffer(metrics))) {
      throw new TypeError(`handle must be a TokenBucket handle (bucket.handle), got ${show(handle)}`)
    }
    // A handle made by hand without `metrics` still attaches, with counters of this thread's own.
    const native = attachById((id) => NativeTokenBucket.fromId(id), id, 'token bucket')
    return new TokenBucket(kAttach, native, metrics ?? new SharedArrayBuffer(metricsBytes()))
  }

  /** The bucket named `name` in `options.store` (`redis(client)` from `sluice/redis`). */
  static open<S>(name: string, options: TokenBucketOptions & { store: Store<typeof kOpenTokenBucket, S> }): S
  /**
   * The bucket every process of this machine (and every thread in it) gets
   * for `name`, in shared memory: one GCRA word, taken with one CAS. The
   * first opener creates it; a later one must ask for the same capacity and
   * rate. A process killed mid-`take` leaves the tokens it had reserved spent
   * (never more than the limit). See `Semaphore.open`.
   *
   * @throws {MismatchError} if `name` exists with other parameters
   * @throws {UnsupportedPlatformError} anywhere but Linux
   */
  static open(name: string, options: OpenTokenBucketOptions): TokenBucket
  static open(name: string, options: OpenTokenBucketOptions | { store: unknown }): unknown {
    return openInStore(kOpenTokenBucket, name, options) ?? TokenBucket.#openNamed(name, options as OpenTokenBucketOptions)
  }

  static #openNamed(rawName: string, options: OpenTokenBucketOptions): TokenBucket {
    const name = validateName(rawName, 'name')
    const opts = validateOptions<OpenTokenBucketOptions>(options, 'options')
    // The constructor's checks and defaults, on a bucket that is then dropped.
    const model = new TokenBucket(opts as TokenBucketOptions)
    const dir = validateDir(opts.dir)
    const existing = cached<TokenBucket>('token-bucket', dir, name)
    if (existing !== undefined) {
      checkSame('TokenBucket.open', name, 'capacity', existing.#capacity, model.#capacity)
      checkSame('TokenBucket.open', name, 'interval (ns per token)', existing.#interval, model.#interval)
      return existing
    }
    const native = callNative('TokenBucket.open', name, () =>
      NativeNamedTokenBucket.open(name, model.#capacity, model.#interval, dir),
    )
    const bucket = new TokenBucket(kAttach, native, openLanedMetrics('TokenBucket.open', name, dir))
    bucket.#named = Object.freeze({ kind: 'sluice:NamedTokenBucket', name, options: Object.freeze({ ...options }) })
    remember('token-bucket', dir, name, bucket, native)
    return bucket
  }

  /** Frees the name of a named bucket (see `Semaphore.unlink`); false if there was none. */
  static unlink(rawName: string, options?: { dir?: string }): boolean {
    const name = validateName(rawName, 'name')
    const dir = validateDir(validateOptions<{ dir?: string }>(options, 'options').dir)
    const unlinked = callNative('TokenBucket.unlink', name, () => NativeNamedTokenBucket.unlink(name, dir))
    unlinkMetrics('TokenBucket.unlink', name, dir)
    return unlinked
  }

  /** Moves the bucket to native memory (once) so other threads can share it. */
  get handle(): TokenBucketHandle {
    if (this.#named !== undefined) return this.#named
    keepAliveInFlight(this)
    this.#metrics.share()
    // Named ones returned above: a process-local primitive's counters are a SharedArrayBuffer.
    return { kind: 'sluice:TokenBucket', id: (this.#shared() as NativeTokenBucket).id, metrics: this.#metrics.buffer as SharedArrayBuffer }
  }

  /**
   * Counts of every thread that shares the bucket: takes granted (`take`,
   * `tryTake`), refused (`tryTake` false), timed out (a `take` whose tokens
   * would come after its timeout), aborted, the takes waiting now, and the
   * wait-time histogram.
   */
  metrics(): TokenBucketMetrics {
    return { ...this.#metrics.read(), available: this.available }
  }

  /** Most tokens the bucket holds. */
  get capacity(): number {
    return this.#capacity
  }

  /** Whole tokens available right now, to every thread. */
  get available(): number {
    return this.#local !== undefined ? this.#local.available() : this.#native!.available
  }

  /** Tokens added per second. */
  get refillPerSecond(): number {
    return 1e9 / this.#interval
  }

  /** Takes `n` tokens if they are there now and nobody is waiting ahead. */
  tryTake(n = 1): boolean {
    // 1 is always valid (capacity >= 1): the common call skips the check.
    if (n !== 1) validateInteger(n, 'n', 1, this.#capacity)
    if (this.#tryTake(n)) {
      this.#metrics.acquired()
      return true
    }
    this.#metrics.refused()
    if (tokenBucketRefused.hasSubscribers) tokenBucketRefused.publish({ bucket: this, tokens: n })
    return false
  }

  #tryTake(n: number): boolean {
    if (this.#local !== undefined) {
      const taken = this.#local.tryTake(n)
      if (taken !== EXPIRED) return taken === 1
      this.#shared()
    }
    return bucketTryTake(this.#fast!, n) === DONE
  }

  /**
   * Waits for `n` tokens (1..capacity). Rejects with `signal.reason` if the
   * signal aborts first (the tokens go back), or at once with a
   * `TimeoutError` if they would come after `timeout` ms.
   */
  take(n = 1, options?: TakeOptions): Promise<void> {
    let signal: AbortSignal | undefined, timeout: number | undefined
    try {
      validateInteger(n, 'n', 1, this.#capacity)
      ;({ signal, timeout } = validateWaitOptions(options))
    } catch (error) {
      return Promise.reject(error)
    }
    if (signal?.aborted) return Promise.reject(signal.reason)
    if (tokenBucketTake.hasSubscribers) {
      return traceWait(tokenBucketTake, { bucket: this, tokens: n }, this.#take, this, n, signal, timeout)
    }
    return this.#take(n, signal, timeout)
  }

  #take(n: number, signal: AbortSignal | undefined, timeout: number | undefined): Promise<void> {
    const token = nextToken()
    return waitForReservation(this.#reserve(n, token), token, this.#steps, signal, timeout, this.#metrics)
  }

  // The three steps of a waiting take, against whichever representation is
  // current: a take reserved locally may be redeemed or cancelled natively.
  #reserve(n: number, token: number): number {
    if (this.#local !== undefined) {
      const wait = this.#local.reserve(n, token)
      if (wait !== EXPIRED) return wait
      this.#shared()
    }
    return bucketReserve(this.#fast!, n, token)
  }

  #redeem(token: number): void {
    if (this.#local !== undefined) this.#local.redeem(token)
    else bucketRedeem(this.#fast!, token)
  }

  #cancel(token: number): void {
    if (this.#local !== undefined) this.#local.cancel(token)
    else bucketCancel(this.#fast!, token)
  }
}

/** @internal How a reserved wait ends: its tokens came (`redeem`), or it gives them back (`cancel`). */
export interface ReservationSteps {
  redeem(token: number): void
  cancel(token: number): void
}

/**
 * @internal Waits out a reservation made under `token` and due in
 * `waitNanos` (0: taken already), with one timer and no polling: the take of
 * a token bucket and of a rate limiter. If the tokens would come after
 * `timeout` ms it cancels at once and rejects with a `TimeoutError`; an abort
 * of `signal` cancels (the tokens go back) and rejects with its reason.
 */
export function waitForReservation(
  waitNanos: number,
  token: number,
  steps: ReservationSteps,
  signal: AbortSignal | undefined,
  timeout: number | undefined,
  metrics: SharedMetrics,
): Promise<void> {
  if (waitNanos === 0) {
    metrics.acquired()
    return Promise.resolve()
  }
  // Whole milliseconds, rounded up: the timer must not fire before the tokens are due.
  const waitMs = Math.ceil(waitNanos / 1e6)
  if (timeout !== undefined && waitMs > timeout) {
    steps.cancel(token)
    metrics.timedOut()
    return Promise.reject(Errors.timeout(timeout))
  }
  const queuedAt = monotonicMs()
  metrics.queued(1)
  return new Promise<void>((resolve, reject) => {
    // setTimeout fires at once for delays over 2^31 - 1 ms (24.8 days), which
    // a slow bucket can need: wait in steps no longer than that.
    const dueAt = Date.now() + waitMs
    let timer: NodeJS.Timeout
    const arm = (): void => {
      const left = dueAt - Date.now()
      if (left > 0) {
        timer = setTimeout(arm, Math.min(left, MAX_TIMEOUT))
        return
      }
      disconnect()
      steps.redeem(token)
      metrics.queued(-1)
      metrics.granted(queuedAt)
      resolve()
    }
    const disconnect = onCancellation(signal, undefined, (reason) => {
      clearTimeout(timer)
      disconnect()
      steps.cancel(token)
      metrics.queued(-1)
      metrics.cancelled(false)
      reject(reason)
    })
    timer = setTimeout(arm, Math.min(waitMs, MAX_TIMEOUT))
  })
}

/**
 * @internal Nanoseconds per token from `refillPerSecond`, or
 * `tokensPerInterval` per `interval` ms; a TypeError or RangeError naming
 * the field otherwise.
 */
export function intervalNanos(options: Partial<TokenBucketOptions>): number {
  const { refillPerSecond, tokensPerInterval, interval } = options
  let perSecond: number
  if (refillPerSecond !== undefined) {
    if (tokensPerInterval !== undefined || interval !== undefined) {
      throw new TypeError('options must give either refillPerSecond or tokensPerInterval and interval, not both')
    }
    perSecond = validateRate(refillPerSecond, 'options.refillPerSecond')
  } else if (tokensPerInterval !== undefined || interval !== undefined) {
    const tokens = validateRate(tokensPerInterval, 'options.tokensPerInterval')
    const ms = validateRate(interval, 'options.interval')
    perSecond = (tokens * 1000) / ms
  } else {
    throw new TypeError('options must give refillPerSecond, or tokensPerInterval and interval')
  }
  const nanos = Math.round(1e9 / perSecond)
  if (perSecond > 1e9 || nanos < 1 || !Number.isSafeInteger(nanos)) {
    throw new RangeError(
      `the refill rate (${rateFields(options)}) must be between 1 per 2^53 ns and 1e9 per second, got ${perSecond} per second`,
    )
  }
  return nanos
}

/** @internal The rate options as given, for an error message. */
export function rateFields(options: Partial<TokenBucketOptions>): string {
  const { refillPerSecond, tokensPerInterval, interval } = options
  return refillPerSecond === undefined
    ? `options.tokensPerInterval ${tokensPerInterval} per options.interval ${interval} ms`
    : `options.refillPerSecond ${refillPerSecond}`
}

/** @internal A positive finite number; a TypeError or RangeError naming `name` otherwise. */
export function validateRate(value: unknown, name: string): number {
  if (typeof value !== 'number') throw new TypeError(`${name} must be a positive number, got ${show(value)}`)
  if (!(value > 0 && Number.isFinite(value))) throw new RangeError(`${name} must be a positive number, got ${show(value)}`)
  return value
}
