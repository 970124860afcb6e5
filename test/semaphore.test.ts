import { AsyncLocalStorage } from 'node:async_hooks'
import { describe, expect, it } from 'vitest'
import { Permit, Semaphore } from 'sluice'
import { isSettled } from './helpers.js'

describe('Semaphore', () => {
  it('tryAcquire takes free permits and returns null when there are not enough', () => {
    const sem = new Semaphore(3)
    const two = sem.tryAcquire(2)
    expect(two).toBeInstanceOf(Permit)
    expect(two?.weight).toBe(2)
    expect(sem.available).toBe(1)
    expect(sem.tryAcquire(2)).toBeNull()
    expect(sem.available).toBe(1)
    two?.release()
    expect(sem.available).toBe(3)
    expect(sem.capacity).toBe(3)
  })

  it('acquire resolves at once when permits are free', async () => {
    const sem = new Semaphore(1)
    const permit = await sem.acquire()
    expect(sem.available).toBe(0)
    expect(sem.waiting).toBe(0)
    permit.release()
    expect(sem.available).toBe(1)
  })

  it('acquire waits until a release and hands the permit over directly', async () => {
    const sem = new Semaphore(1)
    const held = sem.tryAcquire()!
    const waiting = sem.acquire()
    expect(sem.waiting).toBe(1)
    expect(await isSettled(waiting)).toBe(false)
    held.release()
    // Handed to the waiter, never visible as free in between.
    expect(sem.available).toBe(0)
    const permit = await waiting
    expect(sem.waiting).toBe(0)
    permit.release()
    expect(sem.available).toBe(1)
  })

  it('serves waiters first come, first served', async () => {
    const sem = new Semaphore(1)
    const held = sem.tryAcquire()!
    const order: number[] = []
    const waits = [0, 1, 2, 3].map((i) =>
      sem.acquire().then((permit) => {
        order.push(i)
        permit.release()
      }),
    )
    held.release()
    await Promise.all(waits)
    expect(order).toEqual([0, 1, 2, 3])
  })

  it('serves higher priorities first, first come first served within a priority', async () => {
    const sem = new Semaphore(1)
    const held = sem.tryAcquire()!
    const order: string[] = []
    const waits = (
      [
        ['low', -1],
        ['a', 0],
        ['high', 3],
        ['b', 0],
        ['high2', 3],
      ] as const
    ).map(([name, priority]) => sem.run(() => void order.push(name), { priority }))
    held.release()
    await Promise.all(waits)
    expect(order).toEqual(['high', 'high2', 'a', 'b', 'low'])
  })

  it('a request that overtakes a weighted head takes the permits set aside for it', async () => {
    const sem = new Semaphore(2)
    const first = sem.tryAcquire()!
    const second = sem.tryAcquire()!
    const heavy = sem.acquire({ weight: 2 })
    second.release() // set aside for the heavy head: not available
    expect(sem.available).toBe(0)
    expect(sem.tryAcquire()).toBeNull()
    const urgent = await sem.acquire({ priority: 1 })
    expect(await isSettled(heavy)).toBe(false)
    urgent.release()
    first.release()
    ;(await heavy).release()
    expect(sem.available).toBe(2)
  })

  it.each([0.5, 2 ** 31, -(2 ** 31) - 1, Number.NaN])('rejects priority %o with a RangeError', async (priority) => {
    const sem = new Semaphore(1)
    await expect(sem.acquire({ priority })).rejects.toThrow(RangeError)
    await expect(sem.acquire({ priority: '1' as unknown as number })).rejects.toThrow(TypeError)
  })

  it('does not let tryAcquire barge past a queued waiter', async () => {
    const sem = new Semaphore(2)
    const held = sem.tryAcquire(2)!
    const big = sem.acquire({ weight: 2 })
    held.release()
    expect(sem.tryAcquire()).toBeNull()
    ;(await big).release()
    expect(sem.tryAcquire()).not.toBeNull()
  })

  it('does not starve a weighted waiter behind later small requests', async () => {
    const sem = new Semaphore(3)
    const one = sem.tryAcquire(1)!
    const two = sem.tryAcquire(2)!
    const order: string[] = []
    const big = sem.acquire({ weight: 3 }).then((p) => (order.push('big'), p))
    const small = sem.acquire({ weight: 1 }).then((p) => (order.push('small'), p))
    one.release() // one permit free: small could run, but big is ahead
    expect(await isSettled(small)).toBe(false)
    two.release()
    ;(await big).release()
    ;(await small).release()
    expect(order).toEqual(['big', 'small'])
    expect(sem.available).toBe(3)
  })

  it('one release of several permits wakes several waiters', async () => {
    const sem = new Semaphore(3)
    const all = sem.tryAcquire(3)!
    const waits = [sem.acquire(), sem.acquire(), sem.acquire()]
    all.release()
    const permits = await Promise.all(waits)
    expect(sem.available).toBe(0)
    permits.forEach((p) => p.release())
    expect(sem.available).toBe(3)
  })

  it('releasing a permit twice is a no-op and never creates a permit', () => {
    const sem = new Semaphore(2)
    const permit = sem.tryAcquire()!
    permit.release()
    expect(permit.released).toBe(true)
    permit.release()
    permit[Symbol.dispose]()
    expect(sem.available).toBe(2)
    expect(sem.tryAcquire(2)).not.toBeNull()
    expect(sem.tryAcquire()).toBeNull()
  })

  it('releases the permit when a `using` block ends', async () => {
    const sem = new Semaphore(1)
    {
      using permit = await sem.acquire()
      expect(permit.released).toBe(false)
      expect(sem.available).toBe(0)
    }
    expect(sem.available).toBe(1)
  })

  it('run releases the permits whether fn resolves or throws', async () => {
    const sem = new Semaphore(2)
    await expect(sem.run(() => sem.available, { weight: 2 })).resolves.toBe(0)
    expect(sem.available).toBe(2)
    await expect(
      sem.run(async () => {
        throw new Error('boom')
      }),
    ).rejects.toThrow('boom')
    expect(sem.available).toBe(2)
  })

  it('run releases the permits when fn throws synchronously, returns a plain object or a thenable', async () => {
    const sem = new Semaphore(1)
    const boom = new Error('boom')
    await expect(
      sem.run(() => {
        throw boom
      }),
    ).rejects.toBe(boom)
    expect(sem.available).toBe(1)
    const value = { a: 1 }
    await expect(sem.run(() => value)).resolves.toBe(value)
    expect(sem.available).toBe(1)
    let finish!: (n: number) => void
    const thenable = {
      then(resolve: (n: number) => void): void {
        finish = resolve
      },
    }
    const running = sem.run(() => thenable as unknown as PromiseLike<number>)
    await new Promise((resolve) => setImmediate(resolve))
    expect(sem.available).toBe(0)
    finish(7)
    await expect(running).resolves.toBe(7)
    expect(sem.available).toBe(1)
  })

  it('runs of one permit and of several, on two semaphores, each give back to their own semaphore as their promise settles', async () => {
    // Runs of one permit share their semaphore's end reactions: they must not
    // reach another semaphore's, nor serve a run of another weight.
    const first = new Semaphore(3)
    const second = new Semaphore(3)
    const finishers: (() => void)[] = []
    const task = (): Promise<void> => new Promise((resolve) => finishers.push(resolve))
    const runs = [first.run(task), second.run(task), first.run(task, { weight: 2 }), second.run(task)]
    await new Promise((resolve) => setImmediate(resolve))
    expect([first.available, second.available]).toEqual([0, 1])
    finishers[0]!() // first's run of one
    await new Promise((resolve) => setImmediate(resolve))
    expect([first.available, second.available]).toEqual([1, 1])
    finishers[2]!() // first's run of two
    await new Promise((resolve) => setImmediate(resolve))
    expect([first.available, second.available]).toEqual([3, 1])
    finishers[1]!()
    finishers[3]!()
    await Promise.all(runs)
    expect([first.available, second.available]).toEqual([3, 3])
  })

  it('run calls fn asynchronously, in the async context of its caller, whether it waited or not', async () => {
    const sem = new Semaphore(1)
    const context = new AsyncLocalStorage<string>()
    const seen: (string | undefined)[] = []
    const calls: string[] = []
    const held = sem.tryAcquire()!
    const queued = context.run('queued', () => sem.run(() => void seen.push(context.getStore())))
    held.release() // grants the queued run in this (storeless) context
    expect(seen).toEqual([])
    const fast = context.run('fast', () =>
      sem.run(() => {
        calls.push('fn')
        seen.push(context.getStore())
      }),
    )
    calls.push('after run')
    await Promise.all([queued, fast])
    expect(calls).toEqual(['after run', 'fn'])
    expect(seen).toEqual(['queued', 'fast'])
  })

  it('limits concurrency of many async tasks to the permit count', async () => {
    const sem = new Semaphore(4)
    let running = 0
    let most = 0
    await Promise.all(
      Array.from({ length: 200 }, (_, i) =>
        sem.run(async () => {
          most = Math.max(most, ++running)
          await new Promise((resolve) => (i % 3 ? setImmediate(resolve) : setTimeout(resolve, 1)))
          running--
        }),
      ),
    )
    expect(most).toBe(4)
    expect(sem.available).toBe(4)
    expect(sem.waiting).toBe(0)
  })

  it('gives each semaphore its own permits', () => {
    const a = new Semaphore(1)
    const b = new Semaphore(1)
    a.tryAcquire()
    expect(b.available).toBe(1)
  })
})

describe('Semaphore capacity changes', () => {
  it('addPermits grows the capacity and hands the new permits to waiters first', async () => {
    const sem = new Semaphore(1)
    const held = sem.tryAcquire()!
    const waiting = sem.acquire()
    sem.addPermits(2) // the waiter gets one at once; one stays free
    const permit = await waiting
    expect(sem.capacity).toBe(3)
    expect(sem.available).toBe(1)
    permit.release()
    held.release()
    const all = await sem.acquire({ weight: 3 }) // validated against the new capacity
    all.release()
    expect(sem.available).toBe(3)
  })

  it('forgetPermits removes only free permits; permit.forget removes held ones', () => {
    const sem = new Semaphore(4)
    const permit = sem.tryAcquire(2)!
    expect(sem.forgetPermits(3)).toBe(2)
    expect(sem.capacity).toBe(2)
    permit.forget()
    expect(permit.released).toBe(true)
    expect(sem.capacity).toBe(0) // shrank by the 2 forgotten
    expect(sem.available).toBe(0)
    permit.release() // a no-op after forget
    expect(sem.available).toBe(0)
    expect(() => sem.addPermits(0)).toThrow(RangeError)
  })
})
