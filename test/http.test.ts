// sluice/http against a real node:http server and a real Express 5 app,
// over fetch. The limiter is a test double of the KeyedRateLimit interface
// (test/http-limit-double.ts) unless a test says otherwise: the middleware
// must work with any limiter, local, shared or remote.
import { once } from 'node:events'
import { createServer, type IncomingMessage, type RequestListener, type ServerResponse } from 'node:http'
import type { AddressInfo } from 'node:net'
import { createRequire } from 'node:module'
import { parseList } from 'structured-headers'
import { RateLimiter } from 'sluice'
import { ipKey, rateLimit, type HttpRateLimit, type RateLimitRefusal } from 'sluice/http'
import { afterEach, describe, expect, expectTypeOf, it } from 'vitest'
import { AsyncLimitDouble, LimitDouble, failingLimit, takeInWorker } from './http-limit-double.js'

interface ExpressApp extends RequestListener {
  use(...handlers: unknown[]): ExpressApp
  get(path: string, ...handlers: unknown[]): ExpressApp
  set(setting: string, value: unknown): ExpressApp
}
// Express ships no types and @types/express is not installed: the little
// used here is typed by hand.
const express = createRequire(import.meta.url)('express') as () => ExpressApp

const servers: (() => Promise<void>)[] = []
afterEach(async () => {
  await Promise.all(servers.splice(0).map((close) => close()))
})

/** Serves `handler` on 127.0.0.1, an ephemeral port; closed after the test. */
async function serve(handler: RequestListener): Promise<string> {
  const server = createServer(handler)
  server.listen(0, '127.0.0.1')
  await once(server, 'listening')
  servers.push(
    () =>
      new Promise((resolve) => {
        server.close(() => resolve())
        server.closeAllConnections()
      }),
  )
  return `http://127.0.0.1:${(server.address() as AddressInfo).port}`
}

/** A plain node:http server limited by `limit` (the form without `next`). */
function plainServer(limit: HttpRateLimit): Promise<string> {
  return serve(async (req, res) => {
    try {
      if (!(await limit(req, res))) return
    } catch (error) {
      res.statusCode = 500
      res.end(`limiter failed: ${(error as Error).message}`)
      return
    }
    res.end('ok')
  })
}

/** Statuses of `count` requests made one after another. */
async function statuses(url: string, count: number, init?: RequestInit): Promise<number[]> {
  const seen: number[] = []
  for (let i = 0; i < count; i++) {
    const response = await fetch(url, init)
    await response.arrayBuffer()
    seen.push(response.status)
  }
  return seen
}

/** A request and response stand-in with what the middleware touches, for tests that need no socket (null: the socket is gone). */
function exchange(address: string | null = '127.0.0.1') {
  const remoteAddress = address ?? undefined
  const headers = new Map<string, string[]>()
  const res = {
    statusCode: 200,
    headersSent: false,
    writableEnded: false,
    body: undefined as string | undefined,
    headers,
    setHeader(name: string, value: string) {
      headers.set(name.toLowerCase(), [value])
    },
    appendHeader(name: string, value: string) {
      headers.set(name.toLowerCase(), [...(headers.get(name.toLowerCase()) ?? []), value])
    },
    end(body?: string) {
      this.body = body
      this.headersSent = this.writableEnded = true
    },
  }
  const req = { socket: { remoteAddress }, headers: {} as Record<string, string> }
  return { req: req as unknown as IncomingMessage, res: res as typeof res & ServerResponse }
}

describe('sluice/http on a node:http server', () => {
  it('lets a key through up to its quota, then ends each request over it with a 429, Retry-After and a JSON body', async () => {
    const limiter = new LimitDouble(3, 60_000)
    const url = await plainServer(rateLimit({ limiter }))
    expect(await statuses(url, 5)).toEqual([200, 200, 200, 429, 429])
    const refused = await fetch(url)
    expect(refused.status).toBe(429)
    // One token more than the quota comes back after 20 s (60 s / 3 tokens).
    expect(refused.headers.get('retry-after')).toBe('20')
    expect(refused.headers.get('content-type')).toMatch(/^application\/json\b/)
    expect(await refused.json()).toEqual({ statusCode: 429, error: 'Too Many Requests', message: 'Rate limit exceeded, retry in 20 s' })
    expect(limiter.calls.every((call) => call.key === '127.0.0.1' && call.n === 1)).toBe(true)
  })

  it('sends RateLimit-Policy and RateLimit as Structured Field Lists, the policy named by quota and window', async () => {
    const url = await plainServer(rateLimit({ limiter: new LimitDouble(100, 60_000) }))
    const response = await fetch(url)
    const policy = parseList(response.headers.get('ratelimit-policy')!)
    expect(policy).toEqual([['100-in-1min', new Map([['q', 100], ['w', 60]])]])
    const state = parseList(response.headers.get('ratelimit')!)
    // 99 left; full again in 0.6 s, rounded up to whole seconds.
    expect(state).toEqual([['100-in-1min', new Map([['r', 99], ['t', 1]])]])
    expect(response.headers.get('retry-after')).toBeNull()
    expect(response.headers.get('x-ratelimit-limit')).toBeNull()
  })

  it('gives t as the time to a full quota when allowed and as Retry-After when refused', async () => {
    const url = await plainServer(rateLimit({ limiter: new LimitDouble(2, 10_000) }))
    const [first, second, third] = [await fetch(url), await fetch(url), await fetch(url)]
    const t = (response: Response): unknown => parseList(response.headers.get('ratelimit')!)[0]![1].get('t')
    const r = (response: Response): unknown => parseList(response.headers.get('ratelimit')!)[0]![1].get('r')
    expect([r(first), t(first)]).toEqual([1, 5])
    expect([r(second), t(second)]).toEqual([0, 10])
    expect(third.status).toBe(429)
    expect([r(third), t(third)]).toEqual([0, 5])
    expect(third.headers.get('retry-after')).toBe('5')
    expect(parseList(third.headers.get('ratelimit-policy')!)).toEqual([['2-in-10sec', new Map([['q', 2], ['w', 10]])]])
  })

  it("with headers: 'legacy' sends X-RateLimit-Limit, -Remaining and -Reset as integers, Reset in seconds since the epoch", async () => {
    const url = await plainServer(rateLimit({ limiter: new LimitDouble(10, 60_000), headers: 'legacy' }))
    const before = Date.now()
    const response = await fetch(url)
    expect(response.headers.get('ratelimit')).toBeNull()
    expect(response.headers.get('ratelimit-policy')).toBeNull()
    expect(response.headers.get('x-ratelimit-limit')).toBe('10')
    expect(response.headers.get('x-ratelimit-remaining')).toBe('9')
    const reset = response.headers.get('x-ratelimit-reset')!
    expect(reset).toMatch(/^\d+$/)
    // Full again 6 s after the request (one token of 10 per minute).
    expect(Number(reset)).toBeGreaterThanOrEqual(Math.ceil((before + 6000) / 1000))
    expect(Number(reset)).toBeLessThanOrEqual(Math.ceil((Date.now() + 6000) / 1000))
  })

  it("with headers: 'both' sends both sets, and with false neither, though a refusal still carries Retry-After", async () => {
    const both = await plainServer(rateLimit({ limiter: new LimitDouble(5), headers: 'both' }))
    const response = await fetch(both)
    expect(response.headers.get('ratelimit')).not.toBeNull()
    expect(response.headers.get('x-ratelimit-remaining')).toBe('4')

    const none = await plainServer(rateLimit({ limiter: new LimitDouble(1), headers: false }))
    const allowed = await fetch(none)
    const refused = await fetch(none)
    for (const r of [allowed, refused]) {
      expect(r.headers.get('ratelimit')).toBeNull()
      expect(r.headers.get('ratelimit-policy')).toBeNull()
      expect(r.headers.get('x-ratelimit-limit')).toBeNull()
    }
    expect(allowed.headers.get('retry-after')).toBeNull()
    expect(refused.status).toBe(429)
    expect(refused.headers.get('retry-after')).toBe('60')
  })

  it('names the policy policyName, quoted and escaped as a Structured Field String', async () => {
    const url = await plainServer(rateLimit({ limiter: new LimitDouble(5), policyName: 'per "user" \\ api' }))
    const response = await fetch(url)
    expect(response.headers.get('ratelimit-policy')).toBe('"per \\"user\\" \\\\ api";q=5;w=60')
    expect(parseList(response.headers.get('ratelimit')!)[0]![0]).toBe('per "user" \\ api')
  })

  it('counts each request against key(req), takes cost(req) tokens, and lets through uncounted what skip(req) says', async () => {
    const limiter = new LimitDouble(4)
    const url = await plainServer(
      rateLimit({
        limiter,
        key: (req) => String(req.headers['x-user']),
        cost: (req) => (req.url === '/expensive' ? 3 : 1),
        skip: (req) => req.url === '/health',
      }),
    )
    const as = (user: string): RequestInit => ({ headers: { 'x-user': user } })
    expect(await statuses(`${url}/expensive`, 2, as('ann'))).toEqual([200, 429])
    expect(await statuses(`${url}/`, 2, as('ann'))).toEqual([200, 429]) // 3 + 1 = 4, then full
    expect(await statuses(`${url}/`, 4, as('bob'))).toEqual([200, 200, 200, 200])
    const health = await fetch(`${url}/health`, as('ann'))
    expect(health.status).toBe(200)
    expect(health.headers.get('ratelimit')).toBeNull()
    expect(limiter.calls.map((c) => `${c.key}:${c.n}`)).toEqual(['ann:3', 'ann:3', 'ann:1', 'ann:1', 'bob:1', 'bob:1', 'bob:1', 'bob:1'])
  })

  it('lets onLimited send a reply of its own, and sends the default 429 when onLimited only looks', async () => {
    const seen: RateLimitRefusal[] = []
    const custom = await plainServer(
      rateLimit({
        limiter: new LimitDouble(1),
        onLimited(_req, res, refusal) {
          seen.push(refusal)
          res.statusCode = 503
          res.end(`busy, come back in ${refusal.retryAfter} s`)
        },
      }),
    )
    await fetch(custom)
    const refused = await fetch(custom)
    expect(refused.status).toBe(503)
    expect(refused.headers.get('retry-after')).toBe('60') // set before onLimited runs
    expect(await refused.text()).toBe('busy, come back in 60 s')
    expect(seen).toEqual([{ key: '127.0.0.1', cost: 1, retryAfter: 60, result: expect.objectContaining({ allowed: false, reason: 'limited' }) }])

    let logged = 0
    const looking = await plainServer(
      rateLimit({
        limiter: new LimitDouble(1),
        async onLimited() {
          await new Promise((resolve) => setTimeout(resolve, 5))
          logged++
        },
      }),
    )
    expect(await statuses(looking, 3)).toEqual([200, 429, 429])
    expect(logged).toBe(2)
  })

  it('limits the same with a limiter, a key and a cost that answer with promises', async () => {
    const limiter = new AsyncLimitDouble(3, 30_000)
    const url = await plainServer(
      rateLimit({
        limiter,
        key: async (req) => `user:${String(req.headers['x-user'])}`,
        cost: async () => 1,
      }),
    )
    const init = { headers: { 'x-user': 'ann' } }
    expect(await statuses(url, 5, init)).toEqual([200, 200, 200, 429, 429])
    const refused = await fetch(url, init)
    expect(refused.headers.get('retry-after')).toBe('10')
    expect(parseList(refused.headers.get('ratelimit')!)).toEqual([['3-in-30sec', new Map([['r', 0], ['t', 10]])]])
    expect(limiter.inner.calls[0]).toEqual({ key: 'user:ann', n: 1 })
  })

  it.each([false, true])(
    'without next, a limiter that fails (async: %s) makes the promise reject, and the server keeps serving',
    async (async) => {
      const url = await plainServer(rateLimit({ limiter: failingLimit(async) }))
      for (let i = 0; i < 2; i++) {
        const response = await fetch(url)
        expect(response.status).toBe(500)
        expect(await response.text()).toBe('limiter failed: the limiter store is unreachable')
      }
    },
  )

  it('without next, resolves true to go on and false once it has answered the request', async () => {
    const limit = rateLimit({ limiter: new LimitDouble(1) })
    const first = exchange()
    await expect(limit(first.req, first.res)).resolves.toBe(true)
    expect(first.res.body).toBeUndefined()
    const second = exchange()
    await expect(limit(second.req, second.res)).resolves.toBe(false)
    expect(second.res.statusCode).toBe(429)
    expect(second.res.writableEnded).toBe(true)
  })

  it('with a synchronous limiter, calls next within the call: no microtask between the decision and the handler', () => {
    const limit = rateLimit({ limiter: new LimitDouble(1) })
    const order: string[] = []
    const allowed = exchange()
    limit(allowed.req, allowed.res, (error) => order.push(`next(${String(error)})`))
    order.push('returned')
    const refused = exchange()
    limit(refused.req, refused.res, () => order.push('next on a refusal'))
    expect(order).toEqual(['next(undefined)', 'returned'])
    expect(refused.res.statusCode).toBe(429) // ended within the call too
    expect(refused.res.headers.get('retry-after')).toEqual(['60'])
  })

  it('hands an error of key, cost or skip to next, once', () => {
    for (const option of ['key', 'cost', 'skip'] as const) {
      const limit = rateLimit({
        limiter: new LimitDouble(1),
        [option]: () => {
          throw new Error(`${option} failed`)
        },
      })
      const { req, res } = exchange()
      const errors: unknown[] = []
      limit(req, res, (error) => errors.push(error))
      expect(errors).toEqual([new Error(`${option} failed`)])
      expect(res.writableEnded).toBe(false)
    }
  })

  it('keys a client by its address by default, an IPv4-mapped one as IPv4 and an IPv6 one by its /64', () => {
    const limiter = new LimitDouble(100)
    const limit = rateLimit({ limiter })
    const addresses = ['10.0.0.1', '::ffff:10.0.0.1', '2001:db8:1:2:aaaa::1', '2001:DB8:1:2::ffff', '2001:db8:1:3::1', '::1', 'fe80::1%eth0', null]
    for (const address of addresses) {
      const { req, res } = exchange(address)
      limit(req, res, () => {})
    }
    expect(limiter.calls.map((c) => c.key)).toEqual([
      '10.0.0.1',
      '10.0.0.1',
      '2001:db8:1:2::/64',
      '2001:db8:1:2::/64',
      '2001:db8:1:3::/64',
      '0:0:0:0::/64',
      'fe80:0:0:0::/64',
      'unknown',
    ])
    // The same, exported for a key of your own that falls back to the address.
    expect(addresses.map((address) => ipKey(address ?? undefined))).toEqual(limiter.calls.map((c) => c.key))
  })

  it('is typed as both forms: with next it returns nothing, without it a promise of whether to go on', () => {
    const limit = rateLimit({ limiter: new LimitDouble(1) })
    const [req, res] = [{} as IncomingMessage, {} as ServerResponse]
    expectTypeOf(limit).toBeCallableWith(req, res, (_error?: unknown) => {})
    expectTypeOf(limit).toBeCallableWith(req, res)
    // Overloads resolve by arity: the last one is the form without next.
    expectTypeOf<ReturnType<HttpRateLimit>>().toEqualTypeOf<Promise<boolean>>()
    expect(limit.length).toBe(3) // not 4: Express would take it for an error handler
  })

  it('rejects options that are not valid at once, naming the field', () => {
    const limiter = new LimitDouble(1)
    expect(() => rateLimit({ limiter: {} as LimitDouble })).toThrow(/^options\.limiter must be a KeyedRateLimit/)
    expect(() => rateLimit({ limiter, headers: 'draft-8' as 'draft' })).toThrow(
      "options.headers must be 'draft', 'legacy', 'both' or false, got 'draft-8'",
    )
    expect(() => rateLimit({ limiter, key: 'ip' as never })).toThrow("options.key must be a function, got 'ip'")
    expect(() => rateLimit({ limiter, policyName: 'café' })).toThrow(/^options\.policyName must be a non-empty string of printable ASCII/)
    expect(() => rateLimit({ limiter, capacity: 5 } as never)).toThrow(/options\.capacity cannot be given with options\.limiter/)
    // express-rate-limit's names are not ours: refused rather than ignored.
    expect(() => rateLimit({ max: 5, windowMs: 1000 } as never)).toThrow(
      'options.max is not an option of the rate-limit middleware nor of RateLimiter',
    )
  })
})

describe('sluice/http in an Express 5 app', () => {
  it("limits by req.ip, which honours Express's trust proxy setting", async () => {
    const limiter = new LimitDouble(2)
    const app = express()
    app.set('trust proxy', true)
    app.use(rateLimit({ limiter }))
    app.get('/', (_req: unknown, res: { send(body: string): void }) => res.send('ok'))
    const url = await serve(app)
    const from = (ip: string): RequestInit => ({ headers: { 'x-forwarded-for': ip } })
    expect(await statuses(url, 3, from('203.0.113.7'))).toEqual([200, 200, 429])
    expect(await statuses(url, 3, from('198.51.100.1'))).toEqual([200, 200, 429])
    expect(limiter.calls.map((c) => c.key)).toEqual(['203.0.113.7', '203.0.113.7', '203.0.113.7', '198.51.100.1', '198.51.100.1', '198.51.100.1'])
    const refused = await fetch(url, from('198.51.100.1'))
    expect(await refused.json()).toEqual({ statusCode: 429, error: 'Too Many Requests', message: 'Rate limit exceeded, retry in 30 s' })
  })

  it.each([false, true])(
    'hands a limiter that fails (async: %s) to the error handler as a 500, and the app keeps serving',
    async (async) => {
      const app = express()
      app.use(rateLimit({ limiter: failingLimit(async) }))
      app.get('/', (_req: unknown, res: { send(body: string): void }) => res.send('ok'))
      const errors: unknown[] = []
      app.use((error: Error, _req: unknown, res: ServerResponse, _next: unknown) => {
        errors.push(error)
        res.statusCode = 500
        res.end('failed')
      })
      const url = await serve(app)
      expect(await statuses(url, 3)).toEqual([500, 500, 500])
      expect(errors).toHaveLength(3)
      expect((errors[0] as Error).message).toBe('the limiter store is unreachable')
    },
  )

  it('works with an async limiter in front of routes, which see only what it let through', async () => {
    const app = express()
    let handled = 0
    app.use(rateLimit({ limiter: new AsyncLimitDouble(2) }))
    app.get('/', (_req: unknown, res: { send(body: string): void }) => {
      handled++
      res.send('ok')
    })
    const url = await serve(app)
    expect(await statuses(url, 4)).toEqual([200, 200, 429, 429])
    expect(handled).toBe(2)
  })
})

describe('sluice/http with a RateLimiter', () => {
  it('makes a RateLimiter from its parameters when given no limiter', async () => {
    const url = await plainServer(rateLimit({ limit: 2, windowMs: 60_000 }))
    expect(await statuses(url, 3)).toEqual([200, 200, 429])
    const refused = await fetch(url)
    expect(parseList(refused.headers.get('ratelimit-policy')!)).toEqual([['2-in-1min', new Map([['q', 2], ['w', 60]])]])
    const retryAfter = Number(refused.headers.get('retry-after'))
    expect(retryAfter).toBeGreaterThanOrEqual(29)
    expect(retryAfter).toBeLessThanOrEqual(30)
    expect(parseList(refused.headers.get('ratelimit')!)[0]![1].get('t')).toBe(retryAfter)
  })

  it('counts in a limiter shared with a worker thread: the worker\'s takes and the middleware\'s are one budget', async () => {
    const limiter = new RateLimiter({ limit: 10, windowMs: 3_600_000 })
    expect(await takeInWorker(limiter.handle, '127.0.0.1', 7)).toBe(7)
    const url = await plainServer(rateLimit({ limiter }))
    const first = await fetch(url)
    expect(parseList(first.headers.get('ratelimit')!)[0]![1].get('r')).toBe(2)
    expect(await statuses(url, 3)).toEqual([200, 200, 429])
    expect(await takeInWorker(limiter.handle, '127.0.0.1', 1)).toBe(0)
    expect(await takeInWorker(limiter.handle, '10.0.0.1', 1)).toBe(1)
  })

  it('hands a key the RateLimiter refuses (a TypeError, a RangeError) and a cost above its capacity (a RangeError) to the error handler as 500s', async () => {
    const app = express()
    app.use(
      rateLimit({
        capacity: 2,
        refillPerSecond: 1,
        // No x-key header: undefined, not a key at all.
        key: (req) => req.headers['x-key'] as string,
        cost: (req) => Number(req.headers['x-cost'] ?? 1),
      }),
    )
    app.get('/', (_req: unknown, res: { send(body: string): void }) => res.send('ok'))
    const errors: Error[] = []
    app.use((error: Error, _req: unknown, res: ServerResponse, _next: unknown) => {
      errors.push(error)
      res.statusCode = 500
      res.end()
    })
    const url = await serve(app)
    expect((await fetch(url)).status).toBe(500)
    expect((await fetch(url, { headers: { 'x-key': 'x'.repeat(513) } })).status).toBe(500)
    expect((await fetch(url, { headers: { 'x-key': 'k', 'x-cost': '3' } })).status).toBe(500)
    expect((await fetch(url, { headers: { 'x-key': 'k' } })).status).toBe(200)
    expect(errors.map((e) => `${e.name}: ${e.message}`)).toEqual([
      'TypeError: key must be a string or a safe integer, got undefined',
      'RangeError: key must be a string of 1 to 512 UTF-8 bytes or a safe integer, got a string of 513 bytes',
      'RangeError: n must be an integer between 1 and 2, got 3',
    ])
  })
})
