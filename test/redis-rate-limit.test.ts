import { createServer } from 'node:http'
import { once } from 'node:events'
import { describe, expect, it } from 'vitest'
import { RateLimiter, TokenBucket, TimeoutError } from 'sluice'
import { rateLimit } from 'sluice/http'
import { redis, RedisRateLimiter } from 'sluice/redis'
import { CLIENT_KINDS, type ClientKind, forkChild, killChild, nextMessage, redisSuite, serverTime, type TestClient } from './support/redis-clients.js'

const suite = redisSuite()
const client = (kind?: ClientKind): Promise<TestClient> => suite.client(kind)

let unique = 0
const name = (): string => `rl${++unique}`

describe.each(CLIENT_KINDS)('RateLimiter.open with a %s client', (kind) => {
  it('allows a fresh key its capacity, then refuses with the in-process numbers', async () => {
    const c = await client(kind)
    const limiter = RateLimiter.open(name(), { capacity: 3, refillPerSecond: 1, store: redis(c.client) })
    const results = []
    for (let i = 0; i < 4; i++) results.push(await limiter.tryTake('user'))
    expect(results.map((r) => r.allowed)).toEqual([true, true, true, false])
    expect(results.map((r) => r.remaining)).toEqual([2, 1, 0, 0])
    expect(results[3]!.reason).toBe('limited')
    expect(results[3]!.retryAfterMs).toBeGreaterThan(900)
    expect(results[3]!.retryAfterMs).toBeLessThanOrEqual(1000)
    expect(results[3]!.resetAfterMs).toBeGreaterThan(2900)
    // Another key is untouched; peek takes nothing.
    expect(await limiter.peek('other')).toMatchObject({ allowed: true, remaining: 3 })
    expect(await limiter.peek('other')).toMatchObject({ allowed: true, remaining: 3 })
  })

  it('decisions made in the same tick share one round trip and are answered in the order made', async () => {
    const c = await client(kind)
    const limiter = RateLimiter.open(name(), { capacity: 3, refillPerSecond: 0.01, store: redis(c.client) })
    await limiter.ready()
    const calls = async (): Promise<number> => {
      const info = String(await c.command('INFO', 'commandstats'))
      return [...info.matchAll(/^cmdstat_eval(?:sha)?:calls=(\d+)/gm)].reduce((sum, m) => sum + Number(m[1]), 0)
    }
    const before = await calls()
    const results = await Promise.all(Array.from({ length: 10 }, () => limiter.tryTake('k')))
    expect(await calls()).toBe(before + 1)
    expect(results.map((r) => r.allowed)).toEqual([true, true, true, false, false, false, false, false, false, false])
    expect(results.map((r) => r.remaining).slice(0, 4)).toEqual([2, 1, 0, 0])
  })

  it('a batch mixing takes of n, peeks and repeated keys answers as the in-process limiter does one call at a time', async () => {
    const c = await client(kind)
    const options = { capacity: 5, refillPerSecond: 0.01 }
    const limiter = RateLimiter.open(name(), { ...options, store: redis(c.client) })
    const local = new RateLimiter(options)
    const calls: [string, 'tryTake' | 'peek', number][] = [
      ['a', 'tryTake', 2],
      ['a', 'peek', 1],
      ['a', 'tryTake', 3],
      ['a', 'tryTake', 1],
      ['a', 'peek', 5],
      ['b', 'peek', 1],
      ['b', 'tryTake', 5],
      ['b', 'tryTake', 1],
      ['a', 'peek', 1],
    ]
    const remote = await Promise.all(calls.map(([key, method, n]) => limiter[method](key, n)))
    const expected = calls.map(([key, method, n]) => local[method](key, n))
    expect(remote.map((r) => [r.allowed, r.remaining, r.reason])).toEqual(expected.map((r) => [r.allowed, r.remaining, r.reason]))
    expect(remote.map((r) => r.allowed)).toEqual([true, true, true, false, false, true, true, false, false])
    remote.forEach((r, i) => {
      // The rate is slow (100 s a token): the times differ only by the calls' own duration.
      expect(Math.abs(r.retryAfterMs - expected[i]!.retryAfterMs), `retry ${i}`).toBeLessThan(1000)
      expect(Math.abs(r.resetAfterMs - expected[i]!.resetAfterMs), `reset ${i}`).toBeLessThan(1000)
    })
  })

  it('more decisions at once than one script call takes (32) go in several calls, still answered in the order made', async () => {
    const c = await client(kind)
    const limiter = RateLimiter.open(name(), { capacity: 200, refillPerSecond: 0.01, store: redis(c.client) })
    await limiter.ready()
    const calls = async (): Promise<number> => {
      const info = String(await c.command('INFO', 'commandstats'))
      return [...info.matchAll(/^cmdstat_eval(?:sha)?:calls=(\d+)/gm)].reduce((sum, m) => sum + Number(m[1]), 0)
    }
    const before = await calls()
    const results = await Promise.all(Array.from({ length: 300 }, (_, i) => limiter.tryTake(i % 2 === 0 ? 'k' : 'other')))
    // 300 decisions, 32 a call: 10 calls.
    expect(await calls()).toBe(before + 10)
    // 150 takes on each key of 200: every one allowed, remaining counting down in order across the calls.
    expect(results.every((r) => r.allowed)).toBe(true)
    expect(results.filter((_, i) => i % 2 === 0).map((r) => r.remaining)).toEqual(Array.from({ length: 150 }, (_, i) => 199 - i))
    const more = await Promise.all(Array.from({ length: 52 }, () => limiter.tryTake('k')))
    expect(more.map((r) => r.allowed)).toEqual([...Array(50).fill(true), false, false])
  })

  it('take waits for the tokens in order and rejects at once past its timeout', async () => {
    const c = await client(kind)
    const limiter = RateLimiter.open(name(), { capacity: 1, refillPerSecond: 20, store: redis(c.client) })
    await limiter.take('k')
    const started = performance.now()
    await limiter.take('k')
    expect(performance.now() - started).toBeGreaterThanOrEqual(35)
    await expect(limiter.take('k', 1, { timeout: 5 })).rejects.toBeInstanceOf(TimeoutError)
  })

  it('an aborted take gives its tokens back', async () => {
    const c = await client(kind)
    const limiter = RateLimiter.open(name(), { capacity: 1, refillPerSecond: 1, store: redis(c.client) })
    expect((await limiter.tryTake('k')).allowed).toBe(true)
    const controller = new AbortController()
    const waiting = limiter.take('k', 1, { signal: controller.signal })
    setTimeout(() => controller.abort(new Error('gone')), 30)
    await expect(waiting).rejects.toThrow('gone')
    // The refused take's reservation was returned: the wait is back to ~1 s, not ~2 s.
    await new Promise((resolve) => setTimeout(resolve, 20))
    expect((await limiter.peek('k')).retryAfterMs).toBeLessThan(1000)
  })
})

describe('RateLimiter.open in Redis', () => {
  it('several processes sharing one limiter never allow more than capacity + rate x elapsed (server time)', async () => {
    const c = await client('ioredis')
    const config = { mode: 'rate', port: suite.server.port, name: name(), capacity: 10, refill: 50, key: 'shared' }
    const children = [0, 1, 2].map((i) => forkChild({ ...config, client: i === 1 ? 'node-redis' : 'ioredis' }))
    try {
      await Promise.all(children.map((child) => nextMessage(child)))
      const reports = children.map((child) => nextMessage<{ allowed: number; denied: number }>(child))
      const started = await serverTime(c)
      for (const child of children) child.send('go')
      await new Promise((resolve) => setTimeout(resolve, 1500))
      for (const child of children) child.send('stop')
      const counts = await Promise.all(reports)
      const elapsedMs = (await serverTime(c)) - started
      const allowed = counts.reduce((sum, r) => sum + r.allowed, 0)
      const denied = counts.reduce((sum, r) => sum + r.denied, 0)
      expect(allowed).toBeLessThanOrEqual(10 + (50 * elapsedMs) / 1000)
      // It was contended (many refusals) and the limit was reached, not just approached.
      expect(denied).toBeGreaterThan(allowed)
      expect(allowed).toBeGreaterThanOrEqual(10 + 50 * 1.2)
    } finally {
      await Promise.all(children.map(killChild))
    }
  })

  it('a reply that is not one integer per decision rejects every decision in the call, whatever the policy', async () => {
    const replies: unknown[] = [['1'], [1, 2], 'OK', [1.5], [2 ** 60]]
    let next = 0
    // A client whose server answers nonsense: the reply is checked, not trusted.
    const liar = {
      status: 'ready',
      call: async () => replies[next++],
      duplicate: () => liar,
      on: () => liar,
      subscribe: async () => undefined,
      quit: async () => undefined,
      disconnect: () => undefined,
    }
    const limiter = RateLimiter.open(name(), { capacity: 5, refillPerSecond: 1, store: redis(liar, { whenUnavailable: 'fail-open' }) })
    for (let i = 0; i < replies.length; i++) {
      await expect(limiter.tryTake('k')).rejects.toThrow(/not one integer per decision/)
    }
  })

  it('a second opener with other parameters is refused, naming both values', async () => {
    const c = await client('ioredis')
    const store = redis(c.client)
    const n = name()
    await RateLimiter.open(n, { capacity: 5, refillPerSecond: 1, store }).ready()
    const other = RateLimiter.open(n, { capacity: 6, refillPerSecond: 1, store })
    await expect(other.ready()).rejects.toThrow(/capacity 5.*capacity 6|capacity 5, not 6/)
    await expect(other.tryTake('k')).rejects.toBeInstanceOf(RangeError)
    const slower = RateLimiter.open(n, { capacity: 5, refillPerSecond: 2, store })
    await expect(slower.tryTake('k')).rejects.toThrow(/interval 1000000000 ns per token, not 500000000 ns per token/)
  })

  it('hostile keys (binary, 512 bytes, braces) are separate keys in one hash slot', async () => {
    const c = await client('node-redis')
    const store = redis(c.client)
    const n = name()
    const limiter = RateLimiter.open(n, { capacity: 1, refillPerSecond: 0.001, store })
    const keys = ['\u0000\u00ff\ud83d\ude00', '{a}', '}{', 'x'.repeat(512), '1', 1, 'é'.repeat(256)]
    for (const key of keys) expect((await limiter.tryTake(key)).allowed, String(key).slice(0, 10)).toBe(true)
    for (const key of keys) expect((await limiter.tryTake(key)).allowed).toBe(false)
    await expect(limiter.tryTake('x'.repeat(513))).rejects.toBeInstanceOf(RangeError)
    await expect(limiter.tryTake('')).rejects.toBeInstanceOf(RangeError)
    await expect(limiter.tryTake('\ud800')).rejects.toBeInstanceOf(RangeError)
    await expect(limiter.tryTake({} as never)).rejects.toBeInstanceOf(TypeError)
    await expect(limiter.tryTake(1.5)).rejects.toBeInstanceOf(RangeError)
    // Every key of the limiter carries its hash tag, so Redis Cluster keeps them on one node.
    const stored = (await c.command('KEYS', `{sluice:${n}}*`)) as string[]
    // A cell per key, the parameters and the metrics hash.
    expect(stored.length).toBe(keys.length + 2)
    const slots = new Set(await Promise.all(stored.map((k) => c.command('CLUSTER', 'KEYSLOT', k).catch(() => k.slice(0, k.indexOf('}') + 1)))))
    expect(slots.size).toBe(1)
  })

  it('two prefixes never see each other’s keys', async () => {
    const c = await client('ioredis')
    const n = name()
    const a = RateLimiter.open(n, { capacity: 1, refillPerSecond: 0.01, store: redis(c.client, { prefix: 'a:' }) })
    const b = RateLimiter.open(n, { capacity: 2, refillPerSecond: 0.01, store: redis(c.client, { prefix: 'b:' }) })
    expect((await a.tryTake('k')).allowed).toBe(true)
    expect((await a.tryTake('k')).allowed).toBe(false)
    expect(await b.tryTake('k')).toMatchObject({ allowed: true, remaining: 1 })
    const keys = (await c.command('KEYS', `*${n}*`)) as string[]
    // Each: its cell, its parameters, its metrics hash.
    expect(keys.filter((k) => k.startsWith('{a:')).length).toBe(3)
    expect(keys.filter((k) => k.startsWith('{b:')).length).toBe(3)
  })

  it('idle keys expire by themselves (PEXPIRE)', async () => {
    const c = await client('ioredis')
    const n = name()
    const limiter = RateLimiter.open(n, { capacity: 2, refillPerSecond: 2, store: redis(c.client) })
    await limiter.tryTake('k')
    // Full again 500 ms after one token was taken: it expires then.
    const ttl = Number(await c.command('PTTL', `{sluice:${n}}:rl:k:s:k`))
    expect(ttl).toBeGreaterThan(0)
    expect(ttl).toBeLessThanOrEqual(500)
    expect(Number(await c.command('PTTL', `{sluice:${n}}:rl:p`))).toBeGreaterThan(0)
    expect(await limiter.reset('k')).toBe(true)
    expect(await limiter.reset('k')).toBe(false)
  })

  it('TokenBucket.open shares one bucket', async () => {
    const c = await client('node-redis')
    const store = redis(c.client)
    const n = name()
    const a = TokenBucket.open(n, { capacity: 2, refillPerSecond: 0.01, store })
    const b = TokenBucket.open(n, { capacity: 2, refillPerSecond: 0.01, store })
    expect(await a.tryTake()).toBe(true)
    expect(await b.available).toBe(1)
    expect(await b.tryTake()).toBe(true)
    expect(await a.tryTake()).toBe(false)
    await expect(b.take(1, { timeout: 10 })).rejects.toBeInstanceOf(TimeoutError)
  })

  it('the HTTP middleware limits real requests with a Redis limiter', async () => {
    const c = await client('ioredis')
    const limiter = RateLimiter.open(name(), { capacity: 2, refillPerSecond: 0.01, store: redis(c.client) })
    expect(limiter).toBeInstanceOf(RedisRateLimiter)
    const limit = rateLimit({ limiter })
    const http = createServer(async (req, res) => {
      if (!(await limit(req, res))) return
      res.end('ok')
    })
    http.listen(0, '127.0.0.1')
    await once(http, 'listening')
    try {
      const { port } = http.address() as { port: number }
      const statuses = []
      for (let i = 0; i < 3; i++) statuses.push((await fetch(`http://127.0.0.1:${port}/`)).status)
      expect(statuses).toEqual([200, 200, 429])
    } finally {
      http.close()
      http.closeAllConnections()
    }
  })

  it('bad options and names are TypeErrors or RangeErrors naming the field', async () => {
    const c = await client('ioredis')
    const store = redis(c.client)
    expect(() => RateLimiter.open('x', { capacity: 0, refillPerSecond: 1, store })).toThrow(/options\.capacity/)
    expect(() => RateLimiter.open('x', { capacity: 1, refillPerSecond: 1, algorithm: 'sliding-window', store })).toThrow(TypeError)
    expect(() => RateLimiter.open('bad name', { capacity: 1, refillPerSecond: 1, store })).toThrow(RangeError)
    expect(() => RateLimiter.open('x'.repeat(65), { capacity: 1, refillPerSecond: 1, store })).toThrow(/name must be 1 to 64/)
    expect(() => RateLimiter.open(1 as never, { capacity: 1, refillPerSecond: 1, store })).toThrow(TypeError)
    expect(() => RateLimiter.open('x', { capacity: 1, refillPerSecond: 1, store: {} as never })).toThrow(/options\.store/)
    expect(() => redis({})).toThrow(/client must be/)
    expect(() => redis(c.client, { prefix: 'a{b' })).toThrow(/options\.prefix/)
    expect(() => redis(c.client, { commandTimeout: -1 })).toThrow(/options\.commandTimeout/)
    expect(() => redis(c.client, { whenUnavailable: 'maybe' as never })).toThrow(/options\.whenUnavailable/)
    expect(() => redis(c.client, { leaseTtl: 1 })).toThrow(/options\.leaseTtl/)
    expect(() => TokenBucket.open('x', { capacity: 1, store } as never)).toThrow(/refillPerSecond/)
  })
})
