// What the sluice service (server.mjs) and the baseline (baseline.mjs) share,
// so that they differ only in the four pieces they compare: the rate limit,
// the database limit, the worker pool and the circuit breaker. Here: the
// configuration, the flaky dependency, the POST /orders route, the
// node:cluster bootstrap and the statistics the bench asks for over IPC.
import cluster from 'node:cluster'
import { monitorEventLoopDelay } from 'node:perf_hooks'
import Fastify from 'fastify'
import pg from 'pg'

function int(env, name, fallback, min = 0) {
  const raw = env[name]
  if (raw === undefined || raw === '') return fallback
  const value = Number(raw)
  if (!Number.isInteger(value) || value < min) throw new RangeError(`${name} must be an integer >= ${min}, got ${raw}`)
  return value
}

/** The service's settings, from the environment (the bench and the test set them). */
export function readConfig(env = process.env) {
  return {
    port: int(env, 'PORT', 3000),
    databaseUrl: env.DATABASE_URL ?? 'postgres://postgres@127.0.0.1:5432/postgres',
    workers: int(env, 'WORKERS', 2, 1), // cluster processes
    threads: int(env, 'THREADS', 1, 1), // worker-pool threads per process
    dbPermits: int(env, 'DB_PERMITS', 4, 1), // concurrent queries for the whole machine
    // each INSERT also sleeps this long in Postgres: a stand-in for the index,
    // trigger and disk work of a real write, so that queries overlap long enough
    // for pg_stat_activity to see how many run at once
    queryMs: int(env, 'QUERY_MS', 5),
    ratePerKey: int(env, 'RATE_PER_KEY', 50, 1), // requests per second per API key
    burstPerKey: int(env, 'BURST_PER_KEY', 50, 1),
    cpuRounds: int(env, 'CPU_ROUNDS', 1000, 1), // sha256 rounds per order, a few ms
    outageMs: int(env, 'OUTAGE_MS', 1000), // the dependency is down this long ...
    outageEveryMs: int(env, 'OUTAGE_EVERY_MS', 5000, 1), // ... in every period this long
    failPercent: int(env, 'FAIL_PERCENT', 5), // and otherwise fails this often
    name: env.SLUICE_NAME ?? 'service', // prefix of the shared primitives' names
  }
}

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms))

/**
 * The deliberately flaky dependency (a pricing service, say): 0 to 2 ms, fails
 * `failPercent` % of calls, and is down for `outageMs` of every `outageEveryMs`.
 * The outage follows the wall clock, so every process sees the same one.
 */
export function flakyDependency({ outageMs, outageEveryMs, failPercent }) {
  return async (order) => {
    await sleep(Math.random() * 2)
    if (Date.now() % outageEveryMs < outageMs) throw new Error('pricing: service unavailable')
    if (Math.random() * 100 < failPercent) throw new Error('pricing: internal error')
    return { item: order.item, price: 100 + (order.item.length % 7) }
  }
}

const INSERT = `insert into orders (api_key, item, qty, digest)
  select $1, $2, $3, $4 from pg_sleep($5::float8 / 1000) returning id`

const orderSchema = {
  body: {
    type: 'object',
    required: ['item', 'qty'],
    properties: { item: { type: 'string', minLength: 1, maxLength: 100 }, qty: { type: 'integer', minimum: 1, maximum: 1000 } },
  },
}

/**
 * Builds the fastify app of one process. `parts`: `rateLimit(app)` (registers
 * the limit), `callDependency(fn)` (through the breaker), `isOpenCircuit(error)`,
 * `hash(input)` (in the worker pool), `query(fn)` (under the database limit),
 * `close()`, and optionally `stats()` (figures for the bench).
 */
export async function buildApp(config, parts) {
  const app = Fastify({ logger: false })
  // one connection per permit is all a process can use at once under the limit
  const db = new pg.Pool({ connectionString: config.databaseUrl, max: config.dbPermits })
  db.on('error', () => {}) // an idle client's error: the next query reports it
  const pricing = flakyDependency(config)
  await parts.rateLimit(app)
  app.post('/orders', { schema: orderSchema }, async (request, reply) => {
    const key = String(request.headers['x-api-key'])
    const order = request.body
    let quote
    try {
      quote = await parts.callDependency(() => pricing(order))
    } catch (error) {
      if (parts.isOpenCircuit(error)) return reply.code(503).header('retry-after', '1').send({ error: 'pricing unavailable' })
      return reply.code(502).send({ error: 'pricing failed' })
    }
    const digest = await parts.hash({ key, order, quote, rounds: config.cpuRounds })
    const { rows } = await parts.query(() => db.query(INSERT, [key, order.item, order.qty, digest, config.queryMs]))
    return reply.code(201).send({ id: Number(rows[0].id), digest })
  })
  app.get('/health', async () => 'ok')
  app.decorate('serviceStats', parts.stats ?? (() => ({})))
  app.addHook('onClose', async () => {
    await parts.close()
    await db.end()
  })
  return app
}

/**
 * Runs `build(config)` (resolving to a fastify app) in `config.workers`
 * cluster processes on one port. The primary tells its parent (the bench, the
 * test) `{ type: 'ready', port, pids }` over IPC once all listen, answers
 * `{ type: 'stats' }` with every worker's event-loop delay, and stops the
 * workers on SIGTERM, SIGINT or when the parent goes.
 */
export async function runCluster(build, config = readConfig()) {
  if (cluster.isPrimary) return primary(config)
  const resolution = 10
  const lag = monitorEventLoopDelay({ resolution })
  lag.enable()
  const app = await build(config)
  await app.listen({ port: config.port, host: '127.0.0.1' })
  process.on('message', (message) => {
    if (message?.type === 'reset-stats') lag.reset()
    if (message?.type !== 'stats') return
    // the histogram holds whole timer periods: the delay is what exceeds one
    const ms = (ns) => Math.max(0, Math.round(ns / 1e4) / 100 - resolution)
    const own = app.serviceStats()
    process.send({ type: 'stats', pid: process.pid, lagP50: ms(lag.percentile(50)), lagP99: ms(lag.percentile(99)), lagMax: ms(lag.max), ...own })
  })
  let closing = false
  const stop = () => {
    if (closing) return
    closing = true
    app.close().finally(() => process.exit(0))
  }
  process.on('SIGTERM', stop)
  process.on('disconnect', stop)
}

function primary(config) {
  const workers = Array.from({ length: config.workers }, () => cluster.fork())
  let listening = 0
  let stopping = false
  const stop = (code) => {
    if (stopping) return
    stopping = true
    const timer = setTimeout(() => process.exit(code), 5000)
    timer.unref()
    let left = workers.filter((worker) => !worker.isDead()).length
    if (left === 0) process.exit(code)
    for (const worker of workers) {
      worker.once('exit', () => --left === 0 && process.exit(code))
      worker.process.kill('SIGTERM')
    }
  }
  cluster.on('listening', () => {
    if (++listening !== workers.length) return
    const ready = { type: 'ready', port: config.port, pids: [process.pid, ...workers.map((worker) => worker.process.pid)] }
    if (process.send) process.send(ready)
    else console.log(`listening on http://127.0.0.1:${config.port} (${workers.length} processes)`)
  })
  cluster.on('exit', (worker, code, signal) => {
    if (stopping) return
    console.error(`service: worker ${worker.process.pid} exited (${signal ?? code}); stopping`)
    stop(1)
  })
  process.on('message', async (message) => {
    if (message?.type === 'reset-stats') for (const worker of workers) worker.send(message)
    if (message?.type !== 'stats') return
    const replies = workers.map(
      (worker) =>
        new Promise((resolve) => {
          const onMessage = (reply) => {
            if (reply?.type !== 'stats') return
            worker.off('message', onMessage)
            resolve(reply)
          }
          worker.on('message', onMessage)
          worker.send({ type: 'stats' })
        }),
    )
    process.send({ type: 'stats', workers: await Promise.all(replies) })
  })
  process.on('SIGTERM', () => stop(0))
  process.on('SIGINT', () => stop(0))
  process.on('disconnect', () => stop(0))
}
