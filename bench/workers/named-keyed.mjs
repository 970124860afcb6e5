// A cluster worker of bench/named.bench.mjs: keyed rate-limit decisions over
// 10,000 keys on a limiter shared by every worker process, through one of:
//   sluice  RateLimiter.open(name, ...) : tryTake, synchronous
//   rlf     rate-limiter-flexible RateLimiterCluster : consume over IPC to the
//           primary, CONCURRENCY calls in flight (it is async)
// Sends the primary { done: decisions, latencies (ns, sampled) }.
import { RateLimiterCluster } from 'rate-limiter-flexible'
import { RateLimiter } from 'sluice'

const { mode, name, dir, decisions, keys } = JSON.parse(process.env.SLUICE_BENCH_KEYED)
const CONCURRENCY = 16
let seed = (process.pid * 2654435761) >>> 0 || 1
const nextKey = () => {
  seed ^= seed << 13
  seed ^= seed >>> 17
  seed ^= seed << 5
  return `user:${(seed >>> 0) % keys}`
}
const now = () => Number(process.hrtime.bigint())

let decide
if (mode === 'sluice') {
  const limiter = RateLimiter.open(name, { capacity: 100, refillPerSecond: 10, maxKeys: 2 * keys, dir })
  decide = (key) => limiter.tryTake(key).allowed
} else {
  const limiter = new RateLimiterCluster({ keyPrefix: name, points: 100, duration: 10, timeoutMs: 30_000 })
  decide = (key) =>
    limiter.consume(key).then(
      () => true,
      (result) => {
        if (result instanceof Error) throw result
        return false
      },
    )
}

await new Promise((resolve) => process.on('message', (message) => message === 'go' && resolve()))
const latencies = []
if (mode === 'sluice') {
  for (let i = 0; i < decisions; i++) {
    // Every 16th call is timed (a clock read costs about what a decision does).
    if ((i & 15) === 0) {
      const started = now()
      decide(nextKey())
      latencies.push(now() - started)
    } else {
      decide(nextKey())
    }
  }
} else {
  let issued = 0
  const lane = async () => {
    while (issued < decisions) {
      issued++
      const started = now()
      await decide(nextKey())
      if ((issued & 15) === 0) latencies.push(now() - started)
    }
  }
  await Promise.all(Array.from({ length: CONCURRENCY }, lane))
}
process.send({ done: decisions, latencies }, () => setTimeout(() => process.disconnect(), 10))
