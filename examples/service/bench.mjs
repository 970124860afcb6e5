// npm run bench:service: the reference service on sluice (server.mjs) beside
// the same service on piscina + p-limit + rate-limiter-flexible + opossum
// (baseline.mjs), each run for BENCH_SECONDS (10) under autocannon on a
// throwaway Postgres (postgres.mjs), writes bench/SERVICE.md and prints it.
//
// The load: 400 req/s offered on 40 connections, half of the requests from
// one hot API key (4 times its limit of 50 req/s), the rest spread over 9
// keys that stay under theirs (22 req/s each). While it runs: pg_stat_activity every 10 ms
// (how many INSERTs Postgres runs at once), the RSS of every process of the
// service every 100 ms, and each process's event-loop delay.
import autocannon from 'autocannon'
import { fork } from 'node:child_process'
import { once } from 'node:events'
import { readFile, writeFile } from 'node:fs/promises'
import { cpus, loadavg } from 'node:os'
import pg from 'pg'
import { RateLimiter, Semaphore } from 'sluice'
import { freePort, startPostgres } from './postgres.mjs'
import { withServiceSection } from '../../bench/service-section.mjs'

const SECONDS = Number(process.env.BENCH_SECONDS ?? 10)
const CONNECTIONS = 40
// offered load, whatever the answers: a closed loop would send faster as
// refusals (fast) grow, pushing every key over its limit
const OFFERED = Number(process.env.BENCH_RATE ?? 400)
const WORKERS = 2
const DB_PERMITS = Number(process.env.BENCH_DB_PERMITS ?? 4)
const RATE = 50 // per key per second, and the burst
// each INSERT holds its connection this long (pg_sleep in the statement):
// enough that the admitted orders keep a few queries running at once
const QUERY_MS = 20
const KEYS = Array.from({ length: 9 }, (_, i) => `key-${i + 1}`)
const contenders = [
  { name: 'sluice', file: 'server.mjs' },
  { name: 'baseline', file: 'baseline.mjs' },
]

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms))

async function rssKb(pid) {
  try {
    const status = await readFile(`/proc/${pid}/status`, 'utf8')
    return Number(/VmRSS:\s+(\d+)/.exec(status)?.[1] ?? 0)
  } catch {
    return 0 // gone
  }
}

/** Samples until `stop()`: the most active INSERTs seen at once, and the largest total RSS. */
function startSamplers(databaseUrl, pids) {
  const state = { running: true, maxQueries: 0, samples: 0, maxRssKb: 0 }
  const queries = (async () => {
    const client = new pg.Client({ connectionString: databaseUrl })
    await client.connect()
    try {
      while (state.running) {
        const { rows } = await client.query(
          "select count(*)::int as n from pg_stat_activity where state = 'active' and query like 'insert into orders%'",
        )
        state.maxQueries = Math.max(state.maxQueries, rows[0].n)
        state.samples++
        await sleep(10)
      }
    } finally {
      await client.end()
    }
  })()
  const rss = (async () => {
    while (state.running) {
      const total = (await Promise.all(pids.map(rssKb))).reduce((a, b) => a + b, 0)
      state.maxRssKb = Math.max(state.maxRssKb, total)
      await sleep(100)
    }
  })()
  return {
    async stop() {
      state.running = false
      await Promise.all([queries, rss])
      return state
    },
  }
}

function request(key, counts) {
  return {
    method: 'POST',
    path: '/orders',
    headers: { 'x-api-key': key, 'content-type': 'application/json' },
    body: JSON.stringify({ item: `tea-${key}`, qty: 2 }),
    onResponse: (status) => {
      counts[status] = (counts[status] ?? 0) + 1
    },
  }
}

/** The service's next IPC message, or a rejection if it exits first (a worker died). */
function reply(child, file) {
  return Promise.race([
    once(child, 'message').then(([message]) => message),
    once(child, 'exit').then(([code]) => Promise.reject(new Error(`${file} exited (${code})`))),
  ])
}

async function runOne({ name, file }, databaseUrl) {
  const port = await freePort()
  const env = {
    ...process.env,
    DATABASE_URL: databaseUrl,
    PORT: String(port),
    WORKERS: String(WORKERS),
    DB_PERMITS: String(DB_PERMITS),
    QUERY_MS: String(QUERY_MS),
    RATE_PER_KEY: String(RATE),
    BURST_PER_KEY: String(RATE),
    SLUICE_NAME: `bench-${process.pid}-${name}`,
  }
  const child = fork(new URL(`./${file}`, import.meta.url), { env, stdio: ['ignore', 'inherit', 'inherit', 'ipc'] })
  try {
    const ready = await reply(child, file)
    const hot = {}
    const others = {}
    const requests = KEYS.flatMap((key) => [request('hot', hot), request(key, others)])
    child.send({ type: 'reset-stats' })
    const samplers = startSamplers(databaseUrl, ready.pids)
    const result = await autocannon({ url: `http://127.0.0.1:${port}`, connections: CONNECTIONS, overallRate: OFFERED, duration: SECONDS, requests })
    const sampled = await samplers.stop()
    child.send({ type: 'stats' })
    const stats = await reply(child, file)
    if (process.env.BENCH_DEBUG) console.error(name, JSON.stringify({ codes: result.statusCodeStats, hot, others, errors: result.errors, timeouts: result.timeouts }))
    const count = (test) =>
      Object.entries(result.statusCodeStats)
        .filter(([status]) => test(Number(status)))
        .reduce((sum, [, { count }]) => sum + count, 0)
    return {
      name,
      rps: result.requests.average,
      p50: result.latency.p50,
      p99: result.latency.p99,
      ok: count((s) => s >= 200 && s < 300),
      limited: count((s) => s === 429),
      open: count((s) => s === 503),
      other: count((s) => s < 200 || s >= 300) - count((s) => s === 429 || s === 503) + result.errors + result.timeouts,
      // let through the rate limit (whatever came after): what the key's budget bounds
      hotAdmitted: Object.entries(hot).reduce((sum, [status, n]) => (status === '429' ? sum : sum + n), 0),
      othersLimited: others[429] ?? 0,
      hotBound: RATE + RATE * result.duration,
      maxQueries: sampled.maxQueries,
      samples: sampled.samples,
      rssMb: sampled.maxRssKb / 1024,
      lagP99: Math.max(...stats.workers.map((w) => w.lagP99)),
      lagMax: Math.max(...stats.workers.map((w) => w.lagMax)),
      dbWaitP99: stats.workers[0].dbWait ? Math.max(...stats.workers.map((w) => w.dbWait.p99)) : undefined,
    }
  } finally {
    child.kill('SIGTERM')
    if (child.exitCode === null && child.signalCode === null) await once(child, 'exit')
    // a name outlives its processes (as a file in /dev/shm): free this run's
    Semaphore.unlink(`${env.SLUICE_NAME}-db`)
    RateLimiter.unlink(`${env.SLUICE_NAME}-api`)
  }
}

function report(rows) {
  const [s, b] = rows
  const fmt = (n, digits = 0) => n.toLocaleString('en-US', { maximumFractionDigits: digits, minimumFractionDigits: digits })
  const lines = [
    '## Reference service',
    '',
    `\`npm run bench:service\`: examples/service/ (fastify 5, ${WORKERS} node:cluster processes, 1 pool thread each, PostgreSQL ${rows.pgVersion}) under autocannon, ${OFFERED} req/s offered on ${CONNECTIONS} connections, ${SECONDS} s each; half the requests from one hot API key, the rest from 9 keys; ${RATE} req/s (burst ${RATE}) per key; database limit ${DB_PERMITS} queries for the machine, each INSERT taking ${QUERY_MS} ms; the pricing dependency fails 5 % of calls and is down 1 s in every 5 s. Node ${process.version}, ${cpus().length} CPUs (load average ${loadavg()[0].toFixed(1)} at the end: other work shares the machine, so read the figures as a comparison, not a capacity).`,
    '',
    '| service | req/s | p50 ms | p99 ms | 2xx | 429 | 503 | other (502: the dependency failed) | hot key let through (one budget allows) | most concurrent queries (limit) | RSS, all processes | event-loop delay p99 / max |',
    '|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|',
    ...rows.map(
      (r) =>
        `| ${r.name === 'sluice' ? 'sluice' : 'piscina + p-limit + rate-limiter-flexible + opossum'} | ${fmt(r.rps)} | ${r.p50} | ${r.p99} | ${r.ok} | ${r.limited} | ${r.open} | ${r.other} | ${r.hotAdmitted} (${fmt(r.hotBound)}) | ${r.maxQueries} (${DB_PERMITS}) | ${fmt(r.rssMb)} MB | ${fmt(r.lagP99, 1)} / ${fmt(r.lagMax, 1)} ms |`,
    ),
    '',
    `What it shows: with sluice the database never ran more than ${s.maxQueries} INSERTs at once (limit ${DB_PERMITS}, ${s.samples} samples) where the baseline's per-process p-limit let ${b.maxQueries} through (${WORKERS} processes × ${DB_PERMITS}), and sluice let ${s.hotAdmitted} requests of the hot key through its one machine-wide budget (which allows ${fmt(s.hotBound)}) where the baseline's per-process counters let ${b.hotAdmitted} through (${WORKERS} budgets: up to ${fmt(b.hotBound * WORKERS)}); the 9 keys under their limit were refused ${s.othersLimited} times with sluice, ${b.othersLimited} with the baseline. Of the ${OFFERED} req/s offered, sluice answered ${fmt(s.rps)} (p50 ${s.p50} ms, p99 ${s.p99} ms), the baseline ${fmt(b.rps)} (p50 ${b.p50} ms, p99 ${b.p99} ms); an order waited up to ${fmt(s.dbWaitP99, 1)} ms (p99) for one of sluice's ${DB_PERMITS} database permits, the price of holding the limit that the baseline exceeds.`,
    '',
  ]
  return lines.join('\n')
}

const db = await startPostgres()
const stopAll = () => db.stop().finally(() => process.exit(130))
process.once('SIGINT', stopAll)
try {
  const client = new pg.Client({ connectionString: db.url })
  await client.connect()
  const { rows } = await client.query('show server_version')
  await client.end()
  const results = []
  for (const contender of contenders) {
    console.error(`bench:service: ${contender.name} for ${SECONDS} s`)
    results.push(await runOne(contender, db.url))
  }
  results.pgVersion = rows[0].server_version.split(' ')[0]
  const text = report(results)
  await writeFile(new URL('../../bench/SERVICE.md', import.meta.url), text)
  const reportFile = new URL('../../bench/REPORT.md', import.meta.url)
  await writeFile(reportFile, withServiceSection(await readFile(reportFile, 'utf8'), text))
  console.log(text)
} finally {
  await db.stop()
}
