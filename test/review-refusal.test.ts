// Review tests for refusals (a queued wait heavier than a capacity shrunk by
// permit.forget()) racing releases, timeouts and forgets across real threads
// without losing or duplicating a permit.
import { once } from 'node:events'
import { Worker } from 'node:worker_threads'
import { describe, expect, it } from 'vitest'
import { Semaphore } from 'sluice'

describe('review: refusals', () => {
  it('refusals race releases, forgets and timeouts across threads without losing or duplicating a permit', async () => {
    const rounds = 150
    const sem = new Semaphore(3)
    // The worker queues, each round, a wait for 3 (refused once the capacity
    // is 2, unless its timeout fires first) and a wait for 1 (granted when
    // the main thread releases, unless its timeout fires first); it releases
    // what it gets and reports the outcomes.
    const code = `
      const { parentPort, workerData } = require('node:worker_threads')
      const { Semaphore } = require('sluice')
      const sem = Semaphore.from(workerData.handle)
      parentPort.on('message', async (round) => {
        if (round === 'stop') return parentPort.close()
        const outcome = (p) => p.then((permit) => { permit.release(); return 'granted' }, (e) => e.name)
        const heavy = outcome(sem.acquire({ weight: 3, timeout: round % 3 }))
        const light = outcome(sem.acquire({ weight: 1, timeout: round % 2 }))
        parentPort.postMessage('queued')
        parentPort.postMessage(await Promise.all([heavy, light]))
      })
    `
    const worker = new Worker(code, { eval: true, workerData: { handle: sem.handle } })
    const exited = once(worker, 'exit')
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
    const seen = new Map<string, number>()
    for (let round = 0; round < rounds; round++) {
      expect(sem.capacity).toBe(3)
      const one = sem.tryAcquire(1)!
      const two = sem.tryAcquire(2)!
      expect(one).not.toBeNull()
      expect(two).not.toBeNull()
      worker.postMessage(round)
      expect(await next()).toBe('queued')
      // Spin a little so the forget lands near the worker's timeouts.
      const until = performance.now() + (round % 4) * 0.3
      while (performance.now() < until);
      one.forget() // capacity 2: a queued wait for 3 is refused
      two.release()
      const [heavy, light] = (await next()) as [string, string]
      expect(['RangeError', 'TimeoutError']).toContain(heavy)
      expect(['granted', 'TimeoutError']).toContain(light)
      seen.set(`${heavy}/${light}`, (seen.get(`${heavy}/${light}`) ?? 0) + 1)
      // Every permit of the new capacity is free again: none lost, none made.
      expect({ capacity: sem.capacity, available: sem.available, waiting: sem.waiting }).toEqual({
        capacity: 2,
        available: 2,
        waiting: 0,
      })
      sem.addPermits(1)
    }
    worker.postMessage('stop')
    await exited
    expect(sem.available).toBe(3)
    expect(seen.get('RangeError/granted') ?? 0).toBeGreaterThan(0)
  }, 20_000)
})
