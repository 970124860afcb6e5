import { describe, expect, it } from 'vitest'
import { InvalidHandleError, Semaphore } from 'sluice'
import { CANCELLED, FIRST, HELD, MOST, countersFor, holdCycles, markGone } from './fixtures/hold-cycles.mjs'
import { eventually, nextMessage, runWorker } from './helpers.js'

describe.each(['fifo', 'eventual', 'eventual-head'] as const)('Semaphore across worker threads (%s)', (fairness) => {
  it('never lets more than 3 of 4 workers hold a semaphore of 3 (1,000 cycles each)', async () => {
    const sem = new Semaphore(3, { fairness })
    const counters = countersFor(4)
    const workers = Array.from({ length: 4 }, (_, index) =>
      runWorker('hold-cycles.mjs', { task: 'hold-cycles', handle: sem.handle, counters: counters.buffer, index, cycles: 1000 }),
    )
    expect(await Promise.all(workers.map((w) => w.exited))).toEqual([0, 0, 0, 0])
    expect(counters[MOST]).toBeGreaterThan(1) // they did overlap
    expect(counters[MOST]).toBeLessThanOrEqual(3)
    expect([...counters.slice(FIRST)]).toEqual([0, 0, 0, 0])
    expect(counters[HELD]).toBe(0)
    expect(sem.available).toBe(3)
    expect(sem.waiting).toBe(0)
  })

  it('shares one limit between the main thread and workers, with weighted waits', async () => {
    const sem = new Semaphore(4, { fairness })
    const counters = countersFor(4)
    const workers = [1, 2, 3].map((weight, index) =>
      runWorker('hold-cycles.mjs', {
        task: 'hold-cycles',
        handle: sem.handle,
        counters: counters.buffer,
        index,
        cycles: 300,
        weight,
      }),
    )
    await holdCycles(sem, counters, 3, 300, 1)
    expect(await Promise.all(workers.map((w) => w.exited))).toEqual([0, 0, 0])
    expect(counters[MOST]).toBeLessThanOrEqual(4)
    expect(sem.available).toBe(4)
    expect(sem.waiting).toBe(0)
  })

  it('keeps its invariants when waits in every thread are aborted or time out while permits circulate', async () => {
    const sem = new Semaphore(2, { fairness })
    const counters = countersFor(5)
    const workers = Array.from({ length: 4 }, (_, index) =>
      runWorker('hold-cycles.mjs', {
        task: 'hold-cycles',
        handle: sem.handle,
        counters: counters.buffer,
        index,
        cycles: 500,
        weight: 1 + (index % 2),
        cancelEvery: 3,
      }),
    )
    await holdCycles(sem, counters, 4, 500, 1, 3)
    expect(await Promise.all(workers.map((w) => w.exited))).toEqual([0, 0, 0, 0])
    expect(counters[CANCELLED]).toBeGreaterThan(0) // cancellations did happen
    expect(counters[MOST]).toBeLessThanOrEqual(2)
    expect(sem.waiting).toBe(0)
    expect(sem.available).toBe(2)
  })

  it('gets every permit back when contending workers are terminated at random moments', async () => {
    const sem = new Semaphore(3, { fairness })
    const counters = countersFor(7)
    const start = (index: number): ReturnType<typeof runWorker> =>
      runWorker('hold-cycles.mjs', {
        task: 'hold-cycles',
        handle: sem.handle,
        counters: counters.buffer,
        index,
        cycles: index < 6 ? 1_000_000 : 300,
      })
    const doomed = Array.from({ length: 6 }, (_, index) => start(index))
    const survivor = start(6)
    for (const [index, { worker }] of doomed.entries()) {
      await new Promise((resolve) => setTimeout(resolve, 20 + Math.random() * 60))
      // Stop counting it first: it may hold permits until the moment it dies,
      // and those are handed on as soon as it has.
      markGone(counters, index)
      await worker.terminate()
    }
    expect(await survivor.exited).toBe(0)
    expect(counters[MOST]).toBeLessThanOrEqual(3)
    expect(sem.waiting).toBe(0)
    expect(sem.available).toBe(3)
    // The main thread can still take all of them.
    expect(sem.tryAcquire(3)).not.toBeNull()
  })

  it('wakes a waiting worker when the main thread releases, and the worker stays alive meanwhile', async () => {
    const sem = new Semaphore(1, { fairness })
    const held = sem.tryAcquire()!
    const { worker, exited } = runWorker('acquire-once.mjs', { handle: sem.handle })
    expect(await nextMessage(worker)).toBe('waiting')
    await eventually(() => sem.waiting === 1)
    await new Promise((resolve) => setTimeout(resolve, 200)) // the worker must not exit meanwhile
    held.release()
    expect(await nextMessage(worker)).toBe('acquired')
    expect(await exited).toBe(0)
    expect(sem.available).toBe(1)
  })

  it('wakes the main thread when a worker releases', async () => {
    const sem = new Semaphore(1, { fairness })
    const { worker, exited } = runWorker('hold-until-told.mjs', { handle: sem.handle })
    expect(await nextMessage(worker)).toBe('holding')
    const waiting = sem.acquire()
    worker.postMessage('release')
    const permit = await waiting
    expect(sem.available).toBe(0)
    permit.release()
    expect(await exited).toBe(0)
    expect(sem.available).toBe(1)
  })

  it('returns the permits of a worker terminated while holding them', async () => {
    const sem = new Semaphore(2, { fairness })
    const { worker } = runWorker('hold-until-told.mjs', { handle: sem.handle, weight: 2 })
    expect(await nextMessage(worker)).toBe('holding')
    const waiting = sem.acquire({ weight: 2 })
    await worker.terminate()
    // No JS ran on the dying thread to ring us: the doorbell poll collects it.
    const permit = await waiting
    permit.release()
    expect(sem.available).toBe(2)
    expect(sem.waiting).toBe(0)
  })

  it('removes the waits of a worker terminated while waiting', async () => {
    const sem = new Semaphore(1, { fairness })
    const held = sem.tryAcquire()!
    const { worker } = runWorker('acquire-once.mjs', { handle: sem.handle })
    expect(await nextMessage(worker)).toBe('waiting')
    await eventually(() => sem.waiting === 1)
    await worker.terminate()
    expect(sem.waiting).toBe(0)
    held.release()
    expect(sem.available).toBe(1)
  })

  it('returns permits a worker still held when it exited normally', async () => {
    const sem = new Semaphore(3, { fairness })
    const { exited } = runWorker('leak-permit.mjs', { handle: sem.handle })
    expect(await exited).toBe(0)
    await eventually(() => sem.available === 3)
  })

  it('returns the permits of a worker that throws while holding them', async () => {
    const sem = new Semaphore(2, { fairness })
    const { exited } = runWorker('throw-holding.mjs', { handle: sem.handle })
    await expect(exited).rejects.toThrow('worker failed inside its critical section')
    await eventually(() => sem.available === 2)
    expect(sem.tryAcquire(2)).not.toBeNull()
  })

  it('a handle to a semaphore that no longer exists gives InvalidHandleError', async () => {
    const { worker, exited } = runWorker('make-semaphore.mjs', {})
    const handle = await nextMessage<Parameters<typeof Semaphore.from>[0]>(worker)
    expect(await exited).toBe(0)
    // The worker held the only reference; its exit freed the semaphore.
    expect(() => Semaphore.from(handle)).toThrow(InvalidHandleError)
  })
})
