// What observability costs on the hot paths: each operation with nobody
// subscribed to sluice's diagnostics channels (the default; target within 2%
// of the code without them), and with a no-op subscriber on every channel.
// `metrics()` counting is always on: one `Atomics.add` per uncontended call.
//
// With SLUICE_BASE=<path to another build's dist/index.js> (e.g. main's,
// built from `git archive main`), each suite gets a 'base build' row and
// compares against it: the same operations before this code existed.
// Exports a list of tinybench suites for bench/run.mjs.
import { channel, tracingChannel } from 'node:diagnostics_channel'
import { createRequire } from 'node:module'
import * as sluice from 'sluice'
import { Bench } from 'tinybench'

const OPS = 1000

const TRACING = ['semaphore.acquire', 'token-bucket.take', 'rate-limiter.take', 'channel.send', 'channel.recv', 'pool.run']
const PLAIN = ['semaphore.release', 'semaphore.refused', 'semaphore.close', 'token-bucket.refused', 'rate-limiter.refused', 'channel.close']

const noop = () => {}
const handlers = { start: noop, end: noop, asyncStart: noop, asyncEnd: noop, error: noop }

/** Subscribes a no-op to every sluice channel; returns the unsubscribe. */
function subscribeAll() {
  for (const name of TRACING) tracingChannel(`sluice.${name}`).subscribe(handlers)
  for (const name of PLAIN) channel(`sluice.${name}`).subscribe(noop)
  return () => {
    for (const name of TRACING) tracingChannel(`sluice.${name}`).unsubscribe(handlers)
    for (const name of PLAIN) channel(`sluice.${name}`).unsubscribe(noop)
  }
}

/** The hot paths of one build of sluice, each a function run per timed call. */
function scenarios({ Semaphore, TokenBucket, RateLimiter }) {
  const sem = new Semaphore(16)
  const bucket = new TokenBucket({ capacity: 1e9, refillPerSecond: 1e9 })
  const limiter = new RateLimiter({ capacity: 1e9, refillPerSecond: 1e9 })
  return {
    'tryAcquire + release (uncontended, sync)': () => {
      for (let i = 0; i < OPS; i++) sem.tryAcquire().release()
    },
    'await acquire + release (uncontended)': async () => {
      ;(await sem.acquire()).release()
    },
    'await run (uncontended)': () => sem.run(noop),
    'TokenBucket tryTake (uncontended, sync)': () => {
      for (let i = 0; i < OPS; i++) bucket.tryTake(1)
    },
    'RateLimiter tryTake, one key (sync)': () => {
      for (let i = 0; i < OPS; i++) limiter.tryTake('key')
    },
  }
}

const SYNC = new Set(['tryAcquire + release (uncontended, sync)', 'TokenBucket tryTake (uncontended, sync)', 'RateLimiter tryTake, one key (sync)'])

/**
 * The two things the unsubscribed hot paths gained, alone: the metrics
 * counter (one `Atomics.add` on shared memory) and a `hasSubscribers` check.
 */
function parts(time) {
  const words = new Uint32Array(new SharedArrayBuffer(64))
  const tracing = tracingChannel('sluice.semaphore.acquire')
  let sink = 0
  const bench = new Bench({ retainSamples: true, name: 'diagnostics: the per-call costs alone', time })
    .add('empty loop', () => {
      for (let i = 0; i < OPS; i++) sink += i
    })
    .add('Atomics.add (metrics counter)', () => {
      for (let i = 0; i < OPS; i++) sink += Atomics.add(words, 0, 1)
    })
    .add('TracingChannel.hasSubscribers (none)', () => {
      for (let i = 0; i < OPS; i++) sink += tracing.hasSubscribers ? 1 : i
    })
  bench.baseline = 'empty loop'
  bench.opsPerIteration = OPS
  bench.check = () => {
    if (sink === -1) throw new Error('unreachable: keeps the loops from being optimized away')
  }
  return bench
}

export function suites({ time }) {
  const mine = scenarios(sluice)
  const base = process.env.SLUICE_BASE ? scenarios(createRequire(import.meta.url)(process.env.SLUICE_BASE)) : undefined
  const benches = Object.entries(mine).map(([name, run]) => {
    const bench = new Bench({ retainSamples: true, name: `diagnostics: ${name}`, time })
    if (base) bench.add('base build', base[name])
    bench.add('no subscriber', run)
    let unsubscribe
    bench.add('subscribed (no-op)', run, {
      beforeAll: () => {
        unsubscribe = subscribeAll()
      },
      afterAll: () => unsubscribe?.(),
    })
    bench.baseline = base ? 'base build' : 'no subscriber'
    if (SYNC.has(name)) bench.opsPerIteration = OPS
    return bench
  })
  return [...benches, parts(time)]
}
