import { describe, expect, expectTypeOf, it } from 'vitest'
import {
  type LocalSemaphoreHandle,
  Mutex,
  type Permit,
  RateLimiter,
  Semaphore,
  TimeoutError,
  TokenBucket,
  type Percentiles,
  type RateLimiterMetrics,
  type SemaphoreMetrics,
  type TokenBucketMetrics,
  type WaitMetrics,
} from 'sluice'
import * as semaphoreModule from '../packages/node/dist/semaphore.js'
import { eventually, nextMessage, runWorker } from './helpers.js'

/** The compat adapters' `acquire`, whose `granted` runs inside the release that grants (stripped from the declarations). */
const { internal } = semaphoreModule as unknown as {
  internal: { acquire(semaphore: Semaphore, options: undefined, granted: () => void): Promise<Permit> }
}

const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms))

const noWaits = { mean: 0, p50: 0, p90: 0, p99: 0, max: 0 }

describe('metrics(): Semaphore and Mutex', () => {
  it('starts at zero, with the capacity and nothing in use', () => {
    expect(new Semaphore(3).metrics()).toEqual({
      acquired: 0,
      refused: 0,
      timedOut: 0,
      aborted: 0,
      waiting: 0,
      capacity: 3,
      inUse: 0,
      waitTime: noWaits,
    })
  })

  it('counts acquisitions, refusals, timeouts and aborts, and the permits in use and waits queued now', async () => {
    const sem = new Semaphore(3, { maxWaiters: 1 })
    const a = sem.tryAcquire(2)!
    const b = await sem.acquire()
    expect(sem.tryAcquire()).toBeNull()
    const controller = new AbortController()
    const aborted = sem.acquire({ signal: controller.signal })
    await expect(sem.acquire()).rejects.toMatchObject({ name: 'QueueFullError' })
    expect(sem.metrics()).toMatchObject({ acquired: 2, refused: 2, waiting: 1, inUse: 3 })
    controller.abort(new Error('no'))
    await expect(aborted).rejects.toThrow('no')
    await expect(sem.acquire({ timeout: 5 })).rejects.toBeInstanceOf(TimeoutError)
    await expect(sem.run(() => 1, { timeout: 5 })).rejects.toBeInstanceOf(TimeoutError)
    a.release()
    expect(sem.metrics()).toMatchObject({ acquired: 2, refused: 2, timedOut: 2, aborted: 1, waiting: 0, inUse: 1 })
    b.release()
    expect(sem.metrics().inUse).toBe(0)
  })

  it('counts the main thread and a worker thread together, seen the same from both', async () => {
    const sem = new Semaphore(1)
    const held = sem.tryAcquire()!
    const { worker, exited } = runWorker('metrics-worker.mjs', { kind: 'semaphore', handle: sem.handle })
    try {
      expect(await nextMessage(worker)).toBe('blocked')
      // The worker's third wait is queued now.
      await eventually(() => sem.metrics().waiting === 1)
      held.release()
      const fromWorker = await nextMessage<SemaphoreMetrics>(worker)
      expect(await exited).toBe(0)
      // main: 1 acquired; worker: 1 refused, 1 timed out, 1 waited, 3 at once.
      const expected = { acquired: 5, refused: 1, timedOut: 1, aborted: 0, waiting: 0, inUse: 0, capacity: 1 }
      expect(fromWorker).toMatchObject(expected)
      expect(sem.metrics()).toMatchObject(expected)
      expect(sem.metrics().waitTime.max).toBeGreaterThan(0)
    } finally {
      await worker.terminate()
    }
  })

  it('keeps the counts made before the handle is first read, a wait moved queued with the semaphore included, and adds a worker’s', async () => {
    // Until `handle` is read the semaphore lives in JavaScript and counts there.
    const sem = new Semaphore(1)
    const held = sem.tryAcquire()!
    expect(sem.tryAcquire()).toBeNull()
    await expect(sem.acquire({ timeout: 5 })).rejects.toBeInstanceOf(TimeoutError)
    const moved = sem.acquire()
    const before = { acquired: 1, refused: 1, timedOut: 1, aborted: 0, waiting: 1, inUse: 1, capacity: 1 }
    expect(sem.metrics()).toMatchObject(before)
    const handle = sem.handle // the move
    expect(sem.metrics()).toMatchObject(before)
    await sleep(20)
    held.release()
    ;(await moved).release()
    expect(sem.metrics()).toMatchObject({ acquired: 2, waiting: 0, inUse: 0 })
    // The moved wait was timed from its call, before the move.
    expect(sem.metrics().waitTime.max).toBeGreaterThanOrEqual(15)
    const heldForWorker = sem.tryAcquire()!
    const { worker, exited } = runWorker('metrics-worker.mjs', { kind: 'semaphore', handle })
    try {
      expect(await nextMessage(worker)).toBe('blocked')
      await eventually(() => sem.metrics().waiting === 1)
      heldForWorker.release()
      const fromWorker = await nextMessage<SemaphoreMetrics>(worker)
      expect(await exited).toBe(0)
      // main: 3 acquired, 1 refused, 1 timed out; worker: 1 refused, 1 timed out, 1 waited, 3 at once.
      const expected = { acquired: 7, refused: 2, timedOut: 2, aborted: 0, waiting: 0, inUse: 0, capacity: 1 }
      expect(fromWorker).toMatchObject(expected)
      expect(sem.metrics()).toMatchObject(expected)
    } finally {
      await worker.terminate()
    }
  })

  it('gives wait-time percentiles that match known waits, within the histogram’s factor of 2', async () => {
    const sem = new Semaphore(1)
    // 96 acquisitions at once and 4 that wait about 40 ms each.
    for (let i = 0; i < 96; i++) sem.tryAcquire()!.release()
    for (let i = 0; i < 4; i++) {
      const held = sem.tryAcquire()!
      const waiting = sem.acquire()
      await sleep(40)
      held.release()
      ;(await waiting).release()
    }
    const { acquired, waitTime } = sem.metrics()
    expect(acquired).toBe(104)
    expect(waitTime.p50).toBe(0)
    expect(waitTime.p90).toBe(0)
    // The 99th of 104 is among the 4 waits: its bucket's bound, capped at the max.
    expect(waitTime.p99).toBeGreaterThanOrEqual(35)
    expect(waitTime.p99).toBeLessThanOrEqual(waitTime.max)
    expect(waitTime.max).toBeGreaterThanOrEqual(35)
    expect(waitTime.max).toBeLessThan(2_000)
    // Mean over all 104: about 4 * 40 / 104.
    expect(waitTime.mean).toBeGreaterThan((4 * 35) / 104)
    expect(waitTime.mean).toBeLessThan((4 * 2_000) / 104)
  })

  it.each([
    ['kept in JavaScript', false],
    ['in native memory (its handle read)', true],
  ])('waits granted together keep their own wait times when one grant queues a new wait at once (%s)', async (_, shared) => {
    // A queued wait keeps its queue time as an offset from a per-semaphore
    // epoch, which moves only while no wait is queued; a grant's callback
    // that queues again must not move it under the waits granted with it.
    const sem = new Semaphore(2)
    if (shared) void sem.handle
    const held = sem.tryAcquire(2)!
    let again: Promise<Permit> | undefined
    const first = internal.acquire(sem, undefined, () => {
      again = sem.acquire()
    })
    const second = sem.acquire()
    await sleep(40)
    held.release() // grants both at once; the first's callback queues `again`
    const permits = await Promise.all([first, second])
    for (const permit of permits) permit.release()
    ;(await again!).release()
    const { acquired, waitTime } = sem.metrics()
    expect(acquired).toBe(4)
    // The tryAcquire waited 0 ms, `first` and `second` about 40 ms each, `again` about 0.
    expect(waitTime.mean).toBeGreaterThanOrEqual((2 * 35) / 4)
    expect(waitTime.p90).toBeGreaterThanOrEqual(35)
    expect(waitTime.max).toBeLessThan(2_000)
  })

  it('a Mutex reports its semaphore’s metrics, with 1 in use while locked', async () => {
    const mutex = new Mutex()
    const guard = await mutex.lock()
    expect(mutex.metrics()).toMatchObject({ acquired: 1, inUse: 1, capacity: 1 })
    expect(mutex.tryLock()).toBeNull()
    guard.release()
    expect(mutex.metrics()).toMatchObject({ acquired: 1, refused: 1, inUse: 0 })
  })

  it('a handle made by hand without metrics still attaches, counting for its own thread', () => {
    const sem = new Semaphore(1)
    const { kind, id, doorbells } = sem.handle as LocalSemaphoreHandle
    const other = Semaphore.from({ kind, id, doorbells })
    other.tryAcquire()!.release()
    expect(other.metrics().acquired).toBe(1)
    expect(sem.metrics().acquired).toBe(0)
    expect(() => Semaphore.from({ kind, id, doorbells, metrics: new SharedArrayBuffer(8) })).toThrow(TypeError)
  })
})

describe('metrics(): TokenBucket and RateLimiter', () => {
  it('counts a bucket’s takes and refusals across the main thread and a worker', async () => {
    const bucket = new TokenBucket({ capacity: 5, refillPerSecond: 0.001 })
    expect(bucket.tryTake(2)).toBe(true)
    const { worker, exited } = runWorker('metrics-worker.mjs', { kind: 'bucket', handle: bucket.handle })
    try {
      const fromWorker = await nextMessage<WaitMetrics>(worker)
      expect(await exited).toBe(0)
      // Calls, not tokens: main's one take of 2 and the worker's 3 takes of 1.
      expect(fromWorker).toMatchObject({ acquired: 4, refused: 1 })
      expect(bucket.metrics()).toMatchObject({ acquired: 4, refused: 1, timedOut: 0, aborted: 0, waiting: 0, available: 0 })
    } finally {
      await worker.terminate()
    }
  })

  it('counts a bucket’s waits, aborts and takes refused for their timeout, with the waiting gauge', async () => {
    const fast = new TokenBucket({ capacity: 1, refillPerSecond: 50 })
    await fast.take()
    const waited = fast.take()
    expect(fast.metrics().waiting).toBe(1)
    await waited
    expect(fast.metrics()).toMatchObject({ acquired: 2, waiting: 0 })
    expect(fast.metrics().waitTime.max).toBeGreaterThanOrEqual(10)
    // A token per 1,000 s: the take below waits until aborted, however loaded the machine.
    const slow = new TokenBucket({ capacity: 1, refillPerSecond: 0.001 })
    await slow.take()
    const controller = new AbortController()
    const aborted = slow.take(1, { signal: controller.signal })
    expect(slow.metrics().waiting).toBe(1)
    controller.abort(new Error('stop'))
    await expect(aborted).rejects.toThrow('stop')
    await expect(slow.take(1, { timeout: 10 })).rejects.toBeInstanceOf(TimeoutError)
    expect(slow.metrics()).toMatchObject({ acquired: 1, timedOut: 1, aborted: 1, waiting: 0 })
  })

  it('counts a limiter’s decisions over all keys, across the main thread and a worker, with the keys remembered', async () => {
    const limiter = new RateLimiter({ limit: 3, windowMs: 60_000 })
    expect(limiter.tryTake('other').allowed).toBe(true)
    const { worker, exited } = runWorker('metrics-worker.mjs', { kind: 'limiter', handle: limiter.handle })
    try {
      const fromWorker = await nextMessage<WaitMetrics>(worker)
      expect(await exited).toBe(0)
      expect(fromWorker).toMatchObject({ acquired: 4, refused: 1 })
      expect(limiter.metrics()).toMatchObject({ acquired: 4, refused: 1, keys: 2 })
      limiter.peek('k')
      expect(limiter.metrics()).toMatchObject({ acquired: 4, refused: 1 })
    } finally {
      await worker.terminate()
    }
  })
})

describe('metrics(): types', () => {
  it('has one shape per primitive, each a WaitMetrics with the pool’s Percentiles', () => {
    expectTypeOf(new Semaphore(1).metrics()).toEqualTypeOf<SemaphoreMetrics>()
    expectTypeOf(new Mutex().metrics()).toEqualTypeOf<SemaphoreMetrics>()
    expectTypeOf(new TokenBucket({ capacity: 1, refillPerSecond: 1 }).metrics()).toEqualTypeOf<TokenBucketMetrics>()
    expectTypeOf<RateLimiterMetrics>().toExtend<WaitMetrics>()
    expectTypeOf<WaitMetrics['waitTime']>().toEqualTypeOf<Percentiles>()
    expectTypeOf<RateLimiterMetrics['keys']>().toEqualTypeOf<number>()
  })
})
