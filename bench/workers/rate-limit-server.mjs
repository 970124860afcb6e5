// The fastify 5 server of the HTTP rate-limit scenario, in its own process so
// that it does not share an event loop with autocannon. Two routes in two
// encapsulated scopes, each limiting by the `x-api-key` header with its own
// limit: GET /generous (a limit no client reaches) and GET /tight (a few
// requests per hour). The limiter is one of: none, @fastify/rate-limit
// (memory store), sluice/fastify. Listens on 127.0.0.1, port 0; tells the
// parent its port over IPC and closes on 'stop' (or when the parent goes).
//
//   fork('bench/workers/rate-limit-server.mjs', [contender, JSON.stringify(limits)])
//   limits: { generous, tight, windowMs }
import Fastify from 'fastify'

const [contender, limitsArg] = process.argv.slice(2)
const { generous, tight, windowMs } = JSON.parse(limitsArg)
// A server its parent forgot (or that hangs on close) does not outlive the run.
setTimeout(() => process.exit(3), 10 * 60_000).unref()

const key = (req) => req.headers['x-api-key']

/** Registers the contender's limiter of `max` per window in `scope`. */
const limiters = {
  'no limiter': async () => {},
  '@fastify/rate-limit': async (scope, max) => {
    const { default: fastifyRateLimit } = await import('@fastify/rate-limit')
    await scope.register(fastifyRateLimit, { max, timeWindow: windowMs, keyGenerator: key })
  },
  'sluice/fastify': async (scope, max) => {
    const { RateLimiter } = await import('sluice')
    const { rateLimit: sluiceRateLimit } = await import('sluice/fastify')
    // The same headers as @fastify/rate-limit's default (X-RateLimit-*, and
    // Retry-After on a refusal), so that both do the same work per response.
    await scope.register(sluiceRateLimit, {
      limiter: new RateLimiter({ limit: max, windowMs }),
      key,
      headers: 'legacy',
    })
  },
}

const register = limiters[contender]
if (!register) throw new Error(`unknown contender ${contender}; one of ${Object.keys(limiters).join(', ')}`)
const app = Fastify({ logger: false })
for (const [path, max] of [
  ['/generous', generous],
  ['/tight', tight],
]) {
  app.register(async (scope) => {
    await register(scope, max)
    scope.get(path, async () => 'ok')
  })
}
await app.listen({ host: '127.0.0.1', port: 0 })
process.send({ port: app.server.address().port })

async function stop() {
  await app.close()
  process.exit(0)
}
process.on('message', (message) => {
  if (message === 'stop') void stop()
})
process.on('disconnect', () => void stop())
