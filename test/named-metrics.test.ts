// metrics() of named primitives counts every process that shares the name
// (issue 17): the counters live in a companion block `<name>.m` beside the
// segment. Real processes: test/fixtures/named-metrics-child.mjs.
import { existsSync } from 'node:fs'
import { join } from 'node:path'
import { setTimeout as sleep } from 'node:timers/promises'
import { RateLimiter, Semaphore, TokenBucket, type WaitMetrics } from 'sluice'
import { afterAll, afterEach, describe, expect, it } from 'vitest'
import { companionOf, LANES } from '../packages/node/dist/named-metrics.js'
import { NativeSharedWords } from '../packages/node/dist/native.js'
import { fixture } from './helpers.js'
import { killChildren, segmentDir, spawnNode, type Child } from './named-support.js'

const { dir, remove } = segmentDir()
afterEach(killChildren)
afterAll(remove)

function metricsChild(role: string, name: string, arg = ''): Child {
  return spawnNode([fixture('named-metrics-child.mjs').pathname, role, dir, name, arg])
}

/** Polls `read` until `done` holds (at most 5 s); returns the last value. */
async function until<T>(read: () => T, done: (value: T) => boolean): Promise<T> {
  const deadline = performance.now() + 5000
  let value = read()
  while (!done(value) && performance.now() < deadline) {
    await sleep(10)
    value = read()
  }
  return value
}

const counts = ({ acquired, refused, timedOut, aborted }: WaitMetrics) => ({ acquired, refused, timedOut, aborted })

describe('counts of every process', () => {
  it('3 processes acquiring, refused and timing out on one Semaphore.open: every process reports the sum', async () => {
    const name = 'm-sem'
    const semaphore = Semaphore.open(name, { permits: 2, dir })
    const held = [await semaphore.acquire(), await semaphore.acquire()]
    const children = [0, 1, 2].map(() => metricsChild('semaphore', name, '4'))
    await Promise.all(children.map((c) => c.line('phase1')))
    // Every child's first phase-2 acquire queues behind the permits held here.
    expect((await until(() => semaphore.metrics(), (m) => m.waiting === 3)).waiting).toBe(3)
    expect(counts(semaphore.metrics())).toEqual({ acquired: 2, refused: 6, timedOut: 3, aborted: 0 })
    for (const permit of held) permit.release()
    const reported = await Promise.all(children.map(async (c) => JSON.parse(await c.line('metrics ')) as WaitMetrics))
    const expected = { acquired: 2 + 3 * 4, refused: 6, timedOut: 3, aborted: 0 }
    for (const m of reported) expect(counts(m)).toEqual(expected)
    const here = await until(() => semaphore.metrics(), (m) => m.acquired === expected.acquired)
    expect(counts(here)).toEqual(expected)
    expect(here.waiting).toBe(0)
    // 12 queued waits were timed: the histogram saw them.
    expect(here.waitTime.max).toBeGreaterThan(0)
    expect(await Promise.all(children.map((c) => c.exited))).toEqual([0, 0, 0])
  })

  it('3 processes taking, refused and timing out on one RateLimiter.open: every process reports the sum', async () => {
    const name = 'm-lim'
    const limiter = RateLimiter.open(name, { capacity: 3, refillPerSecond: 0.01, dir })
    const children = [0, 1, 2].map((i) => metricsChild('limiter', name, String(i)))
    const reported = await Promise.all(children.map(async (c) => JSON.parse(await c.line('metrics ')) as WaitMetrics))
    const expected = { acquired: 9, refused: 6, timedOut: 3, aborted: 0 }
    for (const m of reported) expect(counts(m)).toEqual(expected)
    expect(counts(limiter.metrics())).toEqual(expected)
    expect(limiter.metrics().waiting).toBe(0)
    expect(await Promise.all(children.map((c) => c.exited))).toEqual([0, 0, 0])
  })

  it('the counts of a process that exited stay counted', async () => {
    const name = 'm-exit'
    const bucket = TokenBucket.open(name, { capacity: 2, refillPerSecond: 0.01, dir })
    expect(bucket.tryTake()).toBe(true)
    const child = spawnNode([
      '--input-type=module',
      '-e',
      `import { TokenBucket } from 'sluice'
       const b = TokenBucket.open(${JSON.stringify(name)}, { capacity: 2, refillPerSecond: 0.01, dir: ${JSON.stringify(dir)} })
       b.tryTake(); b.tryTake(); b.tryTake()`,
    ])
    expect(await child.exited).toBe(0)
    expect(counts(bucket.metrics())).toEqual({ acquired: 2, refused: 2, timedOut: 0, aborted: 0 })
  })
})

describe('a process killed while waiting', () => {
  it('Semaphore.open: waiting goes back to 0 once the dead process is reaped; its counts stay', async () => {
    const name = 'm-kill-sem'
    const semaphore = Semaphore.open(name, { permits: 1, dir })
    const permit = await semaphore.acquire()
    const child = metricsChild('semaphore-wait', name)
    await child.line('waiting')
    expect((await until(() => semaphore.metrics(), (m) => m.waiting === 1)).waiting).toBe(1)
    child.process.kill('SIGKILL')
    expect(await child.exited).toBe('SIGKILL')
    // metrics() sweeps (at most every 50 ms machine-wide): nothing else here drives a poll.
    const after = await until(() => semaphore.metrics(), (m) => m.waiting === 0)
    expect(after.waiting).toBe(0)
    expect(counts(after)).toEqual({ acquired: 1, refused: 1, timedOut: 0, aborted: 0 })
    permit.release()
  })

  it('RateLimiter.open: waiting drops the dead process at once; its counts stay', async () => {
    const name = 'm-kill-lim'
    const limiter = RateLimiter.open(name, { capacity: 1, refillPerSecond: 0.01, dir })
    const child = metricsChild('limiter-wait', name, 'k1')
    await child.line('waiting')
    expect(limiter.metrics().waiting).toBe(1)
    child.process.kill('SIGKILL')
    expect(await child.exited).toBe('SIGKILL')
    // The kernel drops a dead process's OFD lock as it dies: no sweep needed.
    const after = limiter.metrics()
    expect(after.waiting).toBe(0)
    expect(counts(after)).toEqual({ acquired: 1, refused: 0, timedOut: 0, aborted: 0 })
    // A new process in the dead one's lane starts from 0, not from its gauge.
    const next = metricsChild('limiter-wait', name, 'k2')
    await next.line('waiting')
    expect(limiter.metrics().waiting).toBe(1)
    next.process.kill('SIGKILL')
    await next.exited
    expect(limiter.metrics().waiting).toBe(0)
  })
})

describe('unlink', () => {
  it('unlink of the primitive unlinks its counters: a new one of the name starts from 0', async () => {
    const file = (name: string) => join(dir, `${name}.m`)
    const semaphore = Semaphore.open('m-unlink-s', { permits: 1, dir })
    ;(await semaphore.acquire()).release()
    expect(semaphore.tryAcquire()).not.toBeNull()
    const limiter = RateLimiter.open('m-unlink-l', { capacity: 1, refillPerSecond: 1, dir })
    limiter.tryTake('k')
    const bucket = TokenBucket.open('m-unlink-b', { capacity: 1, refillPerSecond: 1, dir })
    bucket.tryTake()
    for (const name of ['m-unlink-s', 'm-unlink-l', 'm-unlink-b']) expect(existsSync(file(name))).toBe(true)
    expect(Semaphore.unlink('m-unlink-s', { dir })).toBe(true)
    expect(RateLimiter.unlink('m-unlink-l', { dir })).toBe(true)
    expect(TokenBucket.unlink('m-unlink-b', { dir })).toBe(true)
    for (const name of ['m-unlink-s', 'm-unlink-l', 'm-unlink-b']) expect(existsSync(file(name))).toBe(false)
    const zero = { acquired: 0, refused: 0, timedOut: 0, aborted: 0 }
    expect(counts(Semaphore.open('m-unlink-s', { permits: 1, dir }).metrics())).toEqual(zero)
    expect(counts(RateLimiter.open('m-unlink-l', { capacity: 1, refillPerSecond: 1, dir }).metrics())).toEqual(zero)
    expect(counts(TokenBucket.open('m-unlink-b', { capacity: 1, refillPerSecond: 1, dir }).metrics())).toEqual(zero)
  })
})

describe('a damaged block', () => {
  function randomBytes(seed: number, into: Uint8Array): void {
    let a = seed >>> 0
    for (let i = 0; i < into.length; i++) {
      a = (Math.imul(a ^ (a >>> 15), 0x2c1b3c6d) + 0x6d2b79f5) >>> 0
      into[i] = a & 0xff
    }
  }

  /** Every number of a snapshot is finite and not negative. */
  function expectSane(m: WaitMetrics, seed: number): void {
    const numbers = { ...counts(m), waiting: m.waiting, ...m.waitTime }
    for (const [field, value] of Object.entries(numbers)) {
      expect(Number.isFinite(value) && value >= 0, `seed ${seed}: ${field} is ${value}`).toBe(true)
    }
  }

  it('random bytes in the counters never make metrics() throw nor report NaN or negative counts (100 seeds)', async () => {
    const semaphore = Semaphore.open('m-dmg-s', { permits: 2, dir })
    const limiter = RateLimiter.open('m-dmg-l', { capacity: 2, refillPerSecond: 1, dir })
    // White-box: second views of the two companion blocks (a named semaphore has 256 owner slots).
    const view = ({ name, bytes, params }: ReturnType<typeof companionOf>) =>
      new Uint8Array(NativeSharedWords.open(name, bytes, params, dir).buffer())
    const blocks = [view(companionOf('m-dmg-s', 256, 0)), view(companionOf('m-dmg-l', 0, LANES))]
    for (let seed = 1; seed <= 100; seed++) {
      randomBytes(seed * 7919, blocks[0]!)
      randomBytes(seed * 104_729, blocks[1]!)
      expectSane(semaphore.metrics(), seed)
      expectSane(limiter.metrics(), seed)
      // The primitives themselves do not read the counters: they keep working.
      const permit = await semaphore.acquire({ timeout: 1000 })
      permit.release()
      limiter.tryTake('k')
    }
    // Zeroed again, the counts start over and add up exactly.
    for (const block of blocks) block.fill(0)
    ;(await semaphore.acquire()).release()
    expect(counts(semaphore.metrics())).toEqual({ acquired: 1, refused: 0, timedOut: 0, aborted: 0 })
  })
})
