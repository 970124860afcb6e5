// Redis restarted, paused (CLIENT PAUSE) or asleep (DEBUG SLEEP) in the
// middle of a run: the store's `whenUnavailable` policy holds, every call
// settles within its timeout, and nothing is left unhandled (vitest fails a
// run on an unhandled rejection).
import { describe, expect, it } from 'vitest'
import { RateLimiter, StoreUnavailableError, TokenBucket } from 'sluice'
import { redis } from 'sluice/redis'
import { CLIENT_KINDS, type ClientKind, redisSuite, type TestClient } from './support/redis-clients.js'

const suite = redisSuite()
const client = (kind?: ClientKind): Promise<TestClient> => suite.client(kind)

let unique = 0
const name = (): string => `f${++unique}`
const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms))

describe.each(CLIENT_KINDS)('with a %s client', (kind) => {
  it('a rate limit across a Redis restart: fail-closed rejects, never hangs, and works again after', async () => {
    const c = await client(kind)
    const limiter = RateLimiter.open(name(), { capacity: 1000, refillPerSecond: 1000, store: redis(c.client, { commandTimeout: 150 }) })
    const outcomes = { allowed: 0, unavailable: 0, other: [] as unknown[] }
    let restarted = false
    const restart = sleep(100).then(async () => {
      await suite.server.restart(400)
      restarted = true
    })
    const started = performance.now()
    // Bounded: at most 20 s, and ends 1.5 s after the restart.
    let restartedAt = Infinity
    while (performance.now() - started < 20_000 && performance.now() - restartedAt < 1500) {
      if (restarted && restartedAt === Infinity) restartedAt = performance.now()
      const t0 = performance.now()
      try {
        if ((await limiter.tryTake('k')).allowed) outcomes.allowed++
      } catch (error) {
        if (error instanceof StoreUnavailableError) outcomes.unavailable++
        else outcomes.other.push(error)
      }
      // Every call settles within its timeout (and some slack for a loaded machine).
      expect(performance.now() - t0).toBeLessThan(1000)
      await sleep(5)
    }
    await restart
    expect(outcomes.other).toEqual([])
    expect(outcomes.unavailable).toBeGreaterThan(0)
    // Back after the restart (scripts loaded again through the NOSCRIPT fallback).
    expect((await limiter.tryTake('k')).allowed).toBe(true)
  })
})

describe('when Redis is paused', () => {
  it('fail-closed rejects within commandTimeout, fail-open allows, local counts in process', async () => {
    const c = await client('ioredis')
    const admin = await client('node-redis')
    const n = name()
    const options = { capacity: 2, refillPerSecond: 0.01 }
    const closed = RateLimiter.open(n, { ...options, store: redis(c.client, { commandTimeout: 100 }) })
    const open = RateLimiter.open(n, { ...options, store: redis(c.client, { commandTimeout: 100, whenUnavailable: 'fail-open' }) })
    const local = RateLimiter.open(n, { ...options, store: redis(c.client, { commandTimeout: 100, whenUnavailable: 'local' }) })
    const bucket = TokenBucket.open(name(), { capacity: 1, refillPerSecond: 0.01, store: redis(c.client, { commandTimeout: 100, whenUnavailable: 'local' }) })
    await closed.ready()
    await admin.command('CLIENT', 'PAUSE', 800, 'ALL')
    const t0 = performance.now()
    await expect(closed.tryTake('k')).rejects.toBeInstanceOf(StoreUnavailableError)
    await expect(closed.take('k')).rejects.toMatchObject({ code: 'ERR_SLUICE_STORE_UNAVAILABLE' })
    expect(performance.now() - t0).toBeLessThan(700)
    for (let i = 0; i < 3; i++) expect((await open.tryTake('k')).allowed).toBe(true)
    const verdicts = []
    for (let i = 0; i < 3; i++) verdicts.push((await local.tryTake('k')).allowed)
    expect(verdicts).toEqual([true, true, false])
    expect([await bucket.tryTake(), await bucket.tryTake()]).toEqual([true, false])
    await sleep(900)
    // After the pause, the decisions sent meanwhile ran late (each at most
    // once): the shared key has spent its 2 tokens, no more.
    const after = await closed.peek('k')
    expect(after.remaining).toBe(0)
  })
})
