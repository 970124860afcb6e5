// A Semaphore keeps its state in JavaScript until it is first shared; reading
// `handle` then moves it to native memory synchronously: the permits this
// thread holds stay held by it, and its queued waits are queued there in the
// same order (priorities, the head's reserve and all) under their tokens, so
// that the doorbell delivers their grants. These tests move it while waits
// are queued, and while another thread attaches and acquires at once.
import { once } from 'node:events'
import { Worker } from 'node:worker_threads'
import { describe, expect, it } from 'vitest'
import { Mutex, type LocalSemaphoreHandle, type Permit, Semaphore } from 'sluice'
import { Semaphore as CompatSemaphore } from 'sluice/compat/async-mutex'
import pLimit from 'sluice/compat/p-limit'
import { evalWorker, eventually, isSettled } from './helpers.js'

const flush = (): Promise<void> => new Promise((resolve) => setImmediate(resolve))

/** A worker that attaches to `handle` and acquires on command, reporting as it goes. */
function attacher(handle: unknown): { worker: Worker; next: () => Promise<unknown>; exited: Promise<unknown> } {
  const code = `
    const { parentPort, workerData } = require('node:worker_threads')
    const { Semaphore } = require('sluice')
    const sem = Semaphore.from(workerData.handle)
    parentPort.postMessage({ tried: sem.tryAcquire() !== null, waiting: sem.waiting })
    sem.acquire().then((permit) => {
      parentPort.postMessage('granted')
      parentPort.once('message', () => { permit.release(); parentPort.close() })
    })
    parentPort.postMessage('queued')
  `
  const worker = new Worker(code, { eval: true, workerData: { handle } })
  const messages: unknown[] = []
  let wake: (() => void) | undefined
  worker.on('message', (m) => {
    messages.push(m)
    wake?.()
  })
  const next = async (): Promise<unknown> => {
    while (messages.length === 0) await new Promise<void>((resolve) => (wake = resolve))
    return messages.shift()
  }
  return { worker, next, exited: once(worker, 'exit') }
}

describe('Semaphore moving to native memory while waits are queued', () => {
  it('keeps held permits, the queue order (priorities and the head reserve), and cancellation; a thread attaching queues behind', async () => {
    const sem = new Semaphore(4)
    const held = sem.tryAcquire(3)!
    const order: string[] = []
    const permits = new Map<string, Permit>()
    const track = (name: string, promise: Promise<Permit>): Promise<unknown> =>
      promise.then(
        (permit) => {
          order.push(name)
          permits.set(name, permit)
        },
        (error: unknown) => {
          order.push(`${name}:${(error as Error).name}`)
        },
      )
    const aborter = new AbortController()
    const a = track('A', sem.acquire({ weight: 2 })) // takes the 1 free as the head's reserve
    const b = track('B', sem.acquire())
    const c = track('C', sem.acquire({ weight: 3, priority: 1 })) // stands first, with A's reserve
    const d = track('D', sem.acquire({ signal: aborter.signal }))
    let ranE = false
    const e = sem.run(() => {
      ranE = true
      order.push('E')
    })
    expect([sem.waiting, sem.available]).toEqual([5, 0])

    const handle = sem.handle as LocalSemaphoreHandle // the move
    expect((sem.handle as LocalSemaphoreHandle).id).toBe(handle.id) // once
    expect([sem.waiting, sem.available]).toEqual([5, 0])
    expect(sem.tryAcquire()).toBeNull()

    // Another thread attaches: its try fails and its acquire queues behind ours.
    const other = attacher(handle)
    expect(await other.next()).toEqual({ tried: false, waiting: 5 })
    expect(await other.next()).toBe('queued')
    expect(sem.waiting).toBe(6)

    aborter.abort(new Error('no longer wanted')) // a moved wait withdrawn natively
    await d
    expect(order).toEqual(['D:Error'])
    expect(sem.waiting).toBe(5)

    held.release() // 3 + the reserve of 1: C (3), then 1 set aside for A
    await c
    expect(order).toEqual(['D:Error', 'C'])
    expect(sem.waiting).toBe(4)
    permits.get('C')!.release() // 3 + 1: A (2), B (1), E (1)
    await Promise.all([a, b, e])
    expect(order).toEqual(['D:Error', 'C', 'A', 'B', 'E'])
    expect(ranE).toBe(true)
    // E's run gave its permit back; the worker is granted it, last.
    expect(await other.next()).toBe('granted')
    expect(sem.waiting).toBe(0)
    permits.get('A')!.release()
    permits.get('B')!.release()
    other.worker.postMessage('release')
    await other.exited
    // Nothing lost, nothing made.
    await eventually(() => sem.available === 4)
    expect(sem.tryAcquire(4)).not.toBeNull()
  })

  it('moves a closed semaphore closed, and a semaphore with nothing queued as it is', async () => {
    const closed = new Semaphore(2)
    const kept = closed.tryAcquire()!
    const waiting = closed.acquire({ weight: 2 }).catch((error: unknown) => error)
    closed.close('done')
    expect((await waiting as Error).name).toBe('ClosedError')
    void closed.handle
    expect(closed.closed).toBe(true)
    expect(() => closed.tryAcquire()).toThrow(/closed/)
    kept.release()
    expect(closed.available).toBe(2)

    const plain = new Semaphore(3, { maxWaiters: 1 })
    const one = plain.tryAcquire(2)!
    void plain.handle
    expect([plain.available, plain.capacity]).toEqual([1, 3])
    const queued = plain.acquire({ weight: 2 })
    await expect(plain.acquire()).rejects.toThrow(/waiters/i) // maxWaiters moved too
    one.release()
    ;(await queued).release()
    expect(plain.available).toBe(3)
  })

  it('moves waits whose timeout fires after the move, and refusals after a forget', async () => {
    const sem = new Semaphore(3)
    const held = sem.tryAcquire(3)!
    const timing = sem.acquire({ timeout: 20 }).catch((error: unknown) => (error as Error).name)
    const heavy = sem.acquire({ weight: 3 }).catch((error: unknown) => (error as Error).name)
    const light = sem.acquire({ weight: 1 })
    void sem.handle
    expect(await timing).toBe('TimeoutError')
    expect(await isSettled(light)).toBe(false)
    held.forget() // capacity 0: the wait for 3 is refused... and the wait for 1 too
    expect(await heavy).toBe('RangeError')
    await expect(light).rejects.toThrow(RangeError)
    expect(sem.capacity).toBe(0)
  })

  it('carries a compat semaphore (owed permits) and a p-limit queue across the move', async () => {
    const owing = new CompatSemaphore(-1)
    const first = owing.acquire()
    owing.release() // pays the debt
    expect(await isSettled(first)).toBe(false)
    void owing.handle
    owing.release()
    const [, release] = await first
    expect(owing.getValue()).toBe(0)
    release()
    expect(owing.getValue()).toBe(1)

    const semaphore = new Semaphore(2)
    const limit = pLimit({ concurrency: 2, semaphore })
    const started: number[] = []
    const gates: (() => void)[] = []
    const runs = Array.from({ length: 6 }, (_, i) =>
      limit(
        () =>
          new Promise<number>((resolve) => {
            started.push(i)
            gates.push(() => resolve(i))
          }),
      ),
    )
    await flush()
    expect(started).toEqual([0, 1])
    void semaphore.handle // four calls queued move
    limit.clearQueue() // ... and are withdrawn natively
    const late = limit(() => 'late')
    for (const open of gates.splice(0)) open()
    expect(await late).toBe('late')
    expect(await Promise.all(runs.slice(0, 2))).toEqual([0, 1])
    expect(limit.pendingCount).toBe(0)
    await eventually(() => semaphore.available === 2)
  })

  it('a Mutex moved while locked with waiters hands the lock on in order', async () => {
    const mutex = new Mutex()
    const guard = mutex.tryLock()!
    const order: number[] = []
    const locks = [0, 1, 2].map((i) => mutex.runExclusive(() => void order.push(i)))
    void mutex.handle
    guard.release()
    await Promise.all(locks)
    expect(order).toEqual([0, 1, 2])
    expect(mutex.isLocked).toBe(false)
  })
})

describe('Semaphore moving to native memory while another thread races to attach', () => {
  it('loses and duplicates no permit: the moved waits, this thread and a worker all contend at once', async () => {
    const capacity = 3
    // inUse[0]: permits held right now, counted by every holder; inUse[1]: set on an overdraw.
    const inUse = new Int32Array(new SharedArrayBuffer(8))
    for (let round = 0; round < 20; round++) {
      const sem = new Semaphore(capacity)
      const mine: Permit[] = []
      const held = sem.tryAcquire(2)!
      const take = (weight: number): void => {
        if (Atomics.add(inUse, 0, weight) + weight > capacity) Atomics.store(inUse, 1, 1)
      }
      take(2)
      const waits = [1, 2, 1, 3, 1].map((weight, i) =>
        sem.acquire({ weight, priority: i % 2, timeout: i === 2 ? round % 3 : undefined }).then(
          (permit) => {
            take(weight)
            mine.push(permit)
            return permit
          },
          () => undefined,
        ),
      )
      const code = `
        const { parentPort, workerData } = require('node:worker_threads')
        const { Semaphore } = require('sluice')
        const { handle, inUse, capacity } = workerData
        const sem = Semaphore.from(handle)
        ;(async () => {
          for (let i = 0; i < 30; i++) {
            const weight = 1 + (i % 2)
            const permit = await sem.acquire({ weight })
            if (Atomics.add(inUse, 0, weight) + weight > capacity) Atomics.store(inUse, 1, 1)
            await null
            Atomics.sub(inUse, 0, weight)
            permit.release()
          }
          parentPort.postMessage('done')
        })()
      `
      // The move and the attach race: the worker starts acquiring while this
      // thread's moved waits are granted and released.
      // Its exit is listened for from here on: awaited only after 'done', it
      // was missed whenever the worker had exited by then (see `evalWorker`).
      const { worker, exited } = evalWorker(code, { handle: sem.handle, inUse, capacity })
      const done = once(worker, 'message')
      Atomics.sub(inUse, 0, 2)
      held.release()
      let settled = 0
      for (const wait of waits) {
        void wait.then((permit) => {
          settled++
          if (permit === undefined) return
          setImmediate(() => {
            Atomics.sub(inUse, 0, permit.weight)
            permit.release()
          })
        })
      }
      await Promise.race([done, exited]) // a worker that throws fails the test, not hangs it
      expect(await exited).toBe(0)
      await eventually(() => settled === waits.length)
      await eventually(() => sem.available === capacity)
      expect(sem.waiting).toBe(0)
      expect(mine.every((permit) => permit.released)).toBe(true)
      expect(Atomics.load(inUse, 0)).toBe(0)
      expect(Atomics.load(inUse, 1)).toBe(0)
    }
  }, 60_000)
})
