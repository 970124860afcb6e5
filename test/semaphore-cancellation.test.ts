import { getEventListeners } from 'node:events'
import { describe, expect, it } from 'vitest'
import { Semaphore, TimeoutError } from 'sluice'
import { isSettled } from './helpers.js'

describe('Semaphore cancellation', () => {
  it('acquire rejects with the signal reason when the signal is already aborted', async () => {
    const sem = new Semaphore(1)
    const reason = new Error('stop')
    await expect(sem.acquire({ signal: AbortSignal.abort(reason) })).rejects.toBe(reason)
    expect(sem.available).toBe(1)
    expect(sem.waiting).toBe(0)
  })

  it('an already-aborted signal wins even when permits are free', async () => {
    const sem = new Semaphore(1)
    await expect(sem.acquire({ signal: AbortSignal.abort() })).rejects.toMatchObject({ name: 'AbortError' })
    expect(sem.available).toBe(1)
  })

  it('abort while queued removes the waiter, consumes nothing, and rejects with the reason', async () => {
    const sem = new Semaphore(1)
    const held = sem.tryAcquire()!
    const controller = new AbortController()
    const waiting = sem.acquire({ signal: controller.signal })
    expect(sem.waiting).toBe(1)
    const reason = new Error('cancelled')
    controller.abort(reason)
    await expect(waiting).rejects.toBe(reason)
    expect(sem.waiting).toBe(0)
    held.release()
    expect(sem.available).toBe(1)
    expect(getEventListeners(controller.signal, 'abort')).toHaveLength(0)
  })

  it('removes its abort listener once granted', async () => {
    const sem = new Semaphore(1)
    const held = sem.tryAcquire()!
    const controller = new AbortController()
    const waiting = sem.acquire({ signal: controller.signal })
    expect(getEventListeners(controller.signal, 'abort')).toHaveLength(1)
    held.release()
    const permit = await waiting
    expect(getEventListeners(controller.signal, 'abort')).toHaveLength(0)
    controller.abort() // too late to matter
    expect(permit.released).toBe(false)
    permit.release()
    expect(sem.available).toBe(1)
  })

  it('many waits on one signal share one listener; aborting it rejects them all, in order', async () => {
    const sem = new Semaphore(1)
    const held = sem.tryAcquire()!
    const shared = new AbortController()
    const other = new AbortController()
    const waits = Array.from({ length: 20_000 }, (_, i) => sem.acquire({ signal: (i % 1000 === 0 ? other : shared).signal }))
    // One listener per signal, however many waits: Node scans listeners on
    // every add/remove, so one each would make queueing quadratic.
    expect(getEventListeners(shared.signal, 'abort')).toHaveLength(1)
    expect(getEventListeners(other.signal, 'abort')).toHaveLength(1)
    const order: number[] = []
    const settled = waits.map((wait, i) =>
      wait.then(
        (permit) => (permit.release(), 'granted'),
        (reason: unknown) => (order.push(i), reason),
      ),
    )
    const reason = new Error('request gone')
    shared.abort(reason)
    expect(sem.waiting).toBe(20)
    expect(getEventListeners(shared.signal, 'abort')).toHaveLength(0)
    held.release() // the 20 waits on the other signal are served
    const outcomes = await Promise.all(settled)
    expect(outcomes.filter((o) => o === reason)).toHaveLength(19_980)
    expect(outcomes.filter((o) => o === 'granted')).toHaveLength(20)
    expect(order).toEqual([...order].sort((a, b) => a - b))
    expect(getEventListeners(other.signal, 'abort')).toHaveLength(0)
    expect(sem.available).toBe(1)
  })

  it('timeout rejects with a TimeoutError and removes the waiter', async () => {
    const sem = new Semaphore(1)
    const held = sem.tryAcquire()!
    const error = await sem.acquire({ timeout: 20 }).catch((e: unknown) => e)
    expect(error).toBeInstanceOf(TimeoutError)
    expect(error).toMatchObject({ code: 'ERR_SLUICE_TIMEOUT', name: 'TimeoutError' })
    expect(sem.waiting).toBe(0)
    held.release()
    expect(sem.available).toBe(1)
  })

  it('a timeout that never fires leaves no timer behind', async () => {
    const timers = (): number =>
      process.getActiveResourcesInfo().filter((resource) => resource === 'Timeout').length
    const settle = (): Promise<void> => new Promise((resolve) => setTimeout(resolve, 150))
    await settle() // lets the doorbell poll of earlier waits clear itself
    const before = timers()
    const sem = new Semaphore(1)
    const held = sem.tryAcquire()!
    const waiting = sem.acquire({ timeout: 60_000 })
    expect(timers()).toBeGreaterThan(before)
    held.release()
    ;(await waiting).release()
    await settle()
    expect(timers()).toBe(before)
  })

  it('an aborted head waiter hands its partial grant to the next waiter', async () => {
    const sem = new Semaphore(2)
    const first = sem.tryAcquire()!
    const second = sem.tryAcquire()!
    const controller = new AbortController()
    const big = sem.acquire({ weight: 2, signal: controller.signal })
    const small = sem.acquire({ weight: 1 })
    first.release() // goes to `big` as a partial grant
    expect(await isSettled(small)).toBe(false)
    controller.abort()
    await expect(big).rejects.toMatchObject({ name: 'AbortError' })
    const permit = await small
    expect(sem.available).toBe(0)
    permit.release()
    second.release()
    expect(sem.available).toBe(2)
    expect(sem.waiting).toBe(0)
  })

  it('abort in the same tick as the grant keeps exactly the permits there are', async () => {
    const sem = new Semaphore(1)
    for (let i = 0; i < 200; i++) {
      const held = sem.tryAcquire()!
      const controller = new AbortController()
      const waiting = sem.acquire({ signal: controller.signal })
      if (i % 2) {
        held.release()
        controller.abort()
      } else {
        controller.abort()
        held.release()
      }
      const outcome = await waiting.then(
        (permit) => (permit.release(), 'granted'),
        () => 'aborted',
      )
      expect(outcome).toBe(i % 2 ? 'granted' : 'aborted')
      expect(sem.available).toBe(1)
      expect(sem.waiting).toBe(0)
    }
  })
})
