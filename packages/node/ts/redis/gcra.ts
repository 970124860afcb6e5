// A GCRA limit kept in Redis, as the in-process limiter computes it
// (crates/core/src/rate_limiter/gcra.rs), one Lua script per decision: the
// engine under `RedisRateLimiter` (a cell per key) and `RedisTokenBucket`
// (one cell). Also what happens when Redis cannot answer.
import { Errors, StoreUnavailableError } from '../errors.js'
import type { RateLimitKey, RateLimitResult } from '../keyed-limit.js'
import { SharedMetrics, type WaitMetrics } from '../metrics.js'
import { waitForReservation, type TakeOptions } from '../token-bucket.js'
import { validateWaitOptions } from '../wait.js'
import { gcraCancel, gcraDecide, gcraReserve, gcraReset } from './scripts.js'
import { count, countsOf, metricsRead } from './metrics.js'
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

/**
 * Most decisions in one script call. A batch this full goes at once, while
 * the rest of the tick's decisions are still being asked for, so that Redis
 * works on one call while Node makes the next: with 256 (one call per tick)
 * the two took turns, Redis busy ~60% of the time and Node's thread mostly
 * idle; with 32, 64 callers on one key space (bench 16.1, a quiet machine)
 * went from 117-138 k to 170-228 k decisions/s with Redis ~93% busy. Also
 * bounds how long one call holds the server.
 */
const MAX_BATCH = 32

export type DecisionMode = 'take' | 'peek'

/**
 * What a decision settles with when its script call fails (Redis
 * unavailable, a parameter mismatch): a result by the store's policy, or a
 * throw. One per limiter, so no closure is made per decision.
 */
export type OnDecisionError = (error: unknown, key: RateLimitKey, n: number, mode: DecisionMode) => RateLimitResult | Promise<RateLimitResult>

interface Decision {
  readonly cell: string
  readonly n: number
  readonly mode: DecisionMode
  readonly key: RateLimitKey
  readonly onError: OnDecisionError | undefined
  readonly resolve: (result: RateLimitResult | Promise<RateLimitResult>) => void
  readonly reject: (error: unknown) => void
}

// The executor every decision's promise shares: it parks the promise's
// functions here for `decide` to pick up (no closure per decision).
let nextResolve: Decision['resolve']
let nextReject: Decision['reject']
function park(resolve: Decision['resolve'], reject: Decision['reject']): void {
  nextResolve = resolve
  nextReject = reject
}

/** A reply the script cannot have made (a bug, or not our script): not about availability, so no fallback. */
function badReply(what: string): Error {
  return new Error(`the rate-limit script answered ${what}, not one integer per decision`)
}

export class RedisGcra {
  readonly #store: RedisStore
  readonly #kind: string
  readonly #name: string
  readonly #params: string
  readonly #args: [string, string]
  readonly #capacity: number
  readonly #interval: number
  /** The metrics hash in Redis (the counts of every process; see ./metrics.ts). */
  readonly #counts: string
  /**
   * This process's side of `metrics()`: the wait-time histogram and the
   * waiting gauge (a take's wait is a timer here, not a queue in Redis).
   */
  readonly #metrics = new SharedMetrics()

  constructor(store: RedisStore, kind: string, name: string, params: string, counts: string, capacity: number, interval: number) {
    if (capacity * interval > MAX_REDIS_BURST_NANOS) {
      throw new RangeError(
        `options.capacity (${capacity}) tokens at ${interval} ns each take longer than 2^52 ns (about 52 days) to refill, the most a Redis store counts exactly: lower the capacity or raise the rate`,
      )
    }
    this.#store = store
    this.#kind = kind
    this.#name = name
    this.#params = params
    this.#counts = counts
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
   * (one round trip; more past MAX_BATCH), in the order asked: exact, as if
   * run back to back. If the call fails, `onError` (if given) settles it.
   */
  decide(cell: string, n: number, mode: DecisionMode, key: RateLimitKey = cell, onError?: OnDecisionError): Promise<RateLimitResult> {
    const promise = new Promise<RateLimitResult>(park)
    const length = this.#batch.push({ cell, n, mode, key, onError, resolve: nextResolve, reject: nextReject })
    if (n !== 1 || mode !== 'take') this.#plain = false
    if (length === 1) process.nextTick(this.#flush)
    else if (length >= MAX_BATCH) this.#flush()
    return promise
  }

  #batch: Decision[] = []
  /** Whether every decision in `#batch` takes 1 (the script then needs no argument per decision). */
  #plain = true

  readonly #flush = (): void => {
    const batch = this.#batch
    if (batch.length === 0) return
    const plain = this.#plain
    this.#batch = []
    this.#plain = true
    // One call, not two halves that would let Node and Redis work at once:
    // on a loaded machine with 2 cores the halves measured slower (each
    // call's own cost, twice), by 5-10% of decisions/s.
    this.#send(batch, 0, batch.length, plain)
  }

  /** One script call for `batch[from..to)`. */
  #send(batch: Decision[], from: number, to: number, plain: boolean): void {
    const keys = [this.#params, this.#counts]
    const args = [this.#args[0], this.#args[1]]
    for (let i = from; i < to; i++) keys.push(batch[i]!.cell)
    if (!plain) {
      for (let i = from; i < to; i++) {
        const d = batch[i]!
        args.push(String(d.mode === 'take' ? d.n : -d.n))
      }
    }
    this.#store.run(gcraDecide, keys, args).then(
      (reply) => this.#answer(batch, from, to, reply),
      (error: unknown) => this.#fail(batch, from, to, error),
    )
  }

  /** Settles `batch[from..to)` from the script's reply: one integer each (see gcraDecide). */
  #answer(batch: Decision[], from: number, to: number, reply: unknown): void {
    if (!Array.isArray(reply)) return this.#fail(batch, from, to, badReply(typeof reply))
    if (reply[0] === -1 && typeof reply[1] === 'string') return this.#fail(batch, from, to, this.#mismatch(reply))
    if (reply.length !== to - from) return this.#fail(batch, from, to, badReply(`${reply.length} values for ${to - from} decisions`))
    const burst = this.#capacity * this.#interval
    const interval = this.#interval
    for (let i = from; i < to; i++) {
      const d = batch[i]!
      const x: unknown = reply[i - from]
      if (typeof x !== 'number' || !Number.isSafeInteger(x)) {
        d.reject(badReply(typeof x))
      } else if (x >= 0) {
        if (d.mode === 'take') this.#metrics.acquired()
        // Allowed: the cell is full again in x ns (after this take, if one).
        d.resolve({ allowed: true, remaining: Math.floor((burst - x) / interval), retryAfterMs: 0, resetAfterMs: Math.ceil(x / 1e6) })
      } else {
        // Refused: the cell is full again in `base` ns; n more would pass the burst.
        const base = -1 - x
        if (d.mode === 'take') this.#metrics.refused()
        d.resolve({
          allowed: false,
          remaining: Math.floor(Math.max(0, burst - base) / interval),
          retryAfterMs: Math.ceil((base + d.n * interval - burst) / 1e6),
          resetAfterMs: Math.ceil(base / 1e6),
          reason: 'limited',
        })
      }
    }
  }

  #fail(batch: Decision[], from: number, to: number, error: unknown): void {
    for (let i = from; i < to; i++) {
      const d = batch[i]!
      if (d.onError === undefined) {
        d.reject(error)
        continue
      }
      try {
        d.resolve(d.onError(error, d.key, d.n, d.mode))
      } catch (thrown) {
        d.reject(thrown)
      }
    }
  }

  /**
   * The counts of every process (one round trip; a reply of another shape
   * reads as zeros), with this process's `waiting` and `waitTime`.
   */
  async metrics(): Promise<WaitMetrics> {
    const counts = countsOf(await this.#store.run(metricsRead, [this.#counts], []))
    const { waiting, waitTime } = this.#metrics.read()
    return { ...counts, waiting, waitTime }
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
    const keys = [this.#params, cell, this.#counts]
    const maxWait = timeout === undefined ? '' : String(timeout * 1e6)
    return this.#store.run(gcraReserve, keys, [...this.#args, String(n), maxWait]).then(
      (reply) => {
        if (reply[0] === -1) throw this.#mismatch(reply)
        const waitNanos = Number(reply[1])
        if (reply[0] === 0) {
          this.#metrics.timedOut()
          throw Errors.timeout(timeout!)
        }
        const giveBack = (mode: '' | 'unseen'): void => this.#store.fire(gcraCancel, keys, [...this.#args, String(n), String(reply[2]), mode])
        const cancel = (): void => giveBack('')
        // Aborted during the round trip: the listener below would never fire.
        // The tokens go back, those granted at once too (the caller never saw them).
        if (signal?.aborted) {
          giveBack(waitNanos > 0 ? '' : 'unseen')
          throw signal.reason
        }
        // A grant after a wait is seen here alone: counted without waiting for Redis.
        const redeem = (): void => count(this.#store, this.#counts, 'acquired')
        return waitForReservation(waitNanos, 0, { redeem, cancel }, signal, undefined, this.#metrics)
      },
      (error: unknown) => unavailable(this.#store, error, fallback),
    )
  }
}

/** Checks a limiter key as the in-process limiter does; returns its part of the Redis key. */
export function keyPart(key: unknown, maxBytes: number): string {
  if (typeof key === 'string') {
    // A UTF-16 unit is at most 3 UTF-8 bytes: a short key needs no counting.
    if (key.length === 0 || key.length * 3 > maxBytes) {
      const bytes = Buffer.byteLength(key)
      if (bytes < 1 || bytes > maxBytes) {
        throw new RangeError(`key must be a string of 1 to ${maxBytes} UTF-8 bytes or a safe integer, got ${bytes} bytes`)
      }
    }
    // A lone surrogate would be sent as U+FFFD, one key for many strings.
    if (!key.isWellFormed()) throw new RangeError('key must be well-formed UTF-16 (it has a lone surrogate)')
    // `1` and `'1'` are different keys.
    return `s:${key}`
  }
  if (typeof key === 'number') {
    if (!Number.isSafeInteger(key)) throw new RangeError(`key must be a string or a safe integer, got ${key}`)
    return `n:${key}`
  }
  throw new TypeError(`key must be a string or a safe integer, got ${typeof key}`)
}
