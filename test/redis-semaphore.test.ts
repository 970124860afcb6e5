import { mkdtempSync, readFileSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { describe, expect, it } from 'vitest'
import { ClosedError, Mutex, QueueFullError, Semaphore, TimeoutError } from 'sluice'
import { LeaseLostError, redis, RedisPermit, RedisSemaphore } from 'sluice/redis'
import { CLIENT_KINDS, type ClientKind, forkChild, killChild, nextMessage, redisSuite, type TestClient } from './support/redis-clients.js'

const suite = redisSuite()
const client = (kind?: ClientKind): Promise<TestClient> => suite.client(kind)

const store = (c: TestClient, options?: Parameters<typeof redis>[1]): ReturnType<typeof redis> => suite.store(c, options)

let unique = 0
const name = (): string => `sem${++unique}`
const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms))

/** Every key and field under `tag`, with values: a snapshot to compare. The metrics hash (`:m`, counts that are meant to grow) is left out. */
async function snapshot(c: TestClient, n: string): Promise<Record<string, unknown>> {
  const keys = ((await c.command('KEYS', `{sluice:${n}}*`)) as string[]).filter((k) => !k.endsWith(':m')).sort()
  const out: Record<string, unknown> = {}
  for (const key of keys) {
    const type = await c.command('TYPE', key)
    if (type === 'hash') {
      const fields = (await c.command('HGETALL', key)) as string[] | Record<string, string>
      const entries = Array.isArray(fields) ? Object.fromEntries(fields.flatMap((_, i) => (i % 2 ? [] : [[fields[i], fields[i + 1]]]))) : fields
      delete entries.seq
      out[key] = entries
    } else out[key] = await c.command('ZRANGE', key, 0, -1)
  }
  return out
}

/**
 * A semaphore of 1 whose permit is held, the keys' snapshot then, and a
 * wait for it made with `controller`'s signal.
 */
async function oneHeldOneWaiting(kind: ClientKind) {
  const c = await client(kind)
  const n = name()
  const semaphore = Semaphore.open(n, { permits: 1, store: store(c) })
  const held = await semaphore.acquire()
  const before = await snapshot(c, n)
  const controller = new AbortController()
  const waiting = semaphore.acquire({ signal: controller.signal })
  return { c, n, semaphore, held, before, controller, waiting }
}

describe.each(CLIENT_KINDS)('Semaphore.open with a %s client', (kind) => {
  // Eventual modes are served FIFO on Redis (a barge costs two round trips where a hand-off costs one): same order.
  it.each(['fifo', 'eventual', 'eventual-head'] as const)('hands permits out up to its count, then to waiters in order as they are released (fairness %s)', async (fairness) => {
    const c = await client(kind)
    const semaphore = Semaphore.open(name(), { permits: 2, fairness, store: store(c) })
    expect(semaphore).toBeInstanceOf(RedisSemaphore)
    expect(semaphore.fairness).toBe(fairness)
    const a = await semaphore.acquire()
    const b = await semaphore.acquire()
    expect(await semaphore.tryAcquire()).toBeNull()
    const order: string[] = []
    const first = semaphore.acquire().then((p) => (order.push('first'), p))
    await sleep(20)
    const second = semaphore.acquire().then((p) => (order.push('second'), p))
    await sleep(20)
    expect(await semaphore.waiting).toBe(2)
    await a.release()
    const p1 = await first
    await b.release()
    const p2 = await second
    expect(order).toEqual(['first', 'second'])
    expect(p1).toBeInstanceOf(RedisPermit)
    expect(p1.signal.aborted).toBe(false)
    await p1.release()
    await p2.release()
    await p2.release()
    expect(await semaphore.available).toBe(2)
  })

  it('a cancelled wait leaves no trace in Redis', async () => {
    const { c, n, semaphore, held, before, controller, waiting } = await oneHeldOneWaiting(kind)
    await sleep(30)
    expect(await semaphore.waiting).toBe(1)
    controller.abort(new Error('no longer needed'))
    await expect(waiting).rejects.toThrow('no longer needed')
    await expect(semaphore.acquire({ timeout: 20 })).rejects.toBeInstanceOf(TimeoutError)
    await sleep(30)
    expect(await snapshot(c, n)).toEqual(before)
    await held.release()
    // Only the parameters stay, for a later opener to be checked against (and the metrics, an hour).
    expect(((await c.command('KEYS', `{sluice:${n}}*`)) as string[]).sort()).toEqual([`{sluice:${n}}:sem:m`, `{sluice:${n}}:sem:p`])
  })

  // The abort comes before the wait's subscription is ready, so before its
  // first attempt: that attempt must not queue it in Redis afterwards (a
  // wait nobody withdraws, at the head of the queue until its lease ends).
  it('a wait cancelled before it reached Redis is never queued there', async () => {
    const { c, n, semaphore, held, before, controller, waiting } = await oneHeldOneWaiting(kind)
    controller.abort(new Error('no longer needed'))
    await expect(waiting).rejects.toThrow('no longer needed')
    await sleep(50)
    expect(await snapshot(c, n)).toEqual(before)
    expect(await semaphore.waiting).toBe(0)
    // The next waiter is first in line: the release grants it at once.
    const next = semaphore.acquire({ timeout: 2_000 })
    await sleep(20)
    await held.release()
    await (await next).release()
  })
})

describe('Semaphore.open in Redis', () => {
  it('processes sharing one semaphore never hold more permits than it has', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'sluice-redis-log-'))
    const log = join(dir, 'log')
    const config = { mode: 'cycles', port: suite.server.port, name: name(), permits: 2, cycles: 40, log }
    const children = [0, 1, 2, 3].map((i) => forkChild({ ...config, client: i % 2 ? 'node-redis' : 'ioredis' }))
    try {
      await Promise.all(children.map((child) => nextMessage(child)))
      const done = children.map((child) => nextMessage(child))
      for (const child of children) child.send('go')
      await Promise.all(done)
      let holders = 0
      let most = 0
      const lines = readFileSync(log, 'utf8').trim().split('\n')
      for (const line of lines) {
        holders += line.startsWith('+') ? 1 : -1
        most = Math.max(most, holders)
      }
      expect(lines.length).toBe(4 * 40 * 2)
      expect(most).toBe(2)
      expect(holders).toBe(0)
    } finally {
      await Promise.all(children.map(killChild))
      rmSync(dir, { recursive: true, force: true })
    }
  })

  it('a SIGKILLed holder’s permit comes back after its lease TTL, to a waiter in another process', async () => {
    const n = name()
    const config = { port: suite.server.port, name: n, permits: 1, leaseTtl: 300, client: 'ioredis' }
    const holder = forkChild({ ...config, mode: 'hold' })
    const waiter = forkChild({ ...config, mode: 'wait', client: 'node-redis' })
    try {
      expect(await nextMessage(holder)).toBe('held')
      expect(await nextMessage(waiter)).toBe('waiting')
      const got = nextMessage<{ got: number }>(waiter)
      await sleep(400)
      const killed = Date.now()
      await killChild(holder)
      const { got: at } = await got
      // Within about one TTL: the lease ran out, and the server's reported
      // expiry (a timer, not polling) or the waiter's renewal handed it on.
      expect(at - killed).toBeLessThan(300 + 200)
    } finally {
      await Promise.all([killChild(holder), killChild(waiter)])
    }
  })

  it('once every process has died and the keys have expired, a later opener starts clean (no stale count blocks it)', async () => {
    const n = name()
    const c = await client('ioredis')
    const holder = forkChild({ port: suite.server.port, name: n, permits: 1, leaseTtl: 100, client: 'ioredis', mode: 'hold' })
    try {
      expect(await nextMessage(holder)).toBe('held')
      await killChild(holder)
      // Until the lease keys have expired on the server itself (bounded: 5 s), only the parameters (and the metrics) stay.
      const only = [`{sluice:${n}}:sem:m`, `{sluice:${n}}:sem:p`]
      const keys = async (): Promise<string[]> => ((await c.command('KEYS', `{sluice:${n}}*`)) as string[]).sort()
      for (let i = 0; i < 100 && JSON.stringify(await keys()) !== JSON.stringify(only); i++) await sleep(50)
      expect(await keys()).toEqual(only)
      const semaphore = Semaphore.open(n, { permits: 1, store: store(c, { leaseTtl: 100 }) })
      const permit = await semaphore.acquire({ timeout: 1000 })
      expect(await semaphore.available).toBe(0)
      await permit.release()
      expect(await semaphore.available).toBe(1)
    } finally {
      await killChild(holder)
    }
  })

  it('a lease lost to a Redis restart aborts the permit’s signal', async () => {
    const c = await client('ioredis')
    const semaphore = Semaphore.open(name(), { permits: 1, store: store(c, { leaseTtl: 300, commandTimeout: 200 }) })
    const permit = await semaphore.acquire()
    await suite.server.restart()
    const reason = await new Promise((resolve) => permit.signal.addEventListener('abort', () => resolve(permit.signal.reason)))
    expect(reason).toBeInstanceOf(LeaseLostError)
    await permit.release()
    // After the restart it works again (the scripts are loaded again: NOSCRIPT fallback).
    const again = await semaphore.acquire({ timeout: 2000 })
    await again.release()
  })

  it('fail-closed while Redis is paused: acquire rejects with StoreUnavailableError, and nothing hangs', async () => {
    const c = await client('ioredis')
    const admin = await client('node-redis')
    const semaphore = Semaphore.open(name(), { permits: 1, store: store(c, { commandTimeout: 100 }) })
    const held = await semaphore.acquire()
    await admin.command('CLIENT', 'PAUSE', 600, 'ALL')
    await expect(semaphore.acquire()).rejects.toMatchObject({ code: 'ERR_SLUICE_STORE_UNAVAILABLE' })
    await expect(semaphore.tryAcquire()).rejects.toMatchObject({ name: 'StoreUnavailableError' })
    await sleep(700)
    await held.release()
    // The attempts made during the pause ran afterwards and were withdrawn: the permit is free.
    const permit = await semaphore.acquire({ timeout: 1000 })
    await permit.release()
    expect(await semaphore.available).toBe(1)
  })

  it('fail-open and local policies answer while the server sleeps (DEBUG SLEEP)', async () => {
    const c = await client('node-redis')
    const admin = await client('ioredis')
    const open = Semaphore.open(name(), { permits: 1, store: store(c, { commandTimeout: 100, whenUnavailable: 'fail-open' }) })
    const local = Semaphore.open(name(), { permits: 1, store: store(c, { commandTimeout: 100, whenUnavailable: 'local' }) })
    const sleeping = admin.command('DEBUG', 'SLEEP', '0.6')
    await sleep(20)
    const a = await open.acquire()
    const b = await open.acquire()
    expect(a.signal.aborted).toBe(false)
    const l = await local.acquire()
    expect(await local.tryAcquire()).toBeNull()
    await Promise.all([a.release(), b.release(), l.release()])
    await sleeping
    await sleep(50)
    expect(await open.available).toBe(1)
    expect(await local.available).toBe(1)
  })

  it('Mutex.open is a lock across processes, and a second opener with other permits is refused', async () => {
    const c = await client('ioredis')
    const s = store(c)
    const n = name()
    const mutex = Mutex.open(n, { store: s })
    const other = Mutex.open(n, { store: s })
    const guard = await mutex.lock()
    expect(await other.tryLock()).toBeNull()
    expect(await other.isLocked).toBe(true)
    await guard.release()
    expect(await other.runExclusive(async (signal) => signal.aborted)).toBe(false)
    await Semaphore.open(n, { permits: 3, store: s }).ready()
    await expect(Semaphore.open(n, { permits: 2, store: s }).acquire()).rejects.toThrow(/permits 3, not permits 2/)
  })

  it('a wait on a closed store rejects with a ClosedError instead of opening a new connection', async () => {
    const c = await client('ioredis')
    const s = redis(c.client)
    const semaphore = Semaphore.open(name(), { permits: 1, store: s })
    const held = await semaphore.acquire()
    await s.close()
    await expect(semaphore.acquire()).rejects.toBeInstanceOf(ClosedError)
    await held.release()
    expect(await semaphore.available).toBe(1)
  })

  it('bad options are TypeErrors or RangeErrors naming the field', async () => {
    const c = await client('ioredis')
    const s = store(c)
    expect(() => Semaphore.open('x', { permits: 0, store: s })).toThrow(/options\.permits/)
    expect(() => Semaphore.open('x', { permits: 1.5, store: s })).toThrow(RangeError)
    expect(() => Semaphore.open('-x', { permits: 1, store: s })).toThrow(/name must be/)
    // @ts-expect-error -- a bad mode, as from JavaScript
    expect(() => Semaphore.open('x', { permits: 1, fairness: 'fair', store: s })).toThrow(RangeError)
    // @ts-expect-error -- a bad mode, as from JavaScript
    expect(() => Mutex.open('x', { fairness: 1, store: s })).toThrow(/options\.fairness/)
    const semaphore = Semaphore.open('x', { permits: 2, maxWaiters: 0, store: s })
    await expect(semaphore.acquire({ weight: 3 })).rejects.toThrow(/options\.weight/)
    await expect(semaphore.acquire({ priority: 1 })).rejects.toThrow(/options\.priority/)
    await expect(semaphore.acquire({ timeout: -1 })).rejects.toThrow(/options\.timeout/)
    await expect(semaphore.tryAcquire(0)).rejects.toThrow(/weight/)
    const held = await semaphore.acquire({ weight: 2 })
    await expect(semaphore.acquire()).rejects.toBeInstanceOf(QueueFullError)
    await held.release()
  })
})
