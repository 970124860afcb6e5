// sluice/fastify in fastify 5: through `inject`, and once over a real
// socket. The limiter is the test double of KeyedRateLimit unless a test
// says otherwise.
import Fastify, { type FastifyInstance, type FastifyReply, type FastifyServerOptions } from 'fastify'
import { parseList } from 'structured-headers'
import { RateLimiter } from 'sluice'
import { ipKey, rateLimit, type FastifyRateLimitOptions } from 'sluice/fastify'
import { afterEach, describe, expect, it } from 'vitest'
import { AsyncLimitDouble, LimitDouble, failingLimit, takeInWorker } from './http-limit-double.js'

const apps: FastifyInstance[] = []
afterEach(async () => {
  await Promise.all(apps.splice(0).map((app) => app.close()))
})

/** An app limited by `options`, with `GET /` and whatever `routes` adds. */
async function appWith(
  options: FastifyRateLimitOptions,
  routes?: (app: FastifyInstance) => void,
  server?: FastifyServerOptions,
): Promise<FastifyInstance> {
  const app = Fastify(server)
  apps.push(app)
  await app.register(rateLimit, options)
  app.get('/', async () => ({ hello: 'world' }))
  routes?.(app)
  await app.ready()
  return app
}

async function statuses(app: FastifyInstance, count: number, url = '/', headers?: Record<string, string>): Promise<number[]> {
  const seen: number[] = []
  for (let i = 0; i < count; i++) seen.push((await app.inject({ url, headers })).statusCode)
  return seen
}

describe('sluice/fastify', () => {
  it('lets a key through up to its quota, then answers 429 with Retry-After and a JSON body', async () => {
    const limiter = new LimitDouble(3, 60_000)
    const app = await appWith({ limiter })
    expect(await statuses(app, 5)).toEqual([200, 200, 200, 429, 429])
    const refused = await app.inject({ url: '/' })
    expect(refused.headers['retry-after']).toBe('20')
    expect(refused.headers['content-type']).toMatch(/^application\/json\b/)
    expect(refused.json()).toEqual({ statusCode: 429, error: 'Too Many Requests', message: 'Rate limit exceeded, retry in 20 s' })
    // inject's client is 127.0.0.1: request.ip is the key.
    expect(new Set(limiter.calls.map((c) => `${c.key}:${c.n}`))).toEqual(new Set(['127.0.0.1:1']))
  })

  it('sends RateLimit-Policy and RateLimit as Structured Field Lists, t equal to Retry-After on a refusal', async () => {
    const app = await appWith({ limiter: new LimitDouble(2, 10_000) })
    const allowed = await app.inject({ url: '/' })
    expect(parseList(String(allowed.headers['ratelimit-policy']))).toEqual([['2-in-10sec', new Map([['q', 2], ['w', 10]])]])
    expect(parseList(String(allowed.headers['ratelimit']))).toEqual([['2-in-10sec', new Map([['r', 1], ['t', 5]])]])
    await app.inject({ url: '/' })
    const refused = await app.inject({ url: '/' })
    expect(refused.statusCode).toBe(429)
    expect(parseList(String(refused.headers['ratelimit']))).toEqual([['2-in-10sec', new Map([['r', 0], ['t', 5]])]])
    expect(refused.headers['retry-after']).toBe('5')
  })

  it("with headers: 'legacy' sends X-RateLimit-* as integers, Reset in seconds from now as @fastify/rate-limit does", async () => {
    const app = await appWith({ limiter: new LimitDouble(10, 60_000), headers: 'legacy' })
    const response = await app.inject({ url: '/' })
    expect(response.headers['ratelimit']).toBeUndefined()
    expect(response.headers['x-ratelimit-limit']).toBe('10')
    expect(response.headers['x-ratelimit-remaining']).toBe('9')
    expect(response.headers['x-ratelimit-reset']).toBe('6')
  })

  it('limits requests for routes that do not exist too, so a scan of 404s is throttled', async () => {
    const app = await appWith({ limiter: new LimitDouble(2) })
    expect(await statuses(app, 3, '/nope')).toEqual([404, 404, 429])
    expect(await statuses(app, 1, '/')).toEqual([429])
  })

  it('honours trustProxy: request.ip, and so the key, is the forwarded client', async () => {
    const limiter = new LimitDouble(1)
    const app = await appWith({ limiter }, undefined, { trustProxy: true })
    expect(await statuses(app, 2, '/', { 'x-forwarded-for': '203.0.113.7' })).toEqual([200, 429])
    expect(await statuses(app, 2, '/', { 'x-forwarded-for': '2001:db8:1:2::7' })).toEqual([200, 429])
    expect(await statuses(app, 1, '/', { 'x-forwarded-for': '2001:db8:1:2::8' })).toEqual([429]) // same /64
    expect([...limiter.used.keys()]).toEqual(['203.0.113.7', ipKey('2001:db8:1:2::7')])
  })

  it('counts by key, costs cost, skips what skip says, and lets onLimited reply', async () => {
    const limiter = new LimitDouble(3)
    const app = await appWith({
      limiter,
      key: (request) => String(request.headers['x-api-key']),
      cost: (request) => (request.url === '/report' ? 2 : 1),
      skip: (request) => request.url === '/metrics',
      onLimited(_request, reply, refusal) {
        void reply.code(429).send({ error: 'slow down', key: refusal.key, cost: refusal.cost, retryAfter: refusal.retryAfter })
      },
    }, (app) => {
      app.get('/report', async () => 'report')
      app.get('/metrics', async () => 'metrics')
    })
    const key = { 'x-api-key': 'k1' }
    expect(await statuses(app, 2, '/report', key)).toEqual([200, 429])
    expect(await statuses(app, 3, '/metrics', key)).toEqual([200, 200, 200])
    const refused = await app.inject({ url: '/report', headers: key })
    expect(refused.json()).toEqual({ error: 'slow down', key: 'k1', cost: 2, retryAfter: 20 })
    expect(refused.headers['retry-after']).toBe('20')
    expect(limiter.calls).toEqual([
      { key: 'k1', n: 2 },
      { key: 'k1', n: 2 },
      { key: 'k1', n: 2 },
    ])
  })

  it('accepts an onLimited that returns the reply it sent (a fastify reply is thenable)', async () => {
    const app = await appWith({ limiter: new LimitDouble(1), onLimited: (_request, reply) => reply.code(503).send('busy') })
    expect(await statuses(app, 3)).toEqual([200, 503, 503])
    const refused = await app.inject({ url: '/' })
    expect(refused.body).toBe('busy')
    expect(refused.headers['retry-after']).toBe('60')
  })

  it('sends the default 429 when onLimited returns the reply unsent (a chained reply.header), instead of hanging', async () => {
    const app = await appWith({ limiter: new LimitDouble(1), onLimited: (_request, reply) => reply.header('x-limited', 'yes') })
    await app.inject({ url: '/' })
    const refused = await Promise.race([
      app.inject({ url: '/' }),
      new Promise<never>((_, reject) => setTimeout(() => reject(new Error('the refused request hangs')), 2_000).unref()),
    ])
    expect(refused.statusCode).toBe(429)
    expect(refused.headers['x-limited']).toBe('yes')
    expect(refused.json()).toMatchObject({ statusCode: 429 })
  })

  it.each([
    ['returns the reply it sent', (_request: unknown, reply: FastifyReply) => reply.code(503).send('busy')],
    ['sends and returns nothing', (_request: unknown, reply: FastifyReply) => void reply.code(503).send('busy')],
    ['sends from an async function', async (_request: unknown, reply: FastifyReply) => void reply.code(503).send('busy')],
  ])('sends no default 429 over a reply of onLimited still in async onSend hooks: onLimited %s', async (_, onLimited) => {
    const app = await appWith({ limiter: new LimitDouble(1), onLimited }, (app) => {
      app.addHook('onSend', async (_request, _reply, payload) => {
        await new Promise((resolve) => setTimeout(resolve, 5))
        return payload
      })
    })
    expect(await statuses(app, 3)).toEqual([200, 503, 503])
    const refused = await app.inject({ url: '/' })
    expect(refused.body).toBe('busy')
  })

  it("a route's config.sluiceRateLimit opts it out with false, or overrides options for it", async () => {
    const shared = new LimitDouble(4)
    const own = new LimitDouble(1)
    const app = await appWith({ limiter: shared }, (app) => {
      app.get('/health', { config: { sluiceRateLimit: false } }, async () => 'ok')
      app.get('/upload', { config: { sluiceRateLimit: { cost: () => 2 } } }, async () => 'uploaded')
      app.get('/login', { config: { sluiceRateLimit: { limiter: own, headers: 'legacy' } } }, async () => 'in')
    })
    const health = await app.inject({ url: '/health' })
    expect(await statuses(app, 5, '/health')).toEqual([200, 200, 200, 200, 200])
    expect(health.headers['ratelimit']).toBeUndefined()
    // /upload counts 2 in the plugin's limiter, shared with /.
    expect(await statuses(app, 1, '/upload')).toEqual([200])
    expect(await statuses(app, 3, '/')).toEqual([200, 200, 429])
    // /login counts in a limiter of its own, with its own headers.
    const login = await app.inject({ url: '/login' })
    expect(login.statusCode).toBe(200)
    expect(login.headers['x-ratelimit-limit']).toBe('1')
    expect(login.headers['ratelimit']).toBeUndefined()
    expect((await app.inject({ url: '/login' })).statusCode).toBe(429)
    expect(own.calls).toHaveLength(2)
  })

  it('gives routes that share an override object one limiter, and routes with equal but separate objects one each', async () => {
    const strict = { limit: 1, windowMs: 60_000 }
    const app = await appWith({ limit: 100, windowMs: 60_000 }, (app) => {
      app.post('/login', { config: { sluiceRateLimit: strict } }, async () => 'in')
      app.post('/reset', { config: { sluiceRateLimit: strict } }, async () => 'sent')
      app.post('/signup', { config: { sluiceRateLimit: { limit: 1, windowMs: 60_000 } } }, async () => 'welcome')
    })
    expect((await app.inject({ method: 'POST', url: '/login' })).statusCode).toBe(200)
    expect((await app.inject({ method: 'POST', url: '/reset' })).statusCode).toBe(429)
    expect((await app.inject({ method: 'POST', url: '/signup' })).statusCode).toBe(200)
  })

  it('refuses a route override that is not valid when the route is registered, not when it is requested', async () => {
    const app = Fastify()
    apps.push(app)
    await app.register(rateLimit, { limiter: new LimitDouble(1) })
    expect(() => app.get('/', { config: { sluiceRateLimit: { headers: 'yes' as never } } }, async () => 'ok')).toThrow(
      "config.sluiceRateLimit.headers must be 'draft', 'legacy', 'both' or false, got 'yes'",
    )
  })

  it('fails registration on options that are not valid', async () => {
    const app = Fastify()
    apps.push(app)
    await expect(app.register(rateLimit, { limiter: new LimitDouble(1), skip: true as never })).rejects.toThrow(
      'options.skip must be a function, got true',
    )
  })

  it('registered in two child contexts, limits each one\'s routes in its own limiter', async () => {
    const app = Fastify()
    apps.push(app)
    const [a, b] = [new LimitDouble(1), new LimitDouble(2)]
    await app.register(async (scope) => {
      await scope.register(rateLimit, { limiter: a })
      scope.get('/a', async () => 'a')
    })
    await app.register(async (scope) => {
      await scope.register(rateLimit, { limiter: b, prefix: '/ignored' } as FastifyRateLimitOptions)
      scope.get('/b', async () => 'b')
    })
    app.get('/free', async () => 'free')
    await app.ready()
    expect(await statuses(app, 2, '/a')).toEqual([200, 429])
    expect(await statuses(app, 3, '/b')).toEqual([200, 200, 429])
    expect(await statuses(app, 3, '/free')).toEqual([200, 200, 200])
    expect([a.calls.length, b.calls.length]).toEqual([2, 3])
  })

  it('limits the same with a limiter and a key that answer with promises', async () => {
    const limiter = new AsyncLimitDouble(2, 20_000)
    const app = await appWith({ limiter, key: async (request) => `ip:${request.ip}` })
    expect(await statuses(app, 4)).toEqual([200, 200, 429, 429])
    const refused = await app.inject({ url: '/' })
    expect(refused.headers['retry-after']).toBe('10')
    expect(limiter.inner.calls[0]!.key).toBe('ip:127.0.0.1')
  })

  it.each([false, true])(
    'sends a limiter that fails (async: %s) down the error path as a 500, and the app keeps serving',
    async (async) => {
      const app = await appWith({ limiter: failingLimit(async) })
      for (let i = 0; i < 2; i++) {
        const response = await app.inject({ url: '/' })
        expect(response.statusCode).toBe(500)
        expect(response.json()).toMatchObject({ statusCode: 500, message: 'the limiter store is unreachable' })
      }
    },
  )

  it('serves over a real socket: statuses and headers as a client sees them', async () => {
    const app = await appWith({ limiter: new LimitDouble(2, 1000) })
    const address = await app.listen({ host: '127.0.0.1', port: 0 })
    const seen: number[] = []
    for (let i = 0; i < 3; i++) {
      const response = await fetch(address)
      await response.arrayBuffer()
      seen.push(response.status)
      if (response.status === 429) {
        expect(response.headers.get('retry-after')).toBe('1')
        expect(parseList(response.headers.get('ratelimit')!)).toEqual([['2-in-1sec', new Map([['r', 0], ['t', 1]])]])
      }
    }
    expect(seen).toEqual([200, 200, 429])
  })
})

describe('sluice/fastify with a RateLimiter', () => {
  it('makes a RateLimiter from its parameters, and one of its own for a route override that gives parameters', async () => {
    const app = await appWith({ capacity: 3, refillPerSecond: 0.01 }, (app) => {
      app.post('/login', { config: { sluiceRateLimit: { limit: 1, windowMs: 60_000 } } }, async () => 'in')
    })
    expect(await statuses(app, 4)).toEqual([200, 200, 200, 429])
    const login = await app.inject({ method: 'POST', url: '/login' })
    expect(login.statusCode).toBe(200)
    expect(parseList(String(login.headers['ratelimit-policy']))).toEqual([['1-in-1min', new Map([['q', 1], ['w', 60]])]])
    expect((await app.inject({ method: 'POST', url: '/login' })).statusCode).toBe(429)
    const refused = await app.inject({ url: '/' })
    expect(parseList(String(refused.headers['ratelimit-policy']))).toEqual([['3-in-5min', new Map([['q', 3], ['w', 300]])]])
  })

  it("counts in a limiter shared with a worker thread: the worker's takes and the plugin's are one budget", async () => {
    const limiter = new RateLimiter({ limit: 5, windowMs: 3_600_000 })
    expect(await takeInWorker(limiter.handle, '127.0.0.1', 4)).toBe(4)
    const app = await appWith({ limiter })
    expect(await statuses(app, 2)).toEqual([200, 429])
    expect(await takeInWorker(limiter.handle, '127.0.0.1', 1)).toBe(0)
  })

  it('sends a key the RateLimiter refuses down the error path: a 500 naming the key', async () => {
    const app = await appWith({ limit: 5, windowMs: 1000, key: () => ({ not: 'a key' }) as never })
    const response = await app.inject({ url: '/' })
    expect(response.statusCode).toBe(500)
    expect(response.json().message).toBe('key must be a string or a safe integer, got an object')
  })
})
