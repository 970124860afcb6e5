// One contender of the many-keys scenario, alone in this process so that its
// memory is its own: `takes` passes over `keys` distinct string keys
// (`key:<i>`, made as a caller would make them, for every contender), each
// key taken once per pass, all within one refill period (10 per hour), so
// every key stays live and every take is allowed. Prints one JSON line:
// decisions/s (first pass: new keys; later passes: existing keys) and RSS and
// JS heap bytes per live key (gc'd before and after, deltas divided by keys).
//
//   node --expose-gc --min-semi-space-size=16 --max-semi-space-size=16 \
//     bench/workers/rate-limit-keys.mjs <contender> <keys> <takes>
import { RateLimiterMemory } from 'rate-limiter-flexible'
import * as sluice from 'sluice'
import { GcraMap } from '../baselines/keyed-gcra.mjs'

const [name, keysArg, takesArg] = process.argv.slice(2)
const keys = Number(keysArg)
const takes = Number(takesArg)
const gc = globalThis.gc
if (typeof gc !== 'function') throw new Error('run with node --expose-gc')

// 10 per hour: a key taken a few times in a run of seconds is nowhere near
// back at rest, so no limiter may drop it (sluice drops keys at rest).
const CAPACITY = 10
const WINDOW_S = 3600

/** Each returns a take(key) answering whether the take was allowed (or a promise of it). */
const contenders = {
  'pure-JS baseline': () => {
    const limiter = new GcraMap({ capacity: CAPACITY, refillPerSecond: CAPACITY / WINDOW_S, maxKeys: keys })
    return (key) => limiter.tryTake(key).allowed
  },
  'rate-limiter-flexible': () => {
    const limiter = new RateLimiterMemory({ points: CAPACITY, duration: WINDOW_S })
    return async (key) => {
      try {
        await limiter.consume(key)
        return true
      } catch (refusal) {
        if (refusal instanceof Error) throw refusal
        return false
      }
    }
  },
  sluice: () => {
    if (typeof sluice.RateLimiter !== 'function') throw new Error('RateLimiter is not in this build of sluice')
    const limiter = new sluice.RateLimiter({ capacity: CAPACITY, refillPerSecond: CAPACITY / WINDOW_S, maxKeys: keys })
    return (key) => limiter.tryTake(key).allowed
  },
}

function settle() {
  gc()
  gc()
  return process.memoryUsage()
}

const make = contenders[name]
if (!make) throw new Error(`unknown contender ${name}; one of ${Object.keys(contenders).join(', ')}`)
const asynchronous = name === 'rate-limiter-flexible'
// The young generation is fixed at its largest by the parent
// (--min-semi-space-size = --max-semi-space-size): left to grow while the
// keys are made, it stays grown after gc, 16 B of RSS per key (1,000,000
// keys, 2 takes) with no limiter at all. Making the keys once before the
// first reading touches all of it, so that a limiter that only answers true
// reads 0 B per key.
let length = 0
for (let pass = 0; pass < takes; pass++) for (let i = 0; i < keys; i++) length += `key:${i}`.length
if (length === 0) throw new Error('no keys made')
const before = settle()
const take = make()
let allowed = 0
const seconds = []
for (let pass = 0; pass < takes; pass++) {
  const started = performance.now()
  if (asynchronous) {
    for (let i = 0; i < keys; i++) if (await take(`key:${i}`)) allowed++
  } else {
    for (let i = 0; i < keys; i++) if (take(`key:${i}`)) allowed++
  }
  seconds.push((performance.now() - started) / 1000)
}
const after = settle()
// A take after the snapshot keeps the limiter (and its keys) reachable through it.
if (allowed !== keys * takes || !(await take('key:0'))) {
  throw new Error(`${allowed} of ${keys * takes} takes allowed: keys were refused or dropped`)
}
const total = seconds.reduce((a, b) => a + b, 0)
console.log(
  JSON.stringify({
    decisionsPerSecond: (keys * takes) / total,
    newKeysPerSecond: keys / seconds[0],
    existingKeysPerSecond: takes > 1 ? (keys * (takes - 1)) / (total - seconds[0]) : undefined,
    rssBytesPerKey: (after.rss - before.rss) / keys,
    heapBytesPerKey: (after.heapUsed - before.heapUsed) / keys,
  }),
)
