// What observability costs on the hot paths: each operation with nobody
// subscribed to sluice's diagnostics channels (the default; target within 2%
// of the code without them), and with a no-op subscriber on every channel.
// `metrics()` counting is always on: one `Atomics.add` per uncontended call.
//
// The unsubscribed contenders of each suite take turns (bench/interleaved.mjs):
// they are a few percent apart, less than tinybench's order effects.
//
// The semaphore's suites also have a 'diagnostics off' row, the baseline: a
// semaphore made silent with `internal.untraced` (as the pool's own room
// semaphore is), whose call sites skip the `hasSubscribers` checks. The
// 'no subscriber' row's ratio to it is what the checks cost.
//
// With SLUICE_BASE=<path to another build's dist/index.js> (e.g. main's,
// built from `git archive main`), each suite gets a 'base build' row and
// compares against it: the same operations before this code existed.
// Exports a list of tinybench suites for bench/run.mjs.
import { channel, tracingChannel } from 'node:diagnostics_channel'
import { createRequire } from 'node:module'
import * as sluice from 'sluice'
import { Bench } from 'tinybench'
import { takeTurns } from './interleaved.mjs'
// The same module instance as 'sluice' loads (its dist/index.js imports ./semaphore.js).
import { internal } from '../packages/node/dist/semaphore.js'

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
function scenarios({ Semaphore, TokenBucket, RateLimiter }, untraced = false) {
  const sem = new Semaphore(16)
  if (untraced) internal.untraced(sem)
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

const SEMAPHORE = new Set(['tryAcquire + release (uncontended, sync)', 'await acquire + release (uncontended)', 'await run (uncontended)'])

export function suites({ time }) {
  const mine = scenarios(sluice)
  const silent = scenarios(sluice, true)
  const base = process.env.SLUICE_BASE ? scenarios(createRequire(import.meta.url)(process.env.SLUICE_BASE)) : undefined
  const names = Object.keys(mine)
  // Every row is measured by the first suite's run: first each operation's
  // unsubscribed rows, then each one's subscribed row, because subscribing
  // and unsubscribing leave the library's inline caches polymorphic for
  // whatever runs after (measured: 'no subscriber' 0.57x 'diagnostics off'
  // when it ran after a subscribed slice, 0.93x when it did not).
  let measured
  const measureAll = async () => {
    const rows = {}
    for (const name of names) {
      const contenders = [
        ...(base ? [{ name: 'base build', fn: base[name] }] : []),
        ...(SEMAPHORE.has(name) ? [{ name: 'diagnostics off (untraced semaphore)', fn: silent[name] }] : []),
        { name: 'no subscriber', fn: mine[name] },
      ]
      rows[name] = await takeTurns(contenders, { time, opsPerCall: SYNC.has(name) ? OPS : 1 })
    }
    const unsubscribe = subscribeAll()
    try {
      for (const name of names) {
        const subscribed = { name: 'subscribed (no-op)', fn: mine[name] }
        rows[name].push(...(await takeTurns([subscribed], { time, opsPerCall: SYNC.has(name) ? OPS : 1 })))
      }
    } finally {
      unsubscribe()
    }
    return rows
  }
  const benches = names.map((name) => ({
    name: `diagnostics: ${name}`,
    baseline: base ? 'base build' : SEMAPHORE.has(name) ? 'diagnostics off (untraced semaphore)' : 'no subscriber',
    run: async () => (await (measured ??= measureAll()))[name],
  }))
  return [...benches, parts(time)]
}
