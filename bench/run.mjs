#!/usr/bin/env node
// Runs every benchmark suite, prints a table per suite with the ratio of each
// row to the pure-JS baseline of the same run, and writes the raw numbers to
// bench/results/<timestamp>.json.  `--quick` runs each task briefly (a smoke).
import { execFileSync } from 'node:child_process'
import { mkdirSync, writeFileSync } from 'node:fs'
import { cpus } from 'node:os'
import { parseArgs } from 'node:util'
import { suites as semaphoreSuites } from './semaphore.bench.mjs'

const { values: args } = parseArgs({ options: { quick: { type: 'boolean', default: false } } })
const time = args.quick ? 100 : 2000
const BASELINE = 'pure-JS baseline'

function version(command, ...argv) {
  try {
    return execFileSync(command, argv, { encoding: 'utf8' }).trim()
  } catch {
    return 'unknown'
  }
}

const environment = {
  node: process.version,
  rustc: version('rustc', '--version'),
  cpu: cpus()[0]?.model ?? 'unknown',
  cores: cpus().length,
  quick: args.quick,
  date: new Date().toISOString(),
}
console.log(`sluice benchmarks — Node ${environment.node}, ${environment.rustc}, ${environment.cpu} x${environment.cores}`)

const results = []
let failed = false
for (const bench of semaphoreSuites({ time })) {
  process.stdout.write(`\n${bench.name}: running ${bench.tasks.length} tasks...`)
  await bench.run()
  process.stdout.write(' done\n')
  const baseline = bench.tasks.find((t) => t.name === BASELINE)?.result?.throughput?.mean
  const rows = bench.tasks.map((task) => {
    const r = task.result
    if (r?.state !== 'completed') {
      failed = true
      return { name: task.name, error: String(r?.error ?? r?.state) }
    }
    return {
      name: task.name,
      opsPerSecond: r.throughput.mean,
      nsPerOp: r.latency.mean * 1e6,
      p50Ns: r.latency.p50 * 1e6,
      p99Ns: r.latency.p99 * 1e6,
      samples: r.latency.samplesCount,
      vsBaseline: baseline ? r.throughput.mean / baseline : undefined,
    }
  })
  console.table(
    rows.map((row) =>
      row.error
        ? { task: row.name, error: row.error }
        : {
            task: row.name,
            'ops/s': Math.round(row.opsPerSecond).toLocaleString('en-US'),
            'mean ns/op': row.nsPerOp.toFixed(1),
            'p99 ns': row.p99Ns.toFixed(0),
            'vs baseline': row.vsBaseline === undefined ? '' : `${row.vsBaseline.toFixed(2)}x`,
          },
    ),
  )
  results.push({ suite: bench.name, rows })
}

const dir = new URL('./results/', import.meta.url)
mkdirSync(dir, { recursive: true })
const file = new URL(`${environment.date.replace(/[:.]/g, '-')}.json`, dir)
writeFileSync(file, JSON.stringify({ environment, results }, null, 2))
console.log(`\nraw results: ${file.pathname}`)
if (failed) {
  console.error('some benchmark tasks failed')
  process.exit(1)
}
