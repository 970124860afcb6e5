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
  NativeTokenBucket,
  type FastHandle,
} from './native.js'
import { kAttach } from './symbols.js'
import { MAX_TIMEOUT, show, validateInteger, validateOptions } from './validate.js'
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
export interface TokenBucketHandle {
  readonly kind: 'sluice:TokenBucket'
  readonly id: number
}

const MAX_CAPACITY = 2 ** 32 - 1
/** The longest refill from empty the native bucket can count (u64 nanoseconds). */
const MAX_BURST_NANOS = 2n ** 64n - 1n

/**
 * A token bucket (GCRA) whose state lives in native memory: one rate limit
 * shared by every thread that has its handle. Waiting takes are served in the
 * order they were made, a large one included, with one timer each and no
 * polling.
 */
export class TokenBucket {
  readonly #native: NativeTokenBucket
  readonly #fast: FastHandle
  readonly #capacity: number

  constructor(options: TokenBucketOptions)
  /** @internal adopts a native bucket already attached to this thread */
  constructor(attach: typeof kAttach, native: NativeTokenBucket)
  constructor(options: TokenBucketOptions | typeof kAttach, attached?: NativeTokenBucket) {
    if (options === kAttach) {
      this.#native = attached!
    } else {
      const opts = validateOptions<TokenBucketOptions>(options, 'options')
      const capacity = validateInteger(opts.capacity, 'options.capacity', 1, MAX_CAPACITY)
      const nanos = intervalNanos(opts)
      // The bucket keeps `capacity * interval` (its burst) in 64-bit nanoseconds.
      if (BigInt(capacity) * BigInt(nanos) > MAX_BURST_NANOS) {
        throw new RangeError(
          `options.capacity (${capacity}) tokens at ${rateFields(opts)} take longer than 2^64 ns (about 584 years) to refill: lower the capacity or raise the rate`,
        )
      }
      this.#native = new NativeTokenBucket(capacity, nanos)
    }
    this.#fast = this.#native.fastHandle() as FastHandle
    this.#capacity = this.#native.capacity
  }

  /**
   * The bucket that `handle` describes, attached to this thread.
   *
   * @throws {TypeError} if `handle` is not a token bucket handle
   * @throws {InvalidHandleError} if its bucket no longer exists
   */
  static from(handle: TokenBucketHandle): TokenBucket {
    const { kind, id } = validateOptions<TokenBucketHandle>(handle, 'handle')
    if (kind !== 'sluice:TokenBucket' || typeof id !== 'number') {
      throw new TypeError(`handle must be a TokenBucket handle (bucket.handle), got ${show(handle)}`)
    }
    return new TokenBucket(kAttach, attachById((id) => NativeTokenBucket.fromId(id), id, 'token bucket'))
  }

  get handle(): TokenBucketHandle {
    return { kind: 'sluice:TokenBucket', id: this.#native.id }
  }

  /** Most tokens the bucket holds. */
  get capacity(): number {
    return this.#capacity
  }

  /** Whole tokens available right now, to every thread. */
  get available(): number {
    return this.#native.available
  }

  /** Tokens added per second. */
  get refillPerSecond(): number {
    return 1e9 / this.#native.intervalNanos
  }

  /** Takes `n` tokens if they are there now and nobody is waiting ahead. */
  tryTake(n = 1): boolean {
    validateInteger(n, 'n', 1, this.#capacity)
    return bucketTryTake(this.#fast, n) === DONE
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
    const token = nextToken()
    const waitNanos = bucketReserve(this.#fast, n, token)
    if (waitNanos === 0) return Promise.resolve()
    // Whole milliseconds, rounded up: the timer must not fire before the tokens are due.
    const waitMs = Math.ceil(waitNanos / 1e6)
    if (timeout !== undefined && waitMs > timeout) {
      bucketCancel(this.#fast, token)
      return Promise.reject(Errors.timeout(timeout))
    }
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
        bucketRedeem(this.#fast, token)
        resolve()
      }
      const disconnect = onCancellation(signal, undefined, (reason) => {
        clearTimeout(timer)
        disconnect()
        bucketCancel(this.#fast, token)
        reject(reason)
      })
      timer = setTimeout(arm, Math.min(waitMs, MAX_TIMEOUT))
    })
  }
}

function intervalNanos(options: Partial<TokenBucketOptions>): number {
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

/** The rate options as given, for an error message. */
function rateFields(options: Partial<TokenBucketOptions>): string {
  const { refillPerSecond, tokensPerInterval, interval } = options
  return refillPerSecond === undefined
    ? `options.tokensPerInterval ${tokensPerInterval} per options.interval ${interval} ms`
    : `options.refillPerSecond ${refillPerSecond}`
}

function validateRate(value: unknown, name: string): number {
  if (typeof value !== 'number') throw new TypeError(`${name} must be a positive number, got ${show(value)}`)
  if (!(value > 0 && Number.isFinite(value))) throw new RangeError(`${name} must be a positive number, got ${show(value)}`)
  return value
}
