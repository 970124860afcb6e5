// A GCRA limit kept in Redis, as the in-process limiter computes it
// (crates/core/src/rate_limiter/gcra.rs), one Lua script per decision: the
// engine under `RedisRateLimiter` (a cell per key) and `RedisTokenBucket`
// (one cell). Also what happens when Redis cannot answer.
import { Errors, StoreUnavailableError } from '../errors.js'
import type { RateLimitResult } from '../keyed-limit.js'
import { SharedMetrics } from '../metrics.js'
import { waitForReservation, type TakeOptions } from '../token-bucket.js'
import { validateWaitOptions } from '../wait.js'
import { gcraCancel, gcraDecide, gcraReserve, gcraReset } from './scripts.js'
import type { RedisStore } from './store.js'

/** Longest burst (refill from empty) the Lua arithmetic counts exactly: 2^52 ns (~52 days). */
export const MAX_REDIS_BURST_NANOS = 2 ** 52

/** What a primitive does instead when Redis is unavailable under `'fail-open'` or `'local'`. */
export interface Fallback<T> {
  open(): T | Promise<T>
  local(): T | Promise<T>
}

/**
 * Settles a store failure by the store's policy: anything but unavailability
 * (a parameter mismatch, a bug) is rethrown; unavailability rejects under
 * `'fail-closed'`, else gives what `fallback` says.
 */
export function unavailable<T>(store: RedisStore, error: unknown, fallback: Fallback<T>): T | Promise<T> {
  if (!(error instanceof StoreUnavailableError) || store.whenUnavailable === 'fail-closed') throw error
  return store.whenUnavailable === 'fail-open' ? fallback.open() : fallback.local()
}

/** Most decisions in one script call: bounds how long one call holds the server. */
const MAX_BATCH = 256

interface Decision {
  readonly cell: string
  readonly n: number
  readonly mode: 'take' | 'peek'
  resolve(result: RateLimitResult): void
  reject(error: unknown): void
}

/** The decision at `at` in a flat reply of `[allowed, remaining, retryAfterNs, resetAfterNs]` per decision. */
function resultOf(reply: unknown[], at: number): RateLimitResult {
  const remaining = Number(reply[at + 1])
  const retryAfterMs = Math.ceil(Number(reply[at + 2]) / 1e6)
  const resetAfterMs = Math.ceil(Number(reply[at + 3]) / 1e6)
  if (reply[at] === 1) return { allowed: true, remaining, retryAfterMs, resetAfterMs }
  return { allowed: false, remaining, retryAfterMs, resetAfterMs, reason: 'limited' }
}

export class RedisGcra {
  readonly #store: RedisStore
  readonly #kind: string
  readonly #name: string
  readonly #params: string
  readonly #args: [string, string]
  readonly #capacity: number
  readonly #interval: number
  /** `metrics()` is not offered over Redis yet; the wait helper counts into this one of its own. */
  readonly #metrics = new SharedMetrics()

  constructor(store: RedisStore, kind: string, name: string, params: string, capacity: number, interval: number) {
    if (capacity * interval > MAX_REDIS_BURST_NANOS) {
      throw new RangeError(
        `options.capacity (${capacity}) tokens at ${interval} ns each take longer than 2^52 ns (about 52 days) to refill, the most a Redis store counts exactly: lower the capacity or raise the rate`,
      )
    }
    this.#store = store
    this.#kind = kind
    this.#name = name
    this.#params = params
    this.#capacity = capacity
    this.#interval = interval
    this.#args = [String(capacity), String(interval)]
  }

  /** The error for a script's parameter-mismatch answer `[-1, field, stored]`. */
  #mismatch(reply: unknown[]): RangeError {
    const field = String(reply[1])
    const stored = String(reply[2])
    const mine = field === 'capacity' ? this.#capacity : this.#interval
    const unit = field === 'capacity' ? '' : ' ns per token'
    return Errors.parameterMismatch(this.#kind, this.#name, `${field} ${stored}${unit}`, `${mine}${unit}`)
  }

  /**
   * A decision on `cell`: `'take'` takes `n` tokens if there; `'peek'` only
   * answers. Decisions asked for in the same tick go in one script call
   * (one round trip), in the order asked: exact, as if run back to back.
   */
  decide(cell: string, n: number, mode: 'take' | 'peek'): Promise<RateLimitResult> {
    return new Promise((resolve, reject) => {
      this.#batch.push({ cell, n, mode, resolve, reject })
      if (this.#batch.length === 1) process.nextTick(this.#flush)
      else if (this.#batch.length >= MAX_BATCH) this.#flush()
    })
  }

  #batch: Decision[] = []

  readonly #flush = (): void => {
    const batch = this.#batch
    if (batch.length === 0) return
    this.#batch = []
    const keys = [this.#params]
    const args = [...this.#args]
    for (const { cell, n, mode } of batch) {
      keys.push(cell)
      args.push(String(n), mode === 'take' ? 't' : 'p')
    }
    this.#store.run(gcraDecide, keys, args).then(
      (reply) => {
        if (reply[0] === -1) {
          const error = this.#mismatch(reply)
          for (const d of batch) d.reject(error)
          return
        }
        batch.forEach((d, i) => d.resolve(resultOf(reply, i * 4)))
      },
      (error: unknown) => {
        for (const d of batch) d.reject(error)
      },
    )
  }

  /** Forgets `cell` (a fresh, full bucket); whether it was there. */
  async reset(cell: string): Promise<boolean> {
    return (await this.#store.run(gcraReset, [this.#params, cell], [])) as unknown as number > 0
  }

  /**
   * Waits for `n` tokens of `cell`: reserves them on the server (in order
   * with every other take on it), then one timer. A `timeout` shorter than
   * the wait takes nothing (checked in the script); an abort gives the
   * tokens back if they are not due yet. `fallback` when Redis is unavailable.
   */
  take(cell: string, n: number, options: TakeOptions | undefined, fallback: Fallback<void>): Promise<void> {
    let signal: AbortSignal | undefined, timeout: number | undefined
    try {
      ;({ signal, timeout } = validateWaitOptions(options))
    } catch (error) {
      return Promise.reject(error)
    }
    if (signal?.aborted) return Promise.reject(signal.reason)
    const keys = [this.#params, cell]
    const maxWait = timeout === undefined ? '' : String(timeout * 1e6)
    return this.#store.run(gcraReserve, keys, [...this.#args, String(n), maxWait]).then(
      (reply) => {
        if (reply[0] === -1) throw this.#mismatch(reply)
        const waitNanos = Number(reply[1])
        if (reply[0] === 0) throw Errors.timeout(timeout!)
        const cancel = (): void => this.#store.fire(gcraCancel, keys, [...this.#args, String(n), String(reply[2])])
        // Aborted during the round trip: the listener below would never fire.
        if (signal?.aborted) {
          if (waitNanos > 0) cancel()
          throw signal.reason
        }
        return waitForReservation(waitNanos, 0, { redeem() {}, cancel }, signal, undefined, this.#metrics)
      },
      (error: unknown) => unavailable(this.#store, error, fallback),
    )
  }
}

const LONE_SURROGATE = /[\uD800-\uDBFF](?![\uDC00-\uDFFF])|(?<![\uD800-\uDBFF])[\uDC00-\uDFFF]/

/** Checks a limiter key as the in-process limiter does; returns its part of the Redis key. */
export function keyPart(key: unknown, maxBytes: number): string {
  if (typeof key === 'string') {
    const bytes = Buffer.byteLength(key)
    if (bytes < 1 || bytes > maxBytes) {
      throw new RangeError(`key must be a string of 1 to ${maxBytes} UTF-8 bytes or a safe integer, got ${bytes} bytes`)
    }
    // A lone surrogate would be sent as U+FFFD, one key for many strings.
    if (LONE_SURROGATE.test(key)) throw new RangeError('key must be well-formed UTF-16 (it has a lone surrogate)')
    // `1` and `'1'` are different keys.
    return `s:${key}`
  }
  if (typeof key === 'number') {
    if (!Number.isSafeInteger(key)) throw new RangeError(`key must be a string or a safe integer, got ${key}`)
    return `n:${key}`
  }
  throw new TypeError(`key must be a string or a safe integer, got ${typeof key}`)
}
