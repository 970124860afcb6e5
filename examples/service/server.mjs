// The reference service, on sluice: fastify 5 in `WORKERS` node:cluster
// processes (default 2), POST /orders with an `x-api-key` header.
//
//   1. rate-limited per API key by sluice/fastify over RateLimiter.open: one
//      budget per key for the whole machine, whichever process a request hits
//   2. the flaky pricing dependency through a CircuitBreaker (its state is
//      shared by the threads of a process; each process has its own): 503 while open
//   3. the order's hashing in a WorkerPool (piscina underneath)
//   4. one INSERT under Semaphore.open('<name>-db', { permits: DB_PERMITS }):
//      at most DB_PERMITS queries at once from all processes together
//
//   node examples/service/postgres.mjs   (prints a DATABASE_URL; or bring your own with the table)
//   DATABASE_URL=postgres://... PORT=3000 node examples/service/server.mjs
//   curl -XPOST -H 'x-api-key: k1' -H 'content-type: application/json' -d '{"item":"tea","qty":2}' localhost:3000/orders
import { BrokenCircuitError, CircuitBreaker, RateLimiter, Semaphore, WorkerPool } from 'sluice'
import { ipKey, rateLimit } from 'sluice/fastify'
import { buildApp, runCluster } from './common.mjs'

await runCluster(async (config) => {
  // created by the first process to open them, shared by all that do
  const db = Semaphore.open(`${config.name}-db`, { permits: config.dbPermits })
  const perKey = RateLimiter.open(`${config.name}-api`, { capacity: config.burstPerKey, refillPerSecond: config.ratePerKey })
  const breaker = new CircuitBreaker({ failureRate: 0.5, window: 2000, buckets: 10, minimumCalls: 20, openDuration: 1000 })
  const pool = new WorkerPool({ filename: new URL('./hash-task.mjs', import.meta.url), maxThreads: config.threads })
  return buildApp(config, {
    rateLimit: (app) =>
      app.register(rateLimit, { limiter: perKey, key: (request) => request.headers['x-api-key'] ?? ipKey(request.ip) }),
    callDependency: (fn) => breaker.run(fn),
    isOpenCircuit: (error) => error instanceof BrokenCircuitError,
    // submit waits for room in the pool's bounded queue (run would refuse)
    hash: async (input) => (await pool.submit(input)).result,
    query: (fn) => db.run(fn),
    close: () => pool.close(),
    // this process's waits for a database permit (metrics() counts per process)
    stats: () => ({ dbWait: db.metrics().waitTime }),
  })
})
