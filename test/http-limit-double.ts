// A KeyedRateLimit in plain JavaScript, for testing the HTTP middleware
// against the interface alone: counts per key that never refill (time does
// not pass for it), with the times a GCRA of the same quota would answer.
import { once } from 'node:events'
import type { RateLimiterHandle } from 'sluice'
import type { KeyedRateLimit, RateLimitKey, RateLimitResult } from 'sluice/http'
import { evalWorker } from './helpers.js'

export class LimitDouble implements KeyedRateLimit {
  readonly used = new Map<RateLimitKey, number>()
  /** Every `tryTake`, in order. */
  readonly calls: { key: RateLimitKey; n: number }[] = []

  constructor(
    readonly capacity: number,
    readonly windowMs = 60_000,
  ) {}

  tryTake(key: RateLimitKey, n = 1): RateLimitResult {
    this.calls.push({ key, n })
    const used = this.used.get(key) ?? 0
    const perToken = this.windowMs / this.capacity
    if (used + n > this.capacity) {
      return {
        allowed: false,
        remaining: this.capacity - used,
        retryAfterMs: Math.ceil((used + n - this.capacity) * perToken),
        resetAfterMs: Math.ceil(used * perToken),
        reason: 'limited',
      }
    }
    this.used.set(key, used + n)
    return { allowed: true, remaining: this.capacity - used - n, retryAfterMs: 0, resetAfterMs: Math.ceil((used + n) * perToken) }
  }
}

/** The same limit answered the way a remote one answers: a promise, a few ms later. */
export class AsyncLimitDouble implements KeyedRateLimit {
  readonly inner: LimitDouble

  constructor(capacity: number, windowMs?: number) {
    this.inner = new LimitDouble(capacity, windowMs)
  }

  get capacity(): number {
    return this.inner.capacity
  }

  get windowMs(): number {
    return this.inner.windowMs
  }

  async tryTake(key: RateLimitKey, n?: number): Promise<RateLimitResult> {
    await new Promise((resolve) => setTimeout(resolve, 2))
    return this.inner.tryTake(key, n)
  }
}

/** A limiter whose store is down: `tryTake` throws (or rejects when `async`). */
export function failingLimit(async: boolean): KeyedRateLimit {
  return {
    capacity: 10,
    windowMs: 1000,
    tryTake(): RateLimitResult | Promise<RateLimitResult> {
      const error = new Error('the limiter store is unreachable')
      if (async) return Promise.reject(error)
      throw error
    },
  }
}

/** Takes `n` single tokens for `key` in a worker thread, from the limiter `handle` names; resolves with how many it got. */
export async function takeInWorker(handle: RateLimiterHandle, key: string, n: number): Promise<number> {
  // `evalWorker` listens for the exit from the start: the worker exits right
  // after its one message, often before this thread has taken it.
  const { worker, exited } = evalWorker(
    `const { parentPort, workerData } = require('node:worker_threads')
     const limiter = require('sluice').RateLimiter.from(workerData.handle)
     let taken = 0
     for (let i = 0; i < workerData.n; i++) if (limiter.tryTake(workerData.key).allowed) taken++
     parentPort.postMessage(taken)`,
    { handle, key, n },
  )
  const [taken] = (await once(worker, 'message')) as [number]
  await exited
  return taken
}
