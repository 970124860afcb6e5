#!/usr/bin/env node
// Turns a results file of bench/run.mjs into a Markdown report with one SVG
// bar chart per suite (generated here, no browser). A full run writes
// bench/REPORT.md and bench/charts/; a quick run, or one of only some groups
// (`--only`), writes under bench/results/ so it never replaces the committed report.
//
//   node bench/report.mjs [results.json]   (default: the newest in bench/results)
import { mkdirSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { basename } from 'node:path'
import { parseArgs } from 'node:util'
import { withServiceSection } from './service-section.mjs'

const resultsDir = new URL('./results/', import.meta.url)

function newestResults() {
  const files = readdirSync(resultsDir).filter((f) => f.endsWith('.json')).sort()
  if (files.length === 0) throw new Error('no results: run `npm run bench` first')
  return new URL(files.at(-1), resultsDir)
}

let given
try {
  ;({
    positionals: [given],
  } = parseArgs({ allowPositionals: true, options: {} }))
} catch (error) {
  console.error(`${error.message}\nusage: node bench/report.mjs [results.json]`)
  process.exit(2)
}
const file = given ? new URL(given, `file://${process.cwd()}/`) : newestResults()
const { environment, results } = JSON.parse(readFileSync(file, 'utf8'))
const quick = environment.quick
const partial = environment.only !== undefined
const outDir = quick || partial ? resultsDir : new URL('./', import.meta.url)
const chartsDir = new URL('./charts/', outDir)
mkdirSync(chartsDir, { recursive: true })
// Charts of suites that were renamed or removed must not linger beside the report.
for (const stale of readdirSync(chartsDir).filter((f) => f.endsWith('.svg'))) rmSync(new URL(stale, chartsDir))

const number = (n) => (n >= 100 ? Math.round(n).toLocaleString('en-US') : n.toPrecision(3))
const slug = (name) => name.toLowerCase().replace(/[^a-z0-9]+/g, '-').replace(/^-|-$/g, '').slice(0, 60)
const escape = (text) => String(text).replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;')

const measure = (row) => row.opsPerSecond ?? row.value
const unitOf = (suite) => (suite.unit === undefined ? '/s' : ` ${suite.unit}`)

/** A horizontal bar chart, sluice rows in one colour, the rest in another. */
function chart(suite) {
  const rows = suite.rows.filter((row) => !row.error)
  const width = 720
  const label = 260
  const bar = 26
  const gap = 8
  const top = 36
  const height = top + rows.length * (bar + gap) + 12
  const max = Math.max(...rows.map(measure))
  const bars = rows.map((row, i) => {
    const y = top + i * (bar + gap)
    const w = Math.max(1, ((width - label - 110) * measure(row)) / max)
    const fill = row.name.startsWith('sluice') ? '#1f77b4' : '#9e9e9e'
    return [
      `<text x="${label - 8}" y="${y + bar * 0.68}" text-anchor="end">${escape(row.name)}</text>`,
      `<rect x="${label}" y="${y}" width="${w.toFixed(1)}" height="${bar}" fill="${fill}"/>`,
      `<text x="${label + w + 6}" y="${y + bar * 0.68}">${number(measure(row))}${unitOf(suite)}</text>`,
    ].join('')
  })
  return [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}" font-family="sans-serif" font-size="13">`,
    `<rect width="100%" height="100%" fill="white"/>`,
    `<text x="8" y="22" font-weight="bold">${escape(suite.suite)} (${suite.lowerIsBetter ? 'lower' : 'higher'} is better)</text>`,
    ...bars,
    '</svg>',
  ].join('\n')
}

/**
 * The targets the project set itself (issue #6; 14.x are issue 14's keyed
 * rate limits, 16.x issue 16's Redis reach, 17 issue 17's diagnostics; its p99 target is a note of the suite), each checked against this run: a ratio of two rows of one
 * suite (higher is better, the same score as the tables), or a bound on one
 * row's value (`below`: strictly less; `atMost`: less or equal).
 */
const targets = [
  { scenario: 1, suite: /async tasks under a limit of 16/, ours: 'sluice', other: 'p-limit', atLeast: 5 },
  { scenario: 1, suite: /async tasks under a limit of 16/, ours: 'sluice', other: 'async-mutex', atLeast: 20 },
  { scenario: 1, suite: /async tasks under a limit of 16/, ours: 'sluice', other: 'pure-JS baseline', atLeast: 1 },
  { scenario: 3, suite: /^tryTake \(uncontended\)/, ours: 'sluice', other: 'limiter', atLeast: 2 },
  { scenario: 4, suite: /^cross-thread semaphore/, ours: 'sluice', other: 'postMessage coordinator', atLeast: 50 },
  // Issue 13: the best sluice row (any fairness), named in the label.
  { scenario: 4, suite: /^cross-thread semaphore/, ours: /^sluice/, other: 'SAB + waitAsync baseline', atLeast: 1 },
  { scenario: 5, suite: /^cross-thread messages/, ours: 'sluice, batches of 256', other: 'MessagePort', atLeast: 10 },
  { scenario: 5, suite: /^channel 1 -> 1 workers, 64 B/, ours: /^sluice/, other: 'MessagePort', atLeast: 10 },
  { scenario: 5, suite: /^channel 1 -> 1 workers, 4 KiB/, ours: /^sluice/, other: 'MessagePort', atLeast: 10 },
  { scenario: 5, suite: /^channel 2 -> 2 workers, 64 B/, ours: /^sluice/, other: 'MessagePort', atLeast: 10 },
  { scenario: 5, suite: /^channel 2 -> 2 workers, 4 KiB/, ours: /^sluice/, other: 'MessagePort', atLeast: 10 },
  { scenario: 5, suite: /^peak memory/, ours: /^sluice/, other: 'MessagePort (unbounded)', atLeast: 1 },
  { scenario: 6, suite: /^pool: trivial/, ours: 'sluice WorkerPool.run', other: 'piscina', atLeast: 1 / 1.1 },
  { scenario: 6, suite: /^pool: trivial/, ours: 'sluice WorkerPool.map (items/s)', other: 'piscina', atLeast: 5 },
  { scenario: 7, suite: /^event-loop lag p99.* held 1 ms/, ours: 'sluice', below: 1, what: 'p99 lag < 1 ms' },
  { scenario: 13, suite: /async tasks under a limit of 16/, ours: 'sluice', other: 'p-limit', atLeast: 2 },
  { scenario: 13, suite: /async tasks under a limit of 16/, ours: 'sluice compat/p-limit', other: 'p-limit', atLeast: 1.5 },
  { scenario: 13, suite: /^tryAcquire \+ release/, ours: 'sluice', other: 'pure-JS baseline', atLeast: 0.5 },
  { scenario: 13, suite: /^await acquire \+ release/, ours: 'sluice', other: 'pure-JS baseline', atLeast: 1 },
  { scenario: 13, suite: /^channel 1 -> 1 workers, 64 B/, ours: 'sluice', other: 'SAB ring baseline', atLeast: 1 },
  { scenario: 13, suite: /^cross-thread messages/, ours: 'sluice, batches of 256', other: 'MessagePort, batches of 256', atLeast: 1 },
  { scenario: 13, suite: /^memory per pending waiter/, ours: 'sluice', atMost: 400, what: 'JS heap per pending waiter <= 400 B' },
  { scenario: 14.1, suite: /^tryTake, one hot key, every take allowed/, ours: 'sluice', other: 'rate-limiter-flexible', atLeast: 2 },
  { scenario: 14.1, suite: /^tryTake, one hot key, every take allowed/, ours: 'sluice', other: 'pure-JS baseline', atLeast: 1 },
  { scenario: 14.1, suite: /^tryTake, one hot key, every take refused/, ours: 'sluice', other: 'rate-limiter-flexible', atLeast: 2 },
  { scenario: 14.1, suite: /^tryTake, one hot key, every take refused/, ours: 'sluice', other: 'pure-JS baseline', atLeast: 1 },
  { scenario: 14.2, suite: /^tryTake over .* distinct keys/, ours: 'sluice', other: 'rate-limiter-flexible', atLeast: 2 },
  { scenario: 14.2, suite: /^RSS per live key/, ours: 'sluice', atMost: 64, what: 'RSS per live key <= 64 B' },
  { scenario: 14.3, suite: /^fastify 5, 100 connections/, ours: 'sluice/fastify', other: '@fastify/rate-limit', atLeast: 1 },
  { scenario: 15.1, suite: /^4 cluster processes, keyed tryTake/, ours: 'sluice', other: 'rate-limiter-flexible RateLimiterCluster', atLeast: 100 },
  // The best of `sluice` and `sluice (eventual)`; the label names the row.
  { scenario: 15.2, suite: /^4 cluster processes contending for Semaphore.open of 1 /, ours: /^sluice/, other: 'IPC coordinator (process.send)', atLeast: 20 },
  { scenario: 15.2, suite: /^4 cluster processes contending for Semaphore.open of 16/, ours: /^sluice/, other: 'IPC coordinator (process.send)', atLeast: 20 },
  { scenario: 16.1, suite: /^redis: keyed decisions/, ours: /^sluice/, other: 'rate-limiter-flexible RateLimiterRedis', atLeast: 2 },
  { scenario: 16.2, suite: /^redis: a semaphore of 1/, ours: /^sluice/, other: 'redis-semaphore Semaphore', atLeast: 1 },
  // Issue 17: diagnostics_channel costs at most 2% while nobody subscribes.
  ...['tryAcquire \\+ release', 'await acquire \\+ release', 'await run'].map((op) => ({
    scenario: 17,
    suite: new RegExp(`^diagnostics: ${op}`),
    ours: 'no subscriber',
    other: 'diagnostics off (untraced semaphore)',
    atLeast: 0.98,
  })),
]

function targetsTable() {
  const out = ['## Targets', '', '| scenario | target | measured | met |', '| ---: | --- | ---: | :---: |']
  for (const target of targets) {
    const suite = results.find((s) => target.suite.test(s.suite))
    const score = (row) => (suite.lowerIsBetter ? 1 / measure(row) : measure(row))
    // A pattern picks the best of the rows it matches (sluice's best API for the job).
    const find = (name) =>
      suite?.rows
        .filter((row) => !row.error && (name instanceof RegExp ? name.test(row.name) : row.name === name))
        .reduce((best, row) => (best === undefined || score(row) > score(best) ? row : best), undefined)
    // A partial run (`--only`) lists only the targets of the suites it ran.
    if (!suite && partial) continue
    const ours = find(target.ours)
    const where = ` (${suite ? suite.suite.replace(/ \(.*$/, '') : target.suite.source.replace(/^\^|\\/g, '').replace(/\.\*/g, '...')})`
    const bound = target.below ?? target.atMost
    const label =
      bound === undefined
        ? `${ours?.name ?? target.ours} >= ${target.atLeast.toFixed(2).replace(/\.?0+$/, '')}x ${target.other}${where}`
        : `${target.what}${where}`
    if (!ours) {
      out.push(`| ${target.scenario} | ${label} | not measured | |`)
      continue
    }
    if (bound !== undefined) {
      const value = measure(ours)
      const met = target.below !== undefined ? value < target.below : value <= target.atMost
      out.push(`| ${target.scenario} | ${label} | ${value.toFixed(2)} ${suite.unit} | ${met ? 'yes' : '**no**'} |`)
      continue
    }
    const other = find(target.other)
    const ratio = other ? score(ours) / score(other) : NaN
    const met = ratio >= target.atLeast
    // A third decimal where two would round onto the other side of the bound (0.495 shown as 0.50, not met).
    const shown = Number(ratio.toFixed(2)) >= target.atLeast === met ? ratio.toFixed(2) : ratio.toFixed(3)
    out.push(`| ${target.scenario} | ${label} | ${shown}x | ${met ? 'yes' : '**no**'} |`)
  }
  return out
}

const lines = [
  '# sluice benchmark report',
  '',
  `Generated by \`npm run bench\` from \`${basename(file.pathname)}\`${quick ? ' (quick run: short, not for quoting)' : ''}${partial ? ` (only ${environment.only.join(', ')})` : ''}.`,
  '',
  `sluice ${environment.sluice ?? "?"}, Node ${environment.node}, ${environment.rustc}, ${environment.cpu} x ${environment.cores} cores, ${environment.date}.`,
  `Peers: ${Object.entries(environment.peers ?? {}).map(([name, version]) => `${name} ${version}`).join(', ')}.`,
  '',
  'Every ratio compares contenders measured in the same run, on a shared machine: quote ratios, not absolutes.',
  '',
]
lines.push(...targetsTable(), '')
for (const suite of results) {
  const rows = suite.rows.filter((row) => !row.error)
  const chartFile = `${slug(suite.suite)}.svg`
  writeFileSync(new URL(chartFile, chartsDir), chart(suite))
  lines.push(`## ${suite.suite}`, '', `![${suite.suite}](charts/${chartFile})`, '')
  const unitHeader = suite.unit === undefined ? 'ops/s' : suite.unit
  lines.push(
    `| contender | ${unitHeader} | mean ns/op | p50 ns | p99 ns | vs ${suite.baseline} (higher is better) |`,
    '| --- | ---: | ---: | ---: | ---: | ---: |',
  )
  const ns = (value) => (value === undefined ? '' : number(value))
  for (const row of suite.rows) {
    if (row.error) {
      lines.push(`| ${row.name} | error: ${row.error} | | | | |`)
      continue
    }
    const ratio = row.vsBaseline === undefined ? '' : `${row.vsBaseline.toFixed(2)}x`
    lines.push(`| ${row.name} | ${number(measure(row))} | ${ns(row.nsPerOp)} | ${ns(row.p50Ns)} | ${ns(row.p99Ns)} | ${ratio} |`)
  }
  // Higher is better for every score.
  const score = (row) => (suite.lowerIsBetter ? 1 / measure(row) : measure(row))
  const ours = rows.filter((row) => row.name.startsWith('sluice'))
  const others = rows.filter((row) => !row.reference && !row.name.startsWith('sluice'))
  if (ours.length > 0 && others.length > 0) {
    const best = ours.reduce((a, b) => (score(a) >= score(b) ? a : b))
    const fastest = others.reduce((a, b) => (score(a) >= score(b) ? a : b))
    const ratio = score(best) / score(fastest)
    lines.push(
      '',
      ratio >= 1
        ? `sluice's best row is ${ratio.toFixed(2)}x the best other contender (${fastest.name}).`
        : `**sluice is behind here**: its best row is ${ratio.toFixed(2)}x the best other contender (${fastest.name}).`,
    )
  }
  if (suite.notes?.length) lines.push('', ...suite.notes)
  lines.push('')
}
const report = new URL(quick ? 'REPORT-quick.md' : partial ? 'REPORT-partial.md' : 'REPORT.md', outDir)
// The full report ends with the reference service's section, measured apart (npm run bench:service).
writeFileSync(report, quick || partial ? lines.join('\n') : withServiceSection(lines.join('\n')))
console.log(`report: ${report.pathname}`)
