import { describe, expect, it } from 'vitest'
import { ClosedError, QueueFullError, Semaphore } from 'sluice'
import { nextMessage, runWorker } from './helpers.js'

describe('Semaphore close and maxWaiters', () => {
  it('close rejects every queued waiter with ClosedError carrying the reason', async () => {
    const sem = new Semaphore(1)
    const held = sem.tryAcquire()!
    const waits = [sem.acquire(), sem.acquire({ timeout: 60_000 })]
    const reason = new Error('shutting down')
    sem.close(reason)
    for (const wait of waits) {
      const error = await wait.catch((e: unknown) => e)
      expect(error).toBeInstanceOf(ClosedError)
      expect(error).toMatchObject({ code: 'ERR_SLUICE_CLOSED', cause: reason })
    }
    expect(sem.waiting).toBe(0)
    expect(sem.closed).toBe(true)
    held.release() // still allowed
    expect(sem.available).toBe(1)
  })

  it('after close, acquire rejects and tryAcquire throws, even with free permits', async () => {
    const sem = new Semaphore(2)
    sem.close()
    await expect(sem.acquire()).rejects.toBeInstanceOf(ClosedError)
    expect(() => sem.tryAcquire()).toThrow(ClosedError)
    sem.close() // again: nothing more
  })

  it('close in the main thread rejects a waiter in a worker', async () => {
    const sem = new Semaphore(1)
    const held = sem.tryAcquire()!
    const { worker, exited } = runWorker('acquire-report.mjs', { handle: sem.handle })
    expect(await nextMessage(worker)).toBe('waiting')
    while (sem.waiting === 0) await new Promise((resolve) => setTimeout(resolve, 5))
    sem.close()
    expect(await nextMessage(worker)).toEqual({ name: 'ClosedError', code: 'ERR_SLUICE_CLOSED' })
    expect(await exited).toBe(0)
    held.release()
  })

  it('maxWaiters rejects the wait beyond it with QueueFullError, counting all threads', async () => {
    const sem = new Semaphore(1, { maxWaiters: 2 })
    const held = sem.tryAcquire()!
    const queued = [sem.acquire(), sem.acquire()]
    const error = await sem.acquire().catch((e: unknown) => e)
    expect(error).toBeInstanceOf(QueueFullError)
    expect(error).toMatchObject({ code: 'ERR_SLUICE_QUEUE_FULL' })
    expect(sem.waiting).toBe(2)
    held.release()
    ;(await queued[0]!).release()
    ;(await queued[1]!).release()
    expect(sem.available).toBe(1)
  })

  it('maxWaiters: 0 never queues', async () => {
    const sem = new Semaphore(1, { maxWaiters: 0 })
    const held = sem.tryAcquire()!
    await expect(sem.acquire()).rejects.toBeInstanceOf(QueueFullError)
    held.release()
    ;(await sem.acquire()).release()
  })

  it.each([[-1], [1.5], ['2']])('maxWaiters %o is refused naming options.maxWaiters', (maxWaiters) => {
    expect(() => new Semaphore(1, { maxWaiters: maxWaiters as number })).toThrow(/options\.maxWaiters/)
  })
})
