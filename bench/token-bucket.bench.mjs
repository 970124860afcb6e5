// TokenBucket.tryTake against the pure-JS GCRA baseline and limiter's
// TokenBucket, in the same run. The buckets are large and refill fast, so
// every take is granted: the decision path is what is measured.
import { TokenBucket as LimiterBucket } from 'limiter'
import { TokenBucket } from 'sluice'
import { Bench } from 'tinybench'
import { GcraBucket } from './baselines/token-bucket.mjs'

export function suites({ time }) {
  const rate = 1e9
  const sluice = new TokenBucket({ capacity: 1e9, refillPerSecond: rate })
  const baseline = new GcraBucket(1e9, rate)
  const limiter = new LimiterBucket({ bucketSize: 1e9, tokensPerInterval: 1e9, interval: 'second' })
  return [
    new Bench({ name: 'tryTake (uncontended)', time })
      .add('pure-JS baseline', () => baseline.tryTake(1))
      .add('limiter', () => limiter.tryRemoveTokens(1))
      .add('sluice', () => sluice.tryTake(1)),
  ]
}
