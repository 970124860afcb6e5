// TokenBucket.tryTake against the pure-JS GCRA baseline and limiter's
// TokenBucket, in the same run. The buckets are large and refill fast, so
// every take is granted: the decision path is what is measured.
import { TokenBucket as LimiterBucket } from 'limiter'
import { TokenBucket } from 'sluice'
import { Bench } from 'tinybench'
import { GcraBucket } from './baselines/token-bucket.mjs'

const OPS = 1000

export function suites({ time }) {
  const rate = 1e9
  const sluice = new TokenBucket({ capacity: 1e9, refillPerSecond: rate })
  const baseline = new GcraBucket(1e9, rate)
  const limiter = new LimiterBucket({ bucketSize: 1e9, tokensPerInterval: 1e9, interval: 'second' })
  // 1,000 takes per timed call: one call is ~20-80 ns, comparable to the
  // harness's own overhead, which would otherwise compress the ratios.
  const bench = new Bench({ name: 'tryTake (uncontended)', time })
    .add('pure-JS baseline', () => {
      for (let i = 0; i < OPS; i++) baseline.tryTake(1)
    })
    .add('limiter', () => {
      for (let i = 0; i < OPS; i++) limiter.tryRemoveTokens(1)
    })
    .add('sluice', () => {
      for (let i = 0; i < OPS; i++) sluice.tryTake(1)
    })
  bench.opsPerIteration = OPS
  return [bench]
}
