import { describe, expect, it } from 'vitest'
import { Semaphore } from 'sluice'
import { nextMessage, runWorker } from './helpers.js'

describe('a semaphore whose capacity shrinks', () => {
  it('acquire above a capacity shrunk by forgetPermits rejects instead of throwing', async () => {
    const sem = new Semaphore(5)
    expect(sem.forgetPermits(3)).toBe(3)
    let promise: Promise<unknown> | undefined
    expect(() => (promise = sem.acquire({ weight: 4 }))).not.toThrow()
    await expect(promise).rejects.toThrow(new RangeError('options.weight must be an integer between 1 and 2, got 4'))
    expect(sem.waiting).toBe(0)
    expect(sem.available).toBe(2)
  })

  it('acquire above a capacity shrunk by permit.forget() rejects instead of throwing', async () => {
    const sem = new Semaphore(3)
    const permit = sem.tryAcquire(2)!
    permit.forget()
    let promise: Promise<unknown> | undefined
    expect(() => (promise = sem.acquire({ weight: 3 }))).not.toThrow()
    await expect(promise).rejects.toThrow(new RangeError('options.weight must be an integer between 1 and 1, got 3'))
  })

  it('tryAcquire above a shrunk capacity throws a RangeError, as for any weight above the capacity', () => {
    const sem = new Semaphore(4)
    sem.forgetPermits(2)
    expect(() => sem.tryAcquire(3)).toThrow(new RangeError('weight must be an integer between 1 and 2, got 3'))
    // While the permits are all held too: not a plain `null`.
    const held = sem.tryAcquire(2)!
    expect(() => sem.tryAcquire(4)).toThrow(RangeError)
    expect(sem.tryAcquire(1)).toBeNull()
    held.release()
  })

  it('a queued wait heavier than the capacity that permit.forget() leaves rejects with a RangeError naming options.weight', async () => {
    const sem = new Semaphore(3)
    const a = sem.tryAcquire(1)!
    const b = sem.tryAcquire(2)!
    const heavy = sem.acquire({ weight: 3 })
    const light = sem.acquire({ weight: 1 })
    expect(sem.waiting).toBe(2)
    a.forget() // capacity 2: the wait for 3 can never end
    await expect(heavy).rejects.toThrow(
      new RangeError('options.weight 3 exceeds the capacity, which fell to 2 while the wait was queued'),
    )
    expect(sem.waiting).toBe(1)
    b.release() // the light wait is next in line and served
    const permit = await light
    expect(permit.weight).toBe(1)
    permit.release()
    expect(sem.available).toBe(2)
  })

  it('the permits set aside for a refused head go on to the next waiter', async () => {
    const sem = new Semaphore(4)
    const held = [sem.tryAcquire(1)!, sem.tryAcquire(1)!, sem.tryAcquire(2)!]
    const heavy = sem.acquire({ weight: 4, timeout: 5_000 })
    held[0]!.release() // set aside for the head, which needs 3 more
    const next = sem.acquire({ weight: 2 })
    held[1]!.forget() // capacity 3: the head is refused, its permit goes to `next`
    await expect(heavy).rejects.toThrow(RangeError)
    held[2]!.release()
    const permit = await next
    expect(sem.available).toBe(1)
    permit.release()
    expect(sem.available).toBe(3)
    expect(sem.capacity).toBe(3)
  })

  it('a refused wait with a timeout and a signal rejects with the RangeError, not with them later', async () => {
    const sem = new Semaphore(3)
    const a = sem.tryAcquire(1)!
    const b = sem.tryAcquire(2)!
    const controller = new AbortController()
    const heavy = sem.acquire({ weight: 3, timeout: 30, signal: controller.signal }).catch((e: unknown) => e)
    a.forget()
    controller.abort('too late')
    expect(await heavy).toBeInstanceOf(RangeError)
    // Past the timeout: nothing else happens to the permits.
    await new Promise((resolve) => setTimeout(resolve, 60))
    b.release()
    expect(sem.available).toBe(2)
    expect(sem.waiting).toBe(0)
  })

  it('a worker forgetting its permit refuses the main thread\'s wait that no longer fits', async () => {
    const sem = new Semaphore(3)
    const { worker, exited } = runWorker('errors-forget.mjs', { handle: sem.handle, weight: 1 })
    expect(await nextMessage(worker)).toBe('holding')
    const mine = sem.tryAcquire(2)!
    // The rejection may come before the worker's reply: catch it at once.
    const heavy = sem.acquire({ weight: 3 }).catch((e: unknown) => e)
    worker.postMessage('forget')
    expect(await nextMessage(worker)).toBe(2)
    expect(await heavy).toEqual(
      new RangeError('options.weight 3 exceeds the capacity, which fell to 2 while the wait was queued'),
    )
    expect(await exited).toBe(0)
    mine.release()
    expect(sem.available).toBe(2)
    expect(sem.waiting).toBe(0)
  })
})
