#!/usr/bin/env node
// Runs every benchmark suite, prints a table per suite with the ratio of each
// row to the suite's baseline and of sluice to each peer (all measured in
// this run), and writes the raw numbers to bench/results/<timestamp>.json.
// `--quick` runs each task briefly (a smoke that every scenario produces numbers).
// `--only <name>` (repeatable) runs the groups whose name contains <name>
// (`--only rate-limit`: the keyed rate limits and the HTTP ones); a partial
// run's report goes under bench/results/, never over bench/REPORT.md.
import { execFileSync } from 'node:child_process'
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs'
import { cpus } from 'node:os'
import { parseArgs } from 'node:util'
import { suites as channelSuites } from './channel.bench.mjs'
import { suites as crossThreadSemaphoreSuites } from './cross-thread-semaphore.bench.mjs'
import { suites as diagnosticsSuites } from './diagnostics.bench.mjs'
import { suites as httpRateLimitSuites } from './http-rate-limit.bench.mjs'
import { suites as namedSuites } from './named.bench.mjs'
import { suites as poolSuites } from './pool.bench.mjs'
import { suites as rateLimiterSuites } from './rate-limiter.bench.mjs'
import { suites as resilienceSuites } from './resilience.bench.mjs'
import { suites as redisSuites } from './redis.bench.mjs'
import { suites as semaphoreSuites } from './semaphore.bench.mjs'
import { suites as tokenBucketSuites } from './token-bucket.bench.mjs'
import { suites as waiterSuites } from './waiters.bench.mjs'

// Groups in the order they run; `--only` picks among these names.
const groups = {
  semaphore: semaphoreSuites,
  'token-bucket': tokenBucketSuites,
  'rate-limiter': rateLimiterSuites,
  'http-rate-limit': httpRateLimitSuites,
  'cross-thread-semaphore': crossThreadSemaphoreSuites,
  named: namedSuites,
  channel: channelSuites,
  pool: poolSuites,
  waiters: waiterSuites,
  resilience: resilienceSuites,
  diagnostics: diagnosticsSuites,
  redis: redisSuites,
}
const usage = `usage: npm run bench [-- --quick] [-- --only <group>...]; groups: ${Object.keys(groups).join(', ')}`
let args
try {
  ;({ values: args } = parseArgs({
    options: { quick: { type: 'boolean', default: false }, only: { type: 'string', multiple: true } },
  }))
} catch (error) {
  console.error(`${error.message}\n${usage}`)
  process.exit(2)
}
const chosen = Object.keys(groups).filter((name) => !args.only || args.only.some((part) => name.includes(part)))
if (chosen.length === 0) {
  console.error(`--only ${args.only.join(', ')} matches no group\n${usage}`)
  process.exit(2)
}
const time = args.quick ? 100 : 2000
const DEFAULT_BASELINE = 'pure-JS baseline'

function version(command, ...argv) {
  try {
    return execFileSync(command, argv, { encoding: 'utf8' }).trim()
  } catch {
    return 'unknown'
  }
}

function packageVersion(name) {
  const manifest = new URL(`../node_modules/${name}/package.json`, import.meta.url)
  return JSON.parse(readFileSync(manifest, 'utf8')).version
}

const environment = {
  node: process.version,
  rustc: version('rustc', '--version'),
  cpu: cpus()[0]?.model ?? 'unknown',
  cores: cpus().length,
  sluice: packageVersion('sluice'),
  peers: Object.fromEntries(
    [
      'p-limit',
      'p-queue',
      'async-mutex',
      'limiter',
      'rate-limiter-flexible',
      'bottleneck',
      'piscina',
      'fastify',
      '@fastify/rate-limit',
      'autocannon',
      'proper-lockfile',
      'opossum',
      'cockatiel',
      'tinybench',
      'ioredis',
      'redis',
      'redis-semaphore',
    ].map((p) => [p, packageVersion(p)]),
  ),
  quick: args.quick,
  // Set when only some groups ran: the report then is not the full one.
  only: args.only ? chosen : undefined,
  date: new Date().toISOString(),
}
console.log(`sluice benchmarks — Node ${environment.node}, ${environment.rustc}, ${environment.cpu} x${environment.cores}`)

const RAW_SAMPLES = 2000

function thin(samples) {
  if (!samples) return undefined
  const step = Math.max(1, samples.length / RAW_SAMPLES)
  const out = []
  for (let i = 0; i < samples.length; i += step) out.push(samples[Math.floor(i)])
  return out
}

/**
 * Rows of a tinybench run: ops/s and latency in ns per operation. A suite
 * whose task runs `opsPerIteration` operations per call is scaled to one.
 */
function tinybenchRows(bench) {
  const ops = bench.opsPerIteration ?? 1
  return bench.tasks.map((task) => {
    const r = task.result
    if (r?.state !== 'completed') return { name: task.name, error: String(r?.error ?? r?.state) }
    return {
      name: task.name,
      opsPerSecond: r.throughput.mean * ops,
      nsPerOp: (r.latency.mean * 1e6) / ops,
      p50Ns: (r.latency.p50 * 1e6) / ops,
      p99Ns: (r.latency.p99 * 1e6) / ops,
      samples: r.latency.samplesCount,
      // Raw samples: ms per timed call (of `opsPerIteration` operations),
      // sorted; at most RAW_SAMPLES of them, evenly spaced (a 300 ns task
      // gives millions in 2 s).
      rawSamplesMs: thin(r.latency.samples),
    }
  })
}

const all = chosen.flatMap((name) => groups[name]({ time, quick: args.quick }))
const results = []
let failed = false
const runStarted = performance.now()
for (const [index, suite] of all.entries()) {
  const progress = `[${index + 1}/${all.length}] ${suite.name}`
  const suiteStarted = performance.now()
  // Progress: a ticking elapsed time on a terminal, one line per suite otherwise.
  const tty = process.stdout.isTTY
  const tick = () => process.stdout.write(`\r${progress}: running ${((performance.now() - suiteStarted) / 1000).toFixed(0)} s`)
  const ticker = tty ? setInterval(tick, 1000) : undefined
  if (tty) tick()
  else process.stdout.write(`\n${progress}: running...`)
  let rows
  if (typeof suite.run === 'function' && !('tasks' in suite)) {
    rows = await suite.run()
  } else {
    await suite.run()
    rows = tinybenchRows(suite)
  }
  // A suite may check its rows (a contender that took the wrong path, a
  // count that does not add up): a failed check turns a row into an error.
  suite.check?.(rows)
  clearInterval(ticker)
  const elapsed = (performance.now() - suiteStarted) / 1000
  const total = (performance.now() - runStarted) / 1000
  process.stdout.write(`${tty ? `\r${progress}:` : ''} done in ${elapsed.toFixed(1)} s (${total.toFixed(0)} s so far)\n`)
  const baselineName = suite.baseline ?? DEFAULT_BASELINE
  // Rows carry ops/s (higher is better) or a measured `value` in `suite.unit`
  // (lower is better when `suite.lowerIsBetter`); `score` makes both "higher
  // is better" so one ratio formula serves.
  const score = (row) => row.opsPerSecond ?? (suite.lowerIsBetter ? 1 / row.value : row.value)
  const baselineRow = rows.find((row) => row.name === baselineName && !row.error)
  for (const row of rows) {
    if (row.error) {
      failed = true
      continue
    }
    const measured = row.opsPerSecond ?? row.value
    if (!Number.isFinite(measured) || measured < 0 || (row.opsPerSecond !== undefined && measured === 0)) failed = true
    row.vsBaseline = baselineRow ? score(row) / score(baselineRow) : undefined
  }
  console.table(
    rows.map((row) =>
      row.error
        ? { task: row.name, error: row.error }
        : {
            task: row.name,
            ...(row.opsPerSecond !== undefined
              ? {
                  'ops/s': Math.round(row.opsPerSecond).toLocaleString('en-US'),
                  'mean ns/op': row.nsPerOp?.toFixed(1) ?? '',
                  'p99 ns': row.p99Ns?.toFixed(1) ?? '',
                }
              : { [suite.unit ?? 'value']: row.value.toFixed(row.value < 10 ? 3 : 1) }),
            [`vs ${baselineName}`]: row.vsBaseline === undefined ? '' : `${row.vsBaseline.toFixed(2)}x`,
          },
    ),
  )
  const ours = rows.filter((row) => !row.error && row.name.startsWith('sluice'))
  // Reference rows (an idle loop, say) are context, not contenders.
  const peers = rows.filter((row) => !row.error && !row.reference && !row.name.startsWith('sluice'))
  for (const mine of ours) {
    for (const peer of peers) {
      console.log(`  ${mine.name} / ${peer.name}: ${(score(mine) / score(peer)).toFixed(2)}x (higher is better)`)
    }
  }
  // Notes: lines of Markdown for the report (counts, checks) under the table.
  for (const note of suite.notes ?? []) console.log(`  ${note}`)
  results.push({ suite: suite.name, baseline: baselineName, unit: suite.unit, lowerIsBetter: suite.lowerIsBetter, rows, notes: suite.notes })
}

const dir = new URL('./results/', import.meta.url)
mkdirSync(dir, { recursive: true })
const file = new URL(`${environment.date.replace(/[:.]/g, '-')}.json`, dir)
writeFileSync(file, JSON.stringify({ environment, results }, null, 2))
console.log(`\nraw results: ${file.pathname}`)
// The report is made here rather than by a second command in the npm
// script, so that `npm run bench -- --quick` passes its flag to this file.
execFileSync(process.execPath, [new URL('./report.mjs', import.meta.url).pathname, file.pathname], { stdio: 'inherit' })
if (failed) {
  console.error('some benchmark tasks failed or produced no numbers')
  process.exit(1)
}
