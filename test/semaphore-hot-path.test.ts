// What the hot paths' shortcuts must keep: the inline checks refuse what
// the full ones did, the release checks of a semaphore kept in JavaScript
// still throw, `fn` runs as `fn()`, and the counts made with plain adds
// while the semaphore was this thread's alone survive its move.
import fc from 'fast-check'
import { describe, expect, it } from 'vitest'
import { Mutex, Semaphore } from 'sluice'
import pLimit from 'sluice/compat/p-limit'
import { LocalSemaphore, type LocalWait } from '../packages/node/dist/local-semaphore.js'
import { DONE, QUEUED } from '../packages/node/dist/native.js'

const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms))

describe('Semaphore hot paths', () => {
  it('tryAcquire refuses a weight that is not an integer without calling its valueOf', () => {
    const sem = new Semaphore(4)
    let called = 0
    const weight = {
      valueOf(): number {
        called++
        return 1
      },
    }
    expect(() => sem.tryAcquire(weight as unknown as number)).toThrow(TypeError)
    expect(() => sem.tryAcquire(1.5)).toThrow(RangeError)
    expect(() => sem.tryAcquire(Number.NaN)).toThrow(RangeError)
    expect(() => sem.tryAcquire(0)).toThrow(/weight must be an integer between 1 and 4/)
    expect(called).toBe(0)
    expect(sem.metrics().refused).toBe(0)
  })

  it('tryAcquire reads the capacity anew for a weight above the cached one (after addPermits)', () => {
    const sem = new Semaphore(1)
    sem.addPermits(2)
    const permit = sem.tryAcquire(3)
    expect(permit?.weight).toBe(3)
    permit!.release()
    expect(sem.available).toBe(3)
  })

  it('acquire() without options counts the acquisition and grants in FIFO order behind a queued wait', async () => {
    const sem = new Semaphore(1)
    const first = await sem.acquire()
    const order: string[] = []
    const queued = sem.acquire({ priority: 0 }).then((permit) => {
      order.push('queued')
      return permit
    })
    // A free permit would not jump the queue: nothing is free, so it queues behind.
    const plain = sem.acquire().then((permit) => {
      order.push('plain')
      return permit
    })
    first.release()
    ;(await queued).release()
    ;(await plain).release()
    expect(order).toEqual(['queued', 'plain'])
    expect(sem.metrics().acquired).toBe(3)
  })

  it('acquire() without options rejects on a closed semaphore with a ClosedError', async () => {
    const sem = new Semaphore(2)
    sem.close('bye')
    await expect(sem.acquire()).rejects.toMatchObject({ name: 'ClosedError' })
  })

  it('run calls fn with no this, as fn() would', async () => {
    const sem = new Semaphore(1)
    const seen = await sem.run(function (this: unknown) {
      return this
    })
    expect(seen).toBeUndefined()
  })

  it('compat p-limit calls fn with no this, with and without arguments', async () => {
    const limit = pLimit(1)
    const noArgs = await limit(function (this: unknown) {
      return [this]
    })
    const withArgs = await limit(
      function (this: unknown, a: number, b: string) {
        return [this, a, b]
      },
      1,
      'two',
    )
    expect(noArgs).toEqual([undefined])
    expect(withArgs).toEqual([undefined, 1, 'two'])
  })

  it('Mutex lock and runExclusive reject bad options instead of throwing', async () => {
    const mutex = new Mutex()
    const locking = mutex.lock(7 as never)
    expect(locking).toBeInstanceOf(Promise)
    await expect(locking).rejects.toThrow(TypeError)
    const running = mutex.runExclusive(() => 1, 'x' as never)
    await expect(running).rejects.toThrow(TypeError)
    expect(await mutex.runExclusive(() => 2)).toBe(2)
    const guard = await mutex.lock()
    expect(mutex.isLocked).toBe(true)
    guard.release()
    expect(mutex.isLocked).toBe(false)
  })

  it('the wait times counted while kept in JavaScript survive the move to native memory, and counting goes on there', async () => {
    const sem = new Semaphore(1)
    const held = await sem.acquire()
    const waiting = sem.acquire()
    await sleep(5)
    held.release()
    ;(await waiting).release()
    const local = sem.metrics()
    expect(local.acquired).toBe(2)
    expect(local.waitTime.max).toBeGreaterThanOrEqual(4)

    void sem.handle // moves it
    const moved = sem.metrics()
    expect(moved.acquired).toBe(2)
    expect(moved.waitTime).toEqual(local.waitTime)

    const again = await sem.acquire()
    const queued = sem.acquire({ timeout: 1 })
    await expect(queued).rejects.toMatchObject({ name: 'TimeoutError' })
    const late = sem.acquire()
    again.release()
    ;(await late).release()
    const shared = sem.metrics()
    expect(shared.acquired).toBe(4)
    expect(shared.timedOut).toBe(1)
    expect(shared.waitTime.max).toBeGreaterThanOrEqual(local.waitTime.max)
  })
})

describe('LocalSemaphore.release', () => {
  it('refuses more permits than this thread holds with a RangeError, and changes nothing', () => {
    const local = new LocalSemaphore(2)
    expect(() => local.release(1)).toThrow(new RangeError('cannot release 1 permits: this thread holds 0'))
    local.tryAcquire(2)
    expect(() => local.release(3)).toThrow(new RangeError('cannot release 3 permits: this thread holds 2'))
    expect([local.held, local.available]).toEqual([2, 0])
    local.release(2)
    expect([local.held, local.available]).toEqual([0, 2])
  })

  it('frees permits nobody holds only up to the capacity, counting those this thread holds', () => {
    // `release` checks only what is held: it relies on free + reserved + held
    // never exceeding the capacity, which is what `releaseUnowned` keeps.
    const local = new LocalSemaphore(3, Number.POSITIVE_INFINITY, 1) // 1 free, 2 held by nobody
    local.tryAcquire(1)
    local.releaseUnowned(1)
    expect([local.held, local.available]).toEqual([1, 1])
    expect(() => local.releaseUnowned(2)).toThrow('releasing 2 permits would exceed the capacity of 3')
    expect([local.held, local.available]).toEqual([1, 1])
    local.releaseUnowned(1)
    local.release(1)
    expect([local.held, local.available]).toEqual([0, 3])
  })

})

describe('LocalSemaphore counts', () => {
  // `release` checks only what this thread holds, and `tryAcquire` only
  // `available`: both rest on these invariants, checked after every step of
  // random sequences that include weights, priorities, cancellation, unowned
  // releases, added and forgotten permits, and close.
  type Step =
    | { op: 'tryAcquire' | 'acquire' | 'releaseUnowned' | 'addPermits' | 'forgetPermits'; n: number; priority: number }
    | { op: 'release' | 'forgetHeld' | 'cancel'; pick: number }
    | { op: 'close' }
  const weight = fc.integer({ min: 1, max: 4 })
  const step: fc.Arbitrary<Step> = fc.oneof(
    { arbitrary: fc.record({ op: fc.constantFrom('tryAcquire', 'acquire', 'releaseUnowned', 'addPermits', 'forgetPermits'), n: weight, priority: fc.integer({ min: -1, max: 1 }) }), weight: 10 },
    { arbitrary: fc.record({ op: fc.constantFrom('release', 'forgetHeld', 'cancel'), pick: fc.nat() }), weight: 10 },
    { arbitrary: fc.constant({ op: 'close' as const }), weight: 1 },
  )

  it('available, reserved and held never exceed the capacity, and nothing is free while anyone waits or is owed', () => {
    fc.assert(
      fc.property(fc.integer({ min: 1, max: 6 }), fc.integer({ min: -3, max: 6 }), fc.array(step, { maxLength: 60 }), (capacity, value, steps) => {
        const local = new LocalSemaphore(capacity, Number.POSITIVE_INFINITY, Math.min(Math.max(value, 0), capacity), Math.max(-value, 0))
        const held: number[] = [] // weights this thread holds, one entry per grant
        const queued: LocalWait[] = []
        const waitOf = (n: number, priority: number): LocalWait => {
          const wait: LocalWait = {
            weight: n,
            key: priority,
            prev: undefined,
            next: undefined,
            onGrant: () => {
              queued.splice(queued.indexOf(wait), 1)
              held.push(n)
            },
            onWithdrawn: () => queued.splice(queued.indexOf(wait), 1),
            onRefused: () => queued.splice(queued.indexOf(wait), 1),
          }
          return wait
        }
        for (const s of steps) {
          if (s.op === 'tryAcquire') {
            if (local.tryAcquire(s.n) === DONE) held.push(s.n)
          } else if (s.op === 'acquire') {
            const outcome = local.acquire(s.n, s.priority)
            if (outcome === DONE) held.push(s.n)
            else if (outcome === QUEUED) {
              const wait = waitOf(s.n, s.priority)
              queued.push(wait)
              local.push(wait)
            }
          } else if (s.op === 'releaseUnowned') {
            try {
              local.releaseUnowned(s.n)
            } catch (error) {
              expect((error as Error).message).toMatch(/would exceed the capacity/)
            }
          } else if (s.op === 'addPermits') {
            if (local.capacity + s.n <= 12) local.addPermits(s.n)
          } else if (s.op === 'forgetPermits') {
            local.forgetPermits(s.n)
          } else if (s.op === 'close') {
            local.close()
          } else if (s.op === 'cancel') {
            const wait = queued[s.pick % Math.max(queued.length, 1)]
            if (wait !== undefined && local.remove(wait)) {
              queued.splice(queued.indexOf(wait), 1)
              local.releaseLocked(0)
            }
          } else if ((s.op === 'release' || s.op === 'forgetHeld') && held.length > 0) {
            const [n] = held.splice(s.pick % held.length, 1)
            if (s.op === 'release') local.release(n!)
            else local.forgetHeld(n!)
          }
          expect(local.available + local.reserved + local.held).toBeLessThanOrEqual(local.capacity)
          expect(Math.min(local.available, local.reserved, local.held, local.owed)).toBeGreaterThanOrEqual(0)
          expect(local.held).toBe(held.reduce((sum, n) => sum + n, 0))
          expect(local.waiting).toBe(queued.length)
          if (local.waiting > 0 || local.owed > 0) expect(local.available).toBe(0)
        }
      }),
      { numRuns: 500 },
    )
  })
})
