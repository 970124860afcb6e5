// async-mutex 0.5's documented behaviours, run against async-mutex itself and
// against sluice/compat/async-mutex: the adapter must behave as what it replaces.
import * as real from 'async-mutex'
import fc from 'fast-check'
import { once } from 'node:events'
import { Worker } from 'node:worker_threads'
import { describe, expect, it } from 'vitest'
import * as compat from 'sluice/compat/async-mutex'

const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms))
const tick = (): Promise<void> => new Promise((resolve) => setImmediate(resolve))

interface Tracked {
  state: 'pending' | 'resolved' | 'rejected'
  value: unknown
}

/** How a promise settled, readable synchronously after a tick. */
function track(promise: Promise<unknown>): Tracked {
  const tracked: Tracked = { state: 'pending', value: undefined }
  promise.then(
    (value) => Object.assign(tracked, { state: 'resolved', value }),
    (error: unknown) => Object.assign(tracked, { state: 'rejected', value: error }),
  )
  return tracked
}

const implementations = [
  ['async-mutex', real],
  ['sluice/compat/async-mutex', compat],
] as unknown as [string, typeof compat][]

describe.each(implementations)('%s', (_, lib) => {
  const { Mutex, Semaphore, withTimeout, tryAcquire, E_CANCELED, E_TIMEOUT, E_ALREADY_LOCKED } = lib

  describe('Semaphore', () => {
    it('an initial value below zero is owed: releases pay it before anyone acquires', async () => {
      const sem = new Semaphore(-2)
      expect([sem.getValue(), sem.isLocked()]).toEqual([-2, true])
      const acquired = track(sem.acquire())
      await tick()
      expect(acquired.state).toBe('pending')
      sem.release(1)
      await tick()
      expect([sem.getValue(), acquired.state]).toEqual([-1, 'pending'])
      sem.release(1)
      await tick()
      expect([sem.getValue(), sem.isLocked(), acquired.state]).toEqual([0, true, 'pending'])
      sem.release(2)
      await tick()
      expect(acquired.state).toBe('resolved')
      expect((acquired.value as [number])[0]).toBe(2)
      expect(sem.getValue()).toBe(1)
    })

    it('waitForUnlock on a semaphore below zero waits until the debt is paid and a permit is free', async () => {
      const sem = new Semaphore(-1)
      const unlocked = track(sem.waitForUnlock())
      sem.release(1)
      await tick()
      expect([sem.getValue(), unlocked.state]).toEqual([0, 'pending'])
      sem.release(1)
      await tick()
      expect([sem.getValue(), unlocked.state]).toEqual([1, 'resolved'])
    })

    it('setValue from below zero sets the value (the debt is forgiven)', async () => {
      const sem = new Semaphore(-3)
      const acquired = track(sem.acquire(2))
      sem.setValue(2)
      await tick()
      expect([acquired.state, sem.getValue()]).toEqual(['resolved', 0])
      expect((acquired.value as [number])[0]).toBe(2)
    })

    it('withTimeout: a semaphore below zero times out until its debt is paid', async () => {
      const sem = withTimeout(new Semaphore(-1), 20)
      expect(sem.getValue()).toBe(-1)
      await expect(sem.acquire()).rejects.toBe(E_TIMEOUT)
      sem.release(2)
      const [value, release] = await sem.acquire()
      expect(value).toBe(1)
      release()
      expect(sem.getValue()).toBe(1)
    })

    it('acquire resolves with [value, release] and limits concurrency', async () => {
      const sem = new Semaphore(2)
      const [value1, release1] = await sem.acquire()
      const [value2, release2] = await sem.acquire()
      expect([value1, value2]).toEqual([2, 1])
      expect(sem.isLocked()).toBe(true)
      let third = false
      const pending = sem.acquire().then(([value, release]) => {
        third = true
        return [value, release] as const
      })
      await tick()
      expect(third).toBe(false)
      release1()
      const [value3, release3] = await pending
      expect(value3).toBe(1)
      release2()
      release3()
      expect(sem.getValue()).toBe(2)
    })

    it('weights: a wait for 2 is served once 2 are free, in order', async () => {
      const sem = new Semaphore(3)
      const [, hold] = await sem.acquire(3)
      const order: string[] = []
      const heavy = sem.acquire(2).then(([, r]) => (order.push('heavy'), r))
      const light = sem.acquire(1).then(([, r]) => (order.push('light'), r))
      await tick()
      expect(order).toEqual([])
      hold()
      const releases = await Promise.all([heavy, light])
      expect(order).toEqual(['heavy', 'light'])
      expect(sem.getValue()).toBe(0)
      for (const r of releases) r()
      expect(sem.getValue()).toBe(3)
    })

    it('a weighted head that cannot be served yet shows the free permits in getValue and blocks smaller later waits', async () => {
      const sem = new Semaphore(2)
      const [, r1] = await sem.acquire()
      const [, r2] = await sem.acquire()
      let small = false
      const big = sem.acquire(2)
      void sem.acquire(1).then(([, r]) => ((small = true), r))
      r1()
      await tick()
      expect(sem.getValue()).toBe(1)
      expect(sem.isLocked()).toBe(false)
      expect(small).toBe(false)
      r2()
      const [, rBig] = await big
      rBig()
      await tick()
      expect(small).toBe(true)
    })

    it('priorities: higher first, FIFO within a priority', async () => {
      const sem = new Semaphore(1)
      const [, hold] = await sem.acquire()
      const order: string[] = []
      const waits = (
        [
          ['a', 0],
          ['b', 1],
          ['c', 0],
          ['d', -1],
          ['e', 1],
        ] as const
      ).map(([name, priority]) =>
        sem.runExclusive(
          async () => {
            order.push(name)
            await tick()
          },
          1,
          priority,
        ),
      )
      hold()
      await Promise.all(waits)
      expect(order).toEqual(['b', 'e', 'a', 'c', 'd'])
    })

    it('a higher priority request is served at once when the value allows, ahead of a blocked weighted head', async () => {
      const sem = new Semaphore(2)
      const [, r1] = await sem.acquire()
      const big = sem.acquire(2)
      const [value, r2] = await sem.acquire(1, 5)
      expect(value).toBe(1)
      expect(sem.getValue()).toBe(0)
      r1()
      r2()
      const [, rBig] = await big
      rBig()
      expect(sem.getValue()).toBe(2)
    })

    it('release and setValue raise the value beyond the initial one, serving waiters', async () => {
      const sem = new Semaphore(0)
      expect(sem.isLocked()).toBe(true)
      const waits = [sem.acquire(), sem.acquire()]
      sem.release(2)
      await Promise.all(waits)
      expect(sem.getValue()).toBe(0)
      sem.setValue(5)
      expect(sem.getValue()).toBe(5)
      sem.release(3)
      expect(sem.getValue()).toBe(8)
      sem.setValue(1)
      expect(sem.getValue()).toBe(1)
    })

    it('runExclusive passes the value, returns the result and releases on throw', async () => {
      const sem = new Semaphore(3)
      expect(await sem.runExclusive((value) => value * 10, 2)).toBe(30)
      await expect(sem.runExclusive(() => Promise.reject(new Error('bad')))).rejects.toThrow('bad')
      expect(sem.getValue()).toBe(3)
    })

    it('cancel rejects queued acquires with E_CANCELED (or the given error); holders keep their permits', async () => {
      const sem = new Semaphore(1)
      const [, release] = await sem.acquire()
      const waits = [sem.acquire(), sem.acquire(1, 3)]
      sem.cancel()
      for (const wait of waits) await expect(wait).rejects.toBe(E_CANCELED)
      expect(sem.isLocked()).toBe(true)
      release()
      expect(sem.getValue()).toBe(1)

      const custom = new Error('custom')
      const other = new Semaphore(0, custom)
      const wait = other.acquire()
      other.cancel()
      await expect(wait).rejects.toBe(custom)
    })

    it('waitForUnlock resolves once the weight could be acquired, without acquiring, and survives cancel', async () => {
      const sem = new Semaphore(2)
      const [, r1] = await sem.acquire(2)
      let unlocked = false
      const waiting = sem.waitForUnlock(2).then(() => (unlocked = true))
      sem.cancel()
      await tick()
      expect(unlocked).toBe(false)
      r1()
      await waiting
      expect(sem.getValue()).toBe(2)
      await sem.waitForUnlock() // free now: resolves at once
    })

    it('waitForUnlock lets queued acquires of its priority go first', async () => {
      const sem = new Semaphore(1)
      const [, hold] = await sem.acquire()
      const events: string[] = []
      const unlock = sem.waitForUnlock().then(() => events.push(`unlock, locked=${sem.isLocked()}`))
      const acquired = sem.acquire().then(([, r]) => (events.push('acquire'), r))
      hold()
      const release = await acquired
      await tick()
      expect(events).toEqual(['acquire'])
      release()
      await unlock
      expect(events).toEqual(['acquire', 'unlock, locked=false'])
    })

    it('a pending waitForUnlock for more than the value does not hold back a smaller acquire of lower priority', async () => {
      const sem = new Semaphore(1)
      const unlock = track(sem.waitForUnlock(2, 1))
      const acquired = track(sem.acquire(1, 0))
      await tick()
      expect(acquired.state).toBe('resolved')
      expect(sem.getValue()).toBe(0)
      const [value, release] = acquired.value as [number, () => void]
      expect(value).toBe(1)
      release()
      await tick()
      expect(sem.getValue()).toBe(1)
      expect(unlock.state).toBe('pending')
      sem.release(1)
      await tick()
      expect(unlock.state).toBe('resolved')
      expect(sem.getValue()).toBe(2)
    })

    it('cancel rejects every queued acquire, even one that the cancelled head gives its permits to', async () => {
      const sem = new Semaphore(1)
      const head = track(sem.acquire(2))
      const behind = track(sem.acquire(1))
      await tick()
      sem.cancel()
      await tick()
      expect([head.state, head.value, behind.state, behind.value]).toEqual(['rejected', E_CANCELED, 'rejected', E_CANCELED])
      expect(sem.getValue()).toBe(1)
      expect(sem.isLocked()).toBe(false)
    })

    it('setValue lowers the value even while a weighted wait is queued, and that wait is served only once the value allows', async () => {
      const sem = new Semaphore(2)
      const wait = track(sem.acquire(3))
      await tick()
      sem.setValue(0)
      expect(sem.getValue()).toBe(0)
      expect(sem.isLocked()).toBe(true)
      sem.release(1)
      await tick()
      expect(wait.state).toBe('pending')
      expect(sem.getValue()).toBe(1)
      sem.release(2)
      await tick()
      expect(wait.state).toBe('resolved')
      expect(sem.getValue()).toBe(0)
    })

    it('release(weight) and the releaser of an acquire each raise the value, the releaser once', async () => {
      const sem = new Semaphore(1)
      const [, release] = await sem.acquire()
      sem.release(1)
      expect(sem.getValue()).toBe(1)
      release()
      expect(sem.getValue()).toBe(2)
      release()
      expect(sem.getValue()).toBe(2)
      const mutex = new Mutex()
      const unlock = await mutex.acquire()
      mutex.release()
      unlock()
      expect(mutex.isLocked()).toBe(false)
    })

    it('a weight of 0 or less throws synchronously', () => {
      const sem = new Semaphore(1)
      expect(() => sem.acquire(0)).toThrow(/invalid weight 0: must be positive/)
      expect(() => sem.release(-1)).toThrow(/invalid weight -1/)
      expect(() => sem.waitForUnlock(0)).toThrow(/invalid weight/)
    })
  })

  describe('Mutex', () => {
    it('serialises runExclusive callbacks in call order', async () => {
      const mutex = new Mutex()
      const log: string[] = []
      await Promise.all(
        ['a', 'b', 'c'].map((name) =>
          mutex.runExclusive(async () => {
            log.push(`${name}+`)
            await sleep(2)
            log.push(`${name}-`)
          }),
        ),
      )
      expect(log).toEqual(['a+', 'a-', 'b+', 'b-', 'c+', 'c-'])
    })

    it('acquire returns a releaser; release() unlocks; isLocked follows', async () => {
      const mutex = new Mutex()
      const release = await mutex.acquire()
      expect(mutex.isLocked()).toBe(true)
      release()
      release() // idempotent
      expect(mutex.isLocked()).toBe(false)
      await mutex.acquire()
      mutex.release()
      expect(mutex.isLocked()).toBe(false)
      mutex.release() // unlocked: does nothing, the next acquire still excludes
      await mutex.acquire()
      expect(mutex.isLocked()).toBe(true)
      mutex.release()
    })

    it('priorities order waiting acquires', async () => {
      const mutex = new Mutex()
      const release = await mutex.acquire()
      const order: number[] = []
      const waits = [0, 2, 1].map((priority) => mutex.runExclusive(() => void order.push(priority), priority))
      release()
      await Promise.all(waits)
      expect(order).toEqual([2, 1, 0])
    })

    it('cancel rejects waiters with E_CANCELED; waitForUnlock resolves after release', async () => {
      const mutex = new Mutex()
      const release = await mutex.acquire()
      const waiting = mutex.acquire()
      const unlocked = mutex.waitForUnlock()
      mutex.cancel()
      await expect(waiting).rejects.toBe(E_CANCELED)
      release()
      await unlocked
      expect(mutex.isLocked()).toBe(false)
    })
  })

  describe('withTimeout and tryAcquire', () => {
    it('withTimeout rejects with E_TIMEOUT when the lock is not granted in time, and the late grant is released', async () => {
      const mutex = new Mutex()
      const timed = withTimeout(mutex, 20)
      const release = await timed.acquire()
      await expect(timed.acquire()).rejects.toBe(E_TIMEOUT)
      release()
      await tick()
      expect(mutex.isLocked()).toBe(false)
    })

    it('withTimeout resolves normally when granted in time, with a custom error otherwise', async () => {
      const sem = new Semaphore(1)
      const timed = withTimeout(sem, 200, new Error('too slow'))
      const [, release] = await timed.acquire()
      const next = timed.acquire()
      setTimeout(release, 5)
      const [value, r] = await next
      expect(value).toBe(1)
      r()
      const [, hold] = await sem.acquire()
      await expect(withTimeout(sem, 5, new Error('too slow')).runExclusive(() => 1)).rejects.toThrow('too slow')
      hold()
    })

    it('withTimeout bounds waitForUnlock too', async () => {
      const mutex = new Mutex()
      const release = await mutex.acquire()
      await expect(withTimeout(mutex, 10).waitForUnlock()).rejects.toBe(E_TIMEOUT)
      release()
    })

    it('tryAcquire succeeds when free and rejects with E_ALREADY_LOCKED (or the given error) otherwise', async () => {
      const mutex = new Mutex()
      const release = await tryAcquire(mutex).acquire()
      await expect(tryAcquire(mutex).acquire()).rejects.toBe(E_ALREADY_LOCKED)
      const custom = new Error('busy')
      await expect(tryAcquire(mutex, custom).runExclusive(() => 1)).rejects.toBe(custom)
      release()
      await tick()
      expect(mutex.isLocked()).toBe(false)
      expect(await tryAcquire(mutex).runExclusive(() => 'ran')).toBe('ran')
    })
  })
})

type Op =
  | { op: 'acquire' | 'waitForUnlock'; weight: number; priority: number }
  | { op: 'release'; weight: number }
  | { op: 'releaser'; index: number }
  | { op: 'setValue'; value: number }
  | { op: 'cancel' }

const opArbitrary: fc.Arbitrary<Op> = fc.oneof(
  fc.record({ op: fc.constantFrom('acquire', 'waitForUnlock'), weight: fc.integer({ min: 1, max: 3 }), priority: fc.integer({ min: -1, max: 1 }) }),
  fc.record({ op: fc.constant('release'), weight: fc.integer({ min: 1, max: 2 }) }),
  fc.record({ op: fc.constant('releaser'), index: fc.nat(7) }),
  fc.record({ op: fc.constant('setValue'), value: fc.integer({ min: 0, max: 4 }) }),
  fc.record({ op: fc.constant('cancel') }),
) as fc.Arbitrary<Op>

/**
 * Runs `ops` on a fresh semaphore of `lib`, one tick after each, and returns
 * what can be observed after each: the value, isLocked, and how each promise
 * so far settled (an acquire's value included only when granted at once: for
 * a wait that queued, it is read when the grant is collected, as documented).
 */
async function observe(lib: typeof compat, initial: number, ops: Op[]): Promise<unknown[]> {
  const sem = new lib.Semaphore(initial)
  const tracked: { kind: string; at: number; tracked: Tracked; immediate: boolean }[] = []
  const releasers: (() => void)[] = []
  const log: unknown[] = []
  for (const [at, step] of ops.entries()) {
    if (step.op === 'acquire') {
      const entry = { kind: 'acquire', at, tracked: track(sem.acquire(step.weight, step.priority)), immediate: false }
      tracked.push(entry)
      await Promise.resolve()
      await Promise.resolve()
      entry.immediate = entry.tracked.state === 'resolved'
    } else if (step.op === 'waitForUnlock') {
      tracked.push({ kind: 'unlock', at, tracked: track(sem.waitForUnlock(step.weight, step.priority)), immediate: false })
    } else if (step.op === 'release') sem.release(step.weight)
    else if (step.op === 'releaser') releasers[step.index % Math.max(1, releasers.length)]?.()
    else if (step.op === 'setValue') sem.setValue(step.value)
    else sem.cancel()
    await tick()
    for (const { kind, tracked: t } of tracked) {
      if (kind === 'acquire' && t.state === 'resolved' && !releasers.includes((t.value as [number, () => void])[1])) {
        releasers.push((t.value as [number, () => void])[1])
      }
    }
    log.push({
      at,
      step,
      value: sem.getValue(),
      locked: sem.isLocked(),
      settled: tracked.map(({ kind, at, tracked: t, immediate }) => ({
        kind,
        at,
        state: t.state,
        ...(t.state === 'rejected' && { canceled: t.value === lib.E_CANCELED }),
        ...(kind === 'acquire' && immediate && { value: (t.value as [number])[0] }),
      })),
    })
  }
  return log
}

describe('side by side with async-mutex', () => {
  it('random sequences of acquire, waitForUnlock, release, releasers, setValue and cancel are observed the same', async () => {
    await fc.assert(
      fc.asyncProperty(fc.integer({ min: -3, max: 3 }), fc.array(opArbitrary, { maxLength: 10 }), async (initial, ops) => {
        const expected = await observe(real as unknown as typeof compat, initial, ops)
        expect(await observe(compat, initial, ops)).toEqual(expected)
      }),
      { numRuns: 300 },
    )
  })
})

describe('sluice/compat/async-mutex specifics', () => {
  it('rejects what async-mutex would accept but sluice cannot represent, with a RangeError naming the field', () => {
    expect(() => new compat.Semaphore(-(2 ** 31))).toThrow(RangeError)
    expect(() => new compat.Semaphore(1.5)).toThrow(/value/)
    const sem = new compat.Semaphore(1)
    expect(() => sem.acquire(1.5)).toThrow(/weight/)
    expect(() => sem.acquire(1, 0.5)).toThrow(/priority/)
    expect(() => sem.acquire(1, 2 ** 30)).toThrow(RangeError)
    expect(() => sem.setValue(-1)).toThrow(/value/)
    expect(() => compat.withTimeout({} as compat.MutexInterface, 1)).toThrow(TypeError)
  })

  it('one mutex across threads: workers and the main thread never overlap, a worker dying while holding it frees it, and waitForUnlock here wakes', async () => {
    const mutex = new compat.Mutex()
    const inside = new Int32Array(new SharedArrayBuffer(8))
    const workers = Array.from(
      { length: 3 },
      () =>
        new Worker(new URL('./fixtures/async-mutex-worker.mjs', import.meta.url), {
          workerData: { handle: mutex.handle, inside, rounds: 200 },
        }),
    )
    const exits = workers.map((worker) => once(worker, 'exit'))
    for (let i = 0; i < 200; i++) {
      await mutex.runExclusive(async () => {
        expect(Atomics.add(inside, 0, 1)).toBe(0)
        await tick()
        Atomics.sub(inside, 0, 1)
      })
    }
    const codes = (await Promise.all(exits)).map(([code]) => code)
    expect(codes).toEqual([0, 0, 0])
    expect(Atomics.load(inside, 1)).toBe(0) // no overlap seen by any worker

    // A worker that takes the lock and is terminated while holding it.
    const holder = new Worker(new URL('./fixtures/async-mutex-worker.mjs', import.meta.url), {
      workerData: { handle: mutex.handle, inside, hold: true },
    })
    const holderExit = once(holder, 'exit')
    await once(holder, 'message')
    expect(mutex.isLocked()).toBe(true)
    const next = withTimeoutOrFail(mutex.acquire(), 5000)
    await holder.terminate()
    await holderExit
    const release = await next
    release()
    expect(mutex.isLocked()).toBe(false)

    // waitForUnlock in this thread wakes when a worker frees the lock.
    const other = new Worker(new URL('./fixtures/async-mutex-worker.mjs', import.meta.url), {
      workerData: { handle: mutex.handle, inside, hold: true },
    })
    const otherExit = once(other, 'exit')
    await once(other, 'message')
    const unlocked = track(mutex.waitForUnlock())
    await tick()
    expect(unlocked.state).toBe('pending')
    await other.terminate()
    await otherExit
    await withTimeoutOrFail(mutex.waitForUnlock(), 5000)
    await tick()
    expect(unlocked.state).toBe('resolved')
    expect(mutex.isLocked()).toBe(false)
  })
})

describe('sluice/compat/async-mutex across threads', () => {
  it('a semaphore that starts below zero owes the same permits in every thread', async () => {
    const sem = new compat.Semaphore(-2)
    const worker = new Worker(new URL('./fixtures/compat-async-mutex-owed-worker.mjs', import.meta.url), {
      workerData: { handle: sem.handle },
    })
    const exit = once(worker, 'exit')
    const messages: unknown[] = []
    worker.on('message', (message) => messages.push(message))
    const next = async (): Promise<unknown> => {
      for (let i = 0; i < 500 && messages.length === 0; i++) await sleep(10)
      return messages.shift()
    }
    // The worker sees -2, pays one of it, and queues an acquire.
    expect(await next()).toEqual({ value: -2, locked: true })
    expect(await next()).toEqual({ value: -1 })
    expect(sem.getValue()).toBe(-1)
    for (let i = 0; i < 5; i++) await tick()
    expect(messages).toEqual([])
    // Here: one permit pays the rest of the debt, the other reaches the worker.
    sem.release(2)
    expect(await next()).toEqual({ acquired: 1 })
    expect((await exit)[0]).toBe(0)
    expect(sem.getValue()).toBe(1)
  })
})

function withTimeoutOrFail<T>(promise: Promise<T>, ms: number): Promise<T> {
  return Promise.race([promise, sleep(ms).then(() => Promise.reject(new Error(`not settled in ${ms} ms`)))])
}
