// The same service as server.mjs on the usual libraries, each of which keeps
// its state in its own process: piscina for the hashing, p-limit for the
// database, rate-limiter-flexible (memory) per API key, opossum for the flaky
// dependency. With WORKERS processes, the database sees up to WORKERS x
// DB_PERMITS queries at once, and a key gets WORKERS x its rate, because each
// process counts alone. (Sharing them needs a store: Redis for the limiter,
// and nothing ready-made for p-limit or opossum.)
//
//   DATABASE_URL=postgres://... PORT=3000 node examples/service/baseline.mjs
import CircuitBreaker from 'opossum'
import pLimit from 'p-limit'
import Piscina from 'piscina'
import { RateLimiterMemory } from 'rate-limiter-flexible'
import { buildApp, runCluster } from './common.mjs'

await runCluster(async (config) => {
  const limit = pLimit(config.dbPermits)
  const perKey = new RateLimiterMemory({ points: config.burstPerKey, duration: config.burstPerKey / config.ratePerKey })
  const breaker = new CircuitBreaker((fn) => fn(), {
    errorThresholdPercentage: 50,
    rollingCountTimeout: 2000,
    rollingCountBuckets: 10,
    volumeThreshold: 20,
    resetTimeout: 1000,
    timeout: false,
  })
  const pool = new Piscina({ filename: new URL('./hash-task.mjs', import.meta.url).href, maxThreads: config.threads })
  return buildApp(config, {
    rateLimit: async (app) => {
      app.addHook('onRequest', async (request, reply) => {
        try {
          await perKey.consume(String(request.headers['x-api-key'] ?? request.ip))
        } catch (refusal) {
          if (refusal instanceof Error) throw refusal // a failure, not a refusal
          return reply
            .code(429)
            .header('retry-after', String(Math.max(1, Math.ceil(refusal.msBeforeNext / 1000))))
            .send({ statusCode: 429, error: 'Too Many Requests' })
        }
      })
    },
    callDependency: (fn) => breaker.fire(fn),
    isOpenCircuit: (error) => error?.code === 'EOPENBREAKER',
    hash: (input) => pool.run(input),
    query: (fn) => limit(fn),
    close: () => pool.destroy(),
  })
})
