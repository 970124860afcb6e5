import { describe, expect, it } from 'vitest'
import { Channel, Semaphore } from 'sluice'
import { eventually, nextMessage, runWorker } from './helpers.js'

describe('storms', () => {
  it('10,000 waiters across 4 workers aborted at random while permits circulate leave nothing behind', async () => {
    const sem = new Semaphore(4)
    const workers = Array.from({ length: 4 }, () => runWorker('abort-storm.mjs', { handle: sem.handle, waiters: 2_500 }))
    const results = await Promise.all(workers.map(({ worker }) => nextMessage<{ granted: number; cancelled: number }>(worker)))
    await Promise.all(workers.map((w) => w.exited))
    const granted = results.reduce((n, r) => n + r.granted, 0)
    const cancelled = results.reduce((n, r) => n + r.cancelled, 0)
    expect(granted + cancelled).toBe(10_000)
    expect(granted).toBeGreaterThan(0)
    expect(cancelled).toBeGreaterThan(0)
    expect(sem.waiting).toBe(0)
    expect(sem.available).toBe(4)
  }, 60_000)

  it('120 workers terminated at random moments while waiting or holding: every permit and slot comes back', async () => {
    const sem = new Semaphore(3)
    const ch = new Channel<number>({ capacity: 2, codec: 'number' })
    const handles = { semaphore: sem.handle, channel: ch.handle }
    let terminated = 0
    const wave = async (): Promise<void> => {
      const { worker } = runWorker('churn.mjs', handles)
      await nextMessage(worker)
      await new Promise((resolve) => setTimeout(resolve, Math.random() * 25))
      await worker.terminate()
      terminated++
    }
    for (let round = 0; round < 12; round++) await Promise.all(Array.from({ length: 10 }, wave))
    expect(terminated).toBe(120)
    await eventually(() => sem.available === 3 && sem.waiting === 0)
    // Messages the dead left queued are still there, never duplicated; the
    // channel has all its room once they are drained.
    while (ch.tryRecv() !== undefined);
    expect(ch.trySendMany([1, 2, 3])).toBe(2)
  }, 120_000)
})
