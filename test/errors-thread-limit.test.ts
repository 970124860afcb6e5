import type { Worker } from 'node:worker_threads'
import { describe, expect, it } from 'vitest'
import { InvalidHandleError, Semaphore, SluiceError, ThreadLimitError } from 'sluice'
import { nextMessage, runWorker } from './helpers.js'

type Report = { attached: boolean; name?: string; code?: string; message?: string; isThreadLimit?: boolean; isSluice?: boolean }

describe('the thread limit of a primitive', () => {
  // 255 workers stay attached beside this thread (slot 0): a minute at most
  // on a slow machine, in batches so that no more than 32 start at once.
  it('the 257th thread to attach gets a ThreadLimitError naming the limit, and a freed slot can be taken again', { timeout: 180_000 }, async () => {
    const sem = new Semaphore(1)
    const workers: Worker[] = []
    const start = async (): Promise<Report> => {
      const { worker } = runWorker('errors-attach.mjs', { handle: sem.handle })
      workers.push(worker)
      return nextMessage<Report>(worker)
    }
    try {
      for (let batch = 0; batch < 255; batch += 32) {
        const size = Math.min(32, 255 - batch)
        const reports = await Promise.all(Array.from({ length: size }, start))
        expect(reports.every((r) => r.attached)).toBe(true)
      }
      const refused = await start()
      expect(refused).toEqual({
        attached: false,
        name: 'ThreadLimitError',
        code: 'ERR_SLUICE_THREAD_LIMIT',
        message: expect.stringMatching(/256 threads are attached to it already, the most one primitive allows \(DOORBELL_SLOTS\)/),
        isThreadLimit: true,
        isSluice: true,
      })
      // Never the misleading InvalidHandleError.
      expect(refused.name).not.toBe(InvalidHandleError.name)
      // A thread that exits frees its slot for the next one.
      await workers.shift()!.terminate()
      expect(await start()).toEqual({ attached: true })
    } finally {
      await Promise.all(workers.map((worker) => worker.terminate()))
    }
    expect(ThreadLimitError.prototype).toBeInstanceOf(SluiceError)
  })
})
