// Keyed rate limits (issue 14): tryTake on one hot key, allowed and refused,
// against the pure-JS GCRA Map baseline, rate-limiter-flexible's
// RateLimiterMemory (awaited, as its users call it) and limiter's single
// TokenBucket (no key lookup: the single-key reference); then tryTake over
// many distinct keys, each contender alone in a child process, for decisions/s
// and RSS and JS heap bytes per live key.
import { execFile } from 'node:child_process'
import { TokenBucket as LimiterBucket } from 'limiter'
import { RateLimiterMemory } from 'rate-limiter-flexible'
import * as sluice from 'sluice'
import { Bench } from 'tinybench'
import { GcraMap } from './baselines/keyed-gcra.mjs'

const OPS = 1000
const KEY = 'api-key:7f3a9c'
const LIMITER_REFERENCE = 'limiter (one bucket, no key lookup)'
function newSluiceLimiter(options) {
  if (typeof sluice.RateLimiter !== 'function') throw new Error('RateLimiter is not in this build of sluice')
  return new sluice.RateLimiter(options)
}

/**
 * One hot key, every take allowed (a limit of 1e9/s is never reached) or
 * every take refused (a limit of 1 per hour, taken once before).
 */
function hotKey({ time, refused }) {
  const limit = refused ? { capacity: 1, refillPerSecond: 1 / 3600 } : { capacity: 1e9, refillPerSecond: 1e9 }
  const baseline = new GcraMap(limit)
  const bucket = refused
    ? new LimiterBucket({ bucketSize: 1, tokensPerInterval: 1, interval: 'hour' })
    : new LimiterBucket({ bucketSize: 1e9, tokensPerInterval: 1e9, interval: 'second' })
  const flexible = refused
    ? new RateLimiterMemory({ points: 1, duration: 3600 })
    : new RateLimiterMemory({ points: 1e9, duration: 1 })
  let ours
  try {
    ours = newSluiceLimiter(limit)
  } catch (error) {
    console.error(`sluice: ${error.message}`)
  }
  if (refused) {
    // Over the limit from the first timed take (rate-limiter-flexible counts synchronously, inside consume).
    baseline.tryTake(KEY)
    bucket.tryRemoveTokens(1)
    flexible.consume(KEY).catch(() => undefined)
    ours?.tryTake(KEY)
  }
  // Takes and allowances per contender, checked after the run: a contender
  // that took the other path (refused where allowed was meant) timed the wrong thing.
  const counts = {}
  const count = (name, allowed) => {
    const c = (counts[name] ??= { takes: 0, allowed: 0 })
    c.takes += OPS
    c.allowed += allowed
  }
  const bench = new Bench({
    retainSamples: true,
    name: `tryTake, one hot key, ${refused ? 'every take refused (over its limit)' : 'every take allowed'}`,
    time,
  })
    .add('pure-JS baseline', () => {
      let allowed = 0
      for (let i = 0; i < OPS; i++) if (baseline.tryTake(KEY).allowed) allowed++
      count('pure-JS baseline', allowed)
    })
    .add(LIMITER_REFERENCE, () => {
      let allowed = 0
      for (let i = 0; i < OPS; i++) if (bucket.tryRemoveTokens(1)) allowed++
      count(LIMITER_REFERENCE, allowed)
    })
    .add('rate-limiter-flexible', async () => {
      let allowed = 0
      for (let i = 0; i < OPS; i++) {
        try {
          await flexible.consume(KEY)
          allowed++
        } catch (refusal) {
          // It rejects with a RateLimiterRes when over the limit, an Error on failure.
          if (refusal instanceof Error) throw refusal
        }
      }
      count('rate-limiter-flexible', allowed)
    })
  if (ours) {
    bench.add('sluice', () => {
      let allowed = 0
      for (let i = 0; i < OPS; i++) if (ours.tryTake(KEY).allowed) allowed++
      count('sluice', allowed)
    })
  }
  // 1,000 takes per timed call, as tryTake (uncontended): one take is tens of
  // ns, comparable to the harness's own overhead.
  bench.opsPerIteration = OPS
  bench.check = (rows) => {
    for (const row of rows) {
      // Context, not a contender: it has one bucket and no key to look up.
      if (row.name === LIMITER_REFERENCE) row.reference = true
      const c = counts[row.name]
      if (row.error || !c) continue
      const wrong = refused ? c.allowed : c.takes - c.allowed
      if (wrong > 0) row.error = `${wrong} of ${c.takes} takes were ${refused ? 'allowed' : 'refused'}`
    }
    if (!ours) rows.push({ name: 'sluice', error: 'RateLimiter is not in this build of sluice' })
  }
  return bench
}

const keyedContenders = ['pure-JS baseline', 'rate-limiter-flexible', 'sluice']

/** Runs the many-keys child of `name`; resolves with its JSON line or { error }. */
function keysChild(name, keys, takes) {
  const worker = new URL('./workers/rate-limit-keys.mjs', import.meta.url).pathname
  return new Promise((resolve) => {
    // Bounded: a child that hangs is killed and its row is an error.
    // A young generation of fixed size (16 MiB semi-spaces, the default
    // largest): grown during the run, it would count as the limiter's memory.
    const flags = ['--expose-gc', '--min-semi-space-size=16', '--max-semi-space-size=16']
    execFile(process.execPath, [...flags, worker, name, String(keys), String(takes)], { timeout: 120_000 }, (error, stdout, stderr) => {
      if (error) {
        const why = stderr.trim().split('\n').find((line) => /Error/.test(line)) ?? error.message
        resolve({ error: why.trim() })
        return
      }
      resolve(JSON.parse(stdout.trim().split('\n').at(-1)))
    })
  })
}

function manyKeys({ quick }) {
  // The issue's million in the quick run too (one round): memory per key
  // depends on where the key count falls between the table's growth steps
  // (sluice read 45 B per key at 1,000,000 keys, 50 at 500,000, 87-119 at
  // 200,000 here), so a smaller count would not test the target.
  const keys = 1_000_000
  const takes = 2
  const count = keys.toLocaleString('en-US')
  // Two rounds in the full run, the order reversed in the second, so that a
  // burst of load from elsewhere lands on every contender: decisions/s is
  // the best round's (as bestOf), memory the mean of the rounds (it varies
  // by well under 1 B per key between runs).
  const rounds = quick ? 1 : 2
  let measured
  const measure = () =>
    (measured ??= (async () => {
      const runs = Object.fromEntries(keyedContenders.map((name) => [name, []]))
      for (let round = 0; round < rounds; round++) {
        const order = round % 2 === 0 ? keyedContenders : [...keyedContenders].reverse()
        // One at a time: on two cores, a second child would compete for the CPU.
        for (const name of order) runs[name].push(await keysChild(name, keys, takes))
      }
      const mean = (values) => values.reduce((a, b) => a + b, 0) / values.length
      return Object.fromEntries(
        Object.entries(runs).map(([name, results]) => {
          const failed = results.find((r) => r.error)
          if (failed) return [name, failed]
          const best = results.reduce((a, b) => (b.decisionsPerSecond > a.decisionsPerSecond ? b : a))
          return [
            name,
            {
              ...best,
              rssBytesPerKey: mean(results.map((r) => r.rssBytesPerKey)),
              heapBytesPerKey: mean(results.map((r) => r.heapBytesPerKey)),
              runs: results,
            },
          ]
        }),
      )
    })())
  const rowsOf = (pick) => async () =>
    Object.entries(await measure()).map(([name, result]) => (result.error ? { name, error: result.error } : { name, ...pick(result) }))
  const rate = (n) => (n === undefined ? '' : Math.round(n).toLocaleString('en-US'))
  const memory = {
    name: `RSS per live key, ${count} keys (bytes)`,
    baseline: 'pure-JS baseline',
    unit: 'bytes',
    lowerIsBetter: true,
    async run() {
      const results = await measure()
      memory.notes = [
        `${rounds > 1 ? `${rounds} rounds, the order reversed in the second; decisions/s is the best round's, memory the mean. ` : ''}Each contender in its own process (\`node --expose-gc\`, young generation fixed at 16 MiB semi-spaces and touched before the first reading, gc before and after): ${count} string keys, ${takes} takes each within one refill period (10 per hour), every take allowed (checked).`,
        'JS heap bytes are part of the RSS; sluice keeps its keys in native memory, outside the JS heap.',
        '',
        '| contender | RSS B/key | JS heap B/key | new keys/s | existing keys/s |',
        '| --- | ---: | ---: | ---: | ---: |',
        ...Object.entries(results).map(([name, r]) =>
          r.error
            ? `| ${name} | error: ${r.error} | | | |`
            : `| ${name} | ${r.rssBytesPerKey.toFixed(1)} | ${r.heapBytesPerKey.toFixed(1)} | ${rate(r.newKeysPerSecond)} | ${rate(r.existingKeysPerSecond)} |`,
        ),
      ]
      return rowsOf((r) => ({ value: r.rssBytesPerKey, heapBytesPerKey: r.heapBytesPerKey, runs: r.runs.map((run) => run.rssBytesPerKey) }))()
    },
  }
  return [
    {
      name: `tryTake over ${count} distinct keys, ${takes} takes each, all live (decisions/s)`,
      baseline: 'pure-JS baseline',
      run: rowsOf((r) => ({
        opsPerSecond: r.decisionsPerSecond,
        runs: r.runs.map((run) => run.decisionsPerSecond),
        newKeysPerSecond: r.newKeysPerSecond,
        existingKeysPerSecond: r.existingKeysPerSecond,
      })),
    },
    memory,
  ]
}

export function suites({ time, quick }) {
  // Refused first: the two variants' tasks are the same function literals and
  // share V8's feedback, and the baseline's refusal path, optimized after its
  // allowance path, ran ~3x slower (5 vs 16 million/s here) in tinybench;
  // this order leaves every contender at its best in both (sluice's native
  // call is the same either way).
  return [hotKey({ time, refused: true }), hotKey({ time, refused: false }), ...manyKeys({ quick })]
}
