// metrics() of the Redis primitives counts every process that uses the name
// on the server: real processes (fixtures/redis-metrics-child.mjs) count
// into one RateLimiter and one Semaphore, and each of them, and this one,
// reads the same sums.
import { fork, type ChildProcess } from 'node:child_process'
import { fileURLToPath } from 'node:url'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { RateLimiter, Semaphore, TokenBucket } from 'sluice'
import { redis } from 'sluice/redis'
import { startRedis, type RedisServer } from './support/redis-server.js'
import { openClient, type TestClient } from './support/redis-clients.js'

const childScript = fileURLToPath(new URL('./fixtures/redis-metrics-child.mjs', import.meta.url))

let server: RedisServer
let c: TestClient
const children = new Set<ChildProcess>()
const inboxes = new Map<ChildProcess, { messages: unknown[]; waiting: ((m: unknown) => void)[] }>()
const stores: ReturnType<typeof redis>[] = []

beforeAll(async () => {
  server = await startRedis()
  c = await openClient('ioredis', server.port)
})

afterAll(async () => {
  for (const child of children) child.kill('SIGKILL')
  for (const s of stores) await s.close()
  await c?.close()
  await server?.stop()
})

function store(options?: Parameters<typeof redis>[1]): ReturnType<typeof redis> {
  const s = redis(c.client, options)
  stores.push(s)
  return s
}

function spawn(config: Record<string, unknown>): ChildProcess {
  const child = fork(childScript, [JSON.stringify({ port: server.port, ...config })], { stdio: ['ignore', 'inherit', 'inherit', 'ipc'] })
  const inbox = { messages: [] as unknown[], waiting: [] as ((m: unknown) => void)[] }
  inboxes.set(child, inbox)
  children.add(child)
  child.on('message', (m) => {
    const waiter = inbox.waiting.shift()
    if (waiter) waiter(m)
    else inbox.messages.push(m)
  })
  child.once('exit', () => children.delete(child))
  return child
}

/** The next message of `child`; rejects if none comes within 20 s. */
function next<T = unknown>(child: ChildProcess): Promise<T> {
  const inbox = inboxes.get(child)!
  if (inbox.messages.length > 0) return Promise.resolve(inbox.messages.shift() as T)
  return new Promise<T>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error('no message from the child in 20 s')), 20_000)
    inbox.waiting.push((m) => {
      clearTimeout(timer)
      resolve(m as T)
    })
  })
}

/** Sends `step` to every child and waits for each one's answer. */
async function step<T = unknown>(all: ChildProcess[], message: string): Promise<T[]> {
  for (const child of all) child.send(message)
  return Promise.all(all.map((child) => next<T>(child)))
}

let unique = 0
const name = (): string => `metrics${process.pid}-${++unique}`
const counts = (m: { acquired: number; refused: number; timedOut: number; aborted: number }) => ({
  acquired: m.acquired,
  refused: m.refused,
  timedOut: m.timedOut,
  aborted: m.aborted,
})

describe('metrics() of Redis primitives across processes', () => {
  it('a RateLimiter: every process reads the exact sums of all of them', async () => {
    const n = name()
    const all = [spawn({ kind: 'rate', name: n, client: 'ioredis' }), spawn({ kind: 'rate', name: n, client: 'node-redis' }), spawn({ kind: 'rate', name: n, client: 'ioredis' })]
    expect(await Promise.all(all.map((ch) => next(ch)))).toEqual(['ready', 'ready', 'ready'])
    await step(all, 'go')
    const views = await step<{ acquired: number; refused: number; timedOut: number; aborted: number; waiting: number }>(all, 'report')
    // capacity 5 for all three: 5 of the 30 tryTakes pass; each process has one take timed out and one aborted.
    const expected = { acquired: 5, refused: 25, timedOut: 3, aborted: 3 }
    for (const view of views) {
      expect(counts(view)).toEqual(expected)
      expect(view.waiting).toBe(0)
    }
    const mine = await RateLimiter.open(n, { capacity: 5, refillPerSecond: 0.001, store: store() }).metrics()
    expect(counts(mine)).toEqual(expected)
    expect(mine.waitTime).toEqual({ mean: 0, p50: 0, p90: 0, p99: 0, max: 0 })
  })

  it('a Semaphore: every process reads the exact sums of all of them, and the waits queued in any', async () => {
    const n = name()
    const semaphore = Semaphore.open(n, { permits: 2, store: store() })
    const held = [await semaphore.acquire(), await semaphore.acquire()]
    const all = [spawn({ kind: 'sem', name: n, client: 'ioredis' }), spawn({ kind: 'sem', name: n, client: 'node-redis' })]
    expect(await Promise.all(all.map((ch) => next(ch)))).toEqual(['ready', 'ready'])
    // While this process holds every permit: each child is refused once, times out once, aborts once.
    await step(all, 'blocked')
    const during = await semaphore.metrics()
    expect(counts(during)).toEqual({ acquired: 2, refused: 2, timedOut: 2, aborted: 2 })
    expect(during).toMatchObject({ capacity: 2, inUse: 2, waiting: 0 })
    // A wait queued here shows in `waiting` (read from the server's queue).
    const controller = new AbortController()
    const queued = semaphore.acquire({ signal: controller.signal }).catch(() => 'aborted')
    for (let i = 0; i < 100 && (await semaphore.waiting) === 0; i++) await new Promise((r) => setTimeout(r, 10))
    expect((await semaphore.metrics()).waiting).toBe(1)
    controller.abort()
    expect(await queued).toBe('aborted')
    for (const p of held) await p.release()
    await step(all, 'free')
    const views = await step<{ acquired: number; refused: number; timedOut: number; aborted: number; waiting: number; inUse: number }>(all, 'report')
    // This process: 2 acquired, 1 aborted; each child: 3 acquired, 1 refused, 1 timed out, 1 aborted.
    const expected = { acquired: 8, refused: 2, timedOut: 2, aborted: 3 }
    for (const view of [...views, await semaphore.metrics()]) {
      expect(counts(view)).toEqual(expected)
      expect(view).toMatchObject({ waiting: 0, inUse: 0 })
    }
  })
})

describe('metrics() of Redis primitives in one process', () => {
  it('a TokenBucket counts a take granted after waiting (counted by the client) and times the wait here', async () => {
    const n = name()
    const bucket = TokenBucket.open(n, { capacity: 1, refillPerSecond: 20, store: store() })
    expect(await bucket.tryTake()).toBe(true)
    expect(await bucket.tryTake()).toBe(false)
    await bucket.take()
    // The grant's count is fire-and-forget: read until it lands (bounded: 2 s).
    let m = await bucket.metrics()
    for (let i = 0; i < 200 && m.acquired < 2; i++) m = await bucket.metrics()
    expect(counts(m)).toEqual({ acquired: 2, refused: 1, timedOut: 0, aborted: 0 })
    expect(m.waitTime.max).toBeGreaterThan(0)
    expect(m.available).toBe(0)
  })

  it('two prefixes never share a metrics hash, and it expires by itself', async () => {
    const n = name()
    const a = RateLimiter.open(n, { capacity: 1, refillPerSecond: 0.01, store: store({ prefix: 'ma:' }) })
    const b = RateLimiter.open(n, { capacity: 1, refillPerSecond: 0.01, store: store({ prefix: 'mb:' }) })
    await a.tryTake('k')
    await a.tryTake('k')
    expect(counts(await a.metrics())).toEqual({ acquired: 1, refused: 1, timedOut: 0, aborted: 0 })
    expect(counts(await b.metrics())).toEqual({ acquired: 0, refused: 0, timedOut: 0, aborted: 0 })
    const ttl = (await c.command('PTTL', `{ma:${n}}:rl:m`)) as number
    expect(ttl).toBeGreaterThan(0)
    expect(ttl).toBeLessThanOrEqual(3_600_000)
    const semaphore = Semaphore.open(n, { permits: 1, store: store({ prefix: 'ma:' }) })
    await (await semaphore.acquire()).release()
    expect(await c.command('PTTL', `{ma:${n}}:sem:m`)).toBeGreaterThan(0)
  })

  it('a reply of the wrong shape from the client does not throw from metrics()', async () => {
    for (const reply of ['nonsense', 42, null, { acquired: 1 }, [-5, 'x', 1.5, '1e3', '99999999999999999999', {}]]) {
      // A client that answers every command with `reply` (ioredis's shape).
      const fake = { call: async () => reply, duplicate: () => fake, status: 'ready', subscribe: async () => {}, on: () => fake, quit: async () => {}, disconnect: () => {} }
      const s = redis(fake)
      stores.push(s)
      const zeros = { acquired: 0, refused: 0, timedOut: 0, aborted: 0 }
      const limiter = await RateLimiter.open('fake', { capacity: 1, refillPerSecond: 1, store: s }).metrics()
      expect(counts(limiter)).toEqual(zeros)
      const semaphore = await Semaphore.open('fake', { permits: 2, store: s }).metrics()
      expect(counts(semaphore)).toEqual(zeros)
      expect(semaphore).toMatchObject({ capacity: 2, waiting: 0 })
      expect(Number.isFinite(semaphore.inUse) && semaphore.inUse >= 0 && semaphore.inUse <= 2).toBe(true)
    }
  })
})
