// Token buckets: the synchronous decision (tryTake) against the pure-JS GCRA
// baseline and limiter, for a bucket kept in this thread and one shared (its
// handle read); an awaited take that is granted at once against the
// peers whose API is asynchronous (limiter, rate-limiter-flexible,
// bottleneck); and rate accuracy: how far a paced `take()` loop lands from
// the configured rate. All in the same run.
import Bottleneck from 'bottleneck'
import { RateLimiter, TokenBucket as LimiterBucket } from 'limiter'
import { RateLimiterMemory, RateLimiterQueue } from 'rate-limiter-flexible'
import { TokenBucket } from 'sluice'
import { Bench } from 'tinybench'
import { GcraBucket } from './baselines/token-bucket.mjs'

const OPS = 1000
const noop = () => undefined

/** Achieved takes per second of `take` awaited in a loop for `ms`, as % error against `rate`. */
async function rateError(take, rate, ms) {
  const started = performance.now()
  let taken = 0
  while (performance.now() - started < ms) {
    await take()
    taken++
  }
  const achieved = taken / ((performance.now() - started) / 1000)
  // A floor of 0.01%: the report's resolution, and no division by zero in ratios.
  return Math.max(0.01, (Math.abs(achieved - rate) / rate) * 100)
}

export function suites({ time, quick }) {
  const fast = 1e9
  const sluice = new TokenBucket({ capacity: fast, refillPerSecond: fast })
  // Reading `handle` moves a bucket to native memory, as every bucket that
  // another thread uses: its `tryTake` is a native call.
  const shared = new TokenBucket({ capacity: fast, refillPerSecond: fast })
  void shared.handle
  const baseline = new GcraBucket(fast, fast)
  const limiter = new LimiterBucket({ bucketSize: fast, tokensPerInterval: fast, interval: 'second' })
  // 1,000 takes per timed call: one call is ~20-80 ns, comparable to the
  // harness's own overhead, which would otherwise compress the ratios.
  const tryTake = new Bench({ retainSamples: true, name: 'tryTake (uncontended)', time })
    .add('pure-JS baseline', () => {
      for (let i = 0; i < OPS; i++) baseline.tryTake(1)
    })
    .add('limiter', () => {
      for (let i = 0; i < OPS; i++) limiter.tryRemoveTokens(1)
    })
    .add('sluice', () => {
      for (let i = 0; i < OPS; i++) sluice.tryTake(1)
    })
    .add('sluice, shared', () => {
      for (let i = 0; i < OPS; i++) shared.tryTake(1)
    })
  tryTake.opsPerIteration = OPS

  const limiterAsync = new RateLimiter({ tokensPerInterval: fast, interval: 'second' })
  const flexible = new RateLimiterMemory({ points: fast, duration: 1 })
  const bottleneck = new Bottleneck({ reservoir: fast, reservoirRefreshAmount: fast, reservoirRefreshInterval: 1000 })
  const awaited = new Bench({ retainSamples: true, name: 'await take(1), granted at once', time })
    .add('limiter', () => limiterAsync.removeTokens(1))
    .add('rate-limiter-flexible', () => flexible.consume('key', 1))
    .add('bottleneck', () => bottleneck.schedule(noop))
    .add('sluice', () => sluice.take(1))
  awaited.baseline = 'limiter'

  const rate = 500
  const ms = quick ? 300 : 3000
  const accuracy = {
    name: `rate accuracy: paced take() loop at ${rate}/s for ${ms / 1000} s (% error of the configured rate)`,
    baseline: 'limiter',
    unit: '% error',
    lowerIsBetter: true,
    async run() {
      const paced = {
        limiter: () => {
          const rl = new RateLimiter({ tokensPerInterval: rate, interval: 'second' })
          return () => rl.removeTokens(1)
        },
        'rate-limiter-flexible': () => {
          const queue = new RateLimiterQueue(new RateLimiterMemory({ points: rate, duration: 1 }), { maxQueueSize: 1 })
          return () => queue.removeTokens(1)
        },
        bottleneck: () => {
          const b = new Bottleneck({ minTime: 1000 / rate })
          return () => b.schedule(noop)
        },
        sluice: () => {
          // A burst of 1: the loop is paced from the first take.
          const bucket = new TokenBucket({ capacity: 1, refillPerSecond: rate })
          return () => bucket.take(1)
        },
      }
      const rows = []
      for (const [name, make] of Object.entries(paced)) rows.push({ name, value: await rateError(make(), rate, ms) })
      return rows
    },
  }
  return [tryTake, awaited, accuracy]
}
