// `metrics()` of the Redis primitives: the counts live in one hash per
// primitive (`{<prefix><name>}:<kind>:m`, the primitive's hash tag, so one
// Cluster slot), incremented by the primitive's own scripts where the
// decision is made (no extra round trip), and by a fire-and-forget script
// for what only the client sees. The wait-time histogram stays per process
// (a histogram per HINCRBY would cost ~35 fields per call).
import type { WaitMetrics } from '../metrics.js'
import { script } from './client.js'
import type { RedisStore } from './store.js'

/** The hash's fields, in the order every read answers them. */
export const COUNTERS = ['acquired', 'refused', 'timedOut', 'aborted'] as const
export type Counter = (typeof COUNTERS)[number]

/**
 * The hash outlives its last count by an hour (as a semaphore's parameters
 * outlive its last use): counters that survive idle spells, yet a name no
 * longer used leaves nothing behind. Lua text, spliced into the scripts.
 */
export const KEEP_COUNTS = `redis.call('PEXPIRE', M, 3600000)`

/** KEYS[1] the metrics hash, ARGV[1] a counter: +1 (what the client alone saw: a timeout, an abort). */
const metricsCount = script(`
local M = KEYS[1]
redis.call('HINCRBY', M, ARGV[1], 1)
${KEEP_COUNTS}
return 1
`)

/** KEYS[1] the metrics hash: the counters, in COUNTERS' order. */
export const metricsRead = script(`return redis.call('HMGET', KEYS[1], 'acquired', 'refused', 'timedOut', 'aborted')`)

/** Counts `counter` once, without waiting: a lost count is better than a slower or failing wait. */
export function count(store: RedisStore, key: string, counter: Counter): void {
  store.fire(metricsCount, [key], [counter])
}

/** A count from a reply: only a non-negative safe integer (as a number or decimal string) counts; anything else is 0. */
export function countOf(value: unknown): number {
  const n = typeof value === 'number' ? value : typeof value === 'string' && /^\d{1,16}$/.test(value) ? Number(value) : NaN
  return Number.isSafeInteger(n) && n >= 0 ? n : 0
}

/** The four counters from `values` (the reply's items from `from` on); a reply of another shape reads as zeros. */
export function countsOf(reply: unknown, from = 0): Pick<WaitMetrics, Counter> {
  const values = Array.isArray(reply) ? reply : []
  return {
    acquired: countOf(values[from]),
    refused: countOf(values[from + 1]),
    timedOut: countOf(values[from + 2]),
    aborted: countOf(values[from + 3]),
  }
}

/** `RedisSemaphore.metrics()` / `RedisMutex.metrics()`: counts of every process; `waitTime` of this process. */
export interface RedisSemaphoreMetrics extends WaitMetrics {
  /** Permits in existence. */
  capacity: number
  /** Permits held now, in every process. */
  inUse: number
}

/** `RedisTokenBucket.metrics()`: counts of every process; `waiting` and `waitTime` of this process. */
export interface RedisTokenBucketMetrics extends WaitMetrics {
  /** Whole tokens available now, to every process. */
  available: number
}

/**
 * `RedisRateLimiter.metrics()`: counts of every process, all keys together;
 * `waiting` and `waitTime` of this process. No `keys`: counting a limiter's
 * keys in Redis would take a SCAN.
 */
export type RedisRateLimiterMetrics = WaitMetrics
