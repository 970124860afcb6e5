// Issue 16 says "Redis or Valkey": this file always starts a valkey-server
// (scripts/setup.sh valkey installs it; missing, the file fails) and proves
// that it is Valkey and that sluice/redis decides on it. The Redis test files
// run in full on Valkey under `npm run test:js:valkey`, which runs this file
// too, where the last test checks that they really got the server named.
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { RateLimiter, Semaphore } from 'sluice'
import { redis, RedisPermit, RedisSemaphore } from 'sluice/redis'
import { openClient, type TestClient } from './support/redis-clients.js'
import { serverBinary, startRedis, type RedisServer } from './support/redis-server.js'

/** The `field:value` lines of one INFO section, as a map. */
function info(text: unknown): Map<string, string> {
  const fields = new Map<string, string>()
  for (const line of String(text).split('\r\n')) {
    const colon = line.indexOf(':')
    if (colon > 0 && !line.startsWith('#')) fields.set(line.slice(0, colon), line.slice(colon + 1))
  }
  return fields
}

describe('sluice/redis on valkey-server', () => {
  let server: RedisServer
  let c: TestClient
  beforeAll(async () => {
    server = await startRedis([], 'valkey-server')
    c = await openClient('ioredis', server.port)
  })
  afterAll(async () => {
    await c?.close()
    await server?.stop()
  })

  it('the server started is Valkey 8 or later, by its own INFO server section', async () => {
    const fields = info(await c.command('INFO', 'server'))
    expect(fields.get('server_name')).toBe('valkey')
    expect(Number(fields.get('valkey_version')?.split('.')[0])).toBeGreaterThanOrEqual(8)
    expect(fields.get('tcp_port')).toBe(String(server.port))
  })

  it('takes DEBUG SLEEP, which the fault tests use to stall the server', async () => {
    expect(await c.command('DEBUG', 'SLEEP', 0)).toBe('OK')
  })

  it('a RateLimiter.open on it allows its capacity and then refuses with a retry time', async () => {
    const limiter = RateLimiter.open('valkey-rl', { capacity: 2, refillPerSecond: 1, store: redis(c.client) })
    const results = [await limiter.tryTake('user'), await limiter.tryTake('user'), await limiter.tryTake('user')]
    expect(results.map((r) => r.allowed)).toEqual([true, true, false])
    expect(results.map((r) => r.remaining)).toEqual([1, 0, 0])
    expect(results[2]!.retryAfterMs).toBeGreaterThan(900)
    expect(results[2]!.retryAfterMs).toBeLessThanOrEqual(1000)
    // The decision lives in the server: the limiter's keys are there.
    expect(((await c.command('KEYS', '{sluice:valkey-rl}*')) as string[]).length).toBeGreaterThan(0)
  })

  it('a Semaphore.open on it hands its permit to a waiter on release and gets it back', async () => {
    const store = redis(c.client)
    try {
      const semaphore = Semaphore.open('valkey-sem', { permits: 1, store })
      expect(semaphore).toBeInstanceOf(RedisSemaphore)
      const held = await semaphore.acquire()
      expect(held).toBeInstanceOf(RedisPermit)
      expect(await semaphore.tryAcquire()).toBeNull()
      const waiter = semaphore.acquire()
      await held.release()
      const next = await waiter
      expect(next.signal.aborted).toBe(false)
      expect(await semaphore.available).toBe(0)
      await next.release()
      expect(await semaphore.available).toBe(1)
    } finally {
      await store.close()
    }
  })
})

it('the Redis suites start the server SLUICE_REDIS_SERVER names (redis-server unless set)', async () => {
  const server = await startRedis()
  const c = await openClient('node-redis', server.port)
  try {
    expect(server.binary).toBe(process.env.SLUICE_REDIS_SERVER || 'redis-server')
    const fields = info(await c.command('INFO', 'server'))
    // Valkey answers server_name:valkey; Redis 7 has no server_name, Redis 8 says redis.
    expect(fields.get('server_name') ?? 'redis').toBe(serverBinary.includes('valkey') ? 'valkey' : 'redis')
  } finally {
    await c.close()
    await server.stop()
  }
})
