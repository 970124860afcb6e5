// Waits that end early (cancelled, timed out, store unavailable) must leave
// nothing behind: no reservation in Redis, no listener keeping the process up.
import { spawn } from 'node:child_process'
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterAll, describe, expect, it } from 'vitest'
import { RateLimiter, TokenBucket } from 'sluice'
import { redis } from 'sluice/redis'
import { CLIENT_KINDS, type ClientKind, redisSuite, type TestClient } from './support/redis-clients.js'

const root = join(import.meta.dirname, '..')
const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms))
let unique = 0
const name = (): string => `early${process.pid}x${++unique}`

/** Runs `source` (an ES module importing sluice) in a child; its exit code, or 'hung' if it is still up after `ms`. */
function runChild(source: string, args: string[], ms = 2000): Promise<number | 'hung'> {
  const child = spawn(process.execPath, ['--input-type=module', '-e', source, ...args], { cwd: root, stdio: ['ignore', 'inherit', 'inherit'] })
  return new Promise((resolve) => {
    const timer = setTimeout(() => {
      child.kill('SIGKILL')
      resolve('hung')
    }, ms)
    child.on('exit', (code) => {
      clearTimeout(timer)
      resolve(code ?? -1)
    })
  })
}

describe('named semaphore: the FIFO bell of a wait that ended without a ring', () => {
  const dirs: string[] = []
  const dir = (): string => {
    const d = mkdtempSync(join(tmpdir(), 'sluice-early-'))
    dirs.push(d)
    return d
  }
  afterAll(() => {
    for (const d of dirs) rmSync(d, { recursive: true, force: true })
  })

  const prelude = `import { Semaphore } from 'sluice'
const [dir, name] = process.argv.slice(-2)
const s = Semaphore.open(name, { permits: 1, dir })
const held = await s.acquire()
`
  it('control: a process that only acquires and releases exits', async () => {
    expect(await runChild(`${prelude}held.release()`, [dir(), name()])).toBe(0)
  })

  it('a timed-out wait does not keep the process alive', async () => {
    const source = `${prelude}await s.acquire({ timeout: 30 }).catch(() => {})
held.release()`
    expect(await runChild(source, [dir(), name()])).toBe(0)
  })

  it('an aborted wait does not keep the process alive', async () => {
    const source = `${prelude}const c = new AbortController()
const w = s.acquire({ signal: c.signal }).catch(() => {})
setTimeout(() => c.abort(), 20)
await w
held.release()`
    expect(await runChild(source, [dir(), name()])).toBe(0)
  })

  it('a wait granted by a release in the same thread does not keep the process alive', async () => {
    const source = `${prelude}const w = s.acquire()
setTimeout(() => held.release(), 20)
;(await w).release()`
    expect(await runChild(source, [dir(), name()])).toBe(0)
  })
})

const suite = redisSuite()
const client = (kind?: ClientKind): Promise<TestClient> => suite.client(kind)
const store = (c: TestClient, options?: Parameters<typeof redis>[1]): ReturnType<typeof redis> => suite.store(c, options)
/** `promise`, or 'pending' after `ms`. */
function within<T>(promise: Promise<T>, ms = 1500): Promise<T | 'pending'> {
  return Promise.race([promise, sleep(ms).then(() => 'pending' as const)])
}

describe.each(CLIENT_KINDS)('Redis GCRA take with a %s client', (kind) => {
  it('TokenBucket.take aborted during its round trip, tokens available at once: the tokens go back', async () => {
    const c = await client(kind)
    const bucket = TokenBucket.open(name(), { capacity: 2, refillPerSecond: 0.01, store: store(c) })
    await bucket.ready()
    const controller = new AbortController()
    const take = bucket.take(2, { signal: controller.signal })
    controller.abort(new Error('gone'))
    expect(await within(take.then(() => 'resolved', (e: Error) => e.message))).toBe('gone')
    // The give-back is sent without waiting for its answer; the first time a
    // script runs the client may resend it after a NOSCRIPT, behind later
    // commands: let it land (2 tokens refill in 200 s, so nothing else can).
    await sleep(100)
    // The caller was told it got nothing: the bucket must still be full.
    expect(await within(bucket.tryTake(2))).toBe(true)
  })

  it('RateLimiter.take aborted during its round trip, tokens available at once: the tokens go back', async () => {
    const c = await client(kind)
    const limiter = RateLimiter.open(name(), { capacity: 2, refillPerSecond: 0.01, store: store(c) })
    const controller = new AbortController()
    const take = limiter.take('k', 2, { signal: controller.signal })
    controller.abort(new Error('gone'))
    expect(await within(take.then(() => 'resolved', (e: Error) => e.message))).toBe('gone')
    await sleep(100) // as above
    expect(await within(limiter.tryTake('k', 2).then((r) => r.allowed))).toBe(true)
  })
})
