import { spawnSync } from 'node:child_process'
import { describe, expect, it } from 'vitest'
import { ClosedError, QueueFullError, Semaphore, WorkerPool } from 'sluice'
import { fixture } from './helpers.js'

const filename = new URL('./fixtures/pool-task.mjs', import.meta.url)

/** Runs a crash case in a child process: its exit code and last JSON line. */
function crashCase(which: string): { status: number | null; result: unknown; stderr: string } {
  const child = spawnSync(process.execPath, [fixture('pool-crash.mjs').pathname, which], { encoding: 'utf8', timeout: 30_000 })
  const last = child.stdout.trim().split('\n').pop()
  return { status: child.status, result: last ? (JSON.parse(last) as unknown) : undefined, stderr: child.stderr }
}

describe('WorkerPool faults', () => {
  it('a wait a failed task left queued in its thread is served once permits free up, and its permit comes back', async () => {
    const sem = new Semaphore(1)
    await using pool = new WorkerPool({ filename, minThreads: 2, maxThreads: 2, share: { sem } })
    const held = sem.tryAcquire()!
    await expect(pool.run({ op: 'leave-wait' })).rejects.toThrow('row failed')
    expect(sem.waiting).toBe(1) // the idle thread's wait is still queued
    held.release() // granted to that wait: its thread must collect it while idle
    const permit = await sem.acquire({ timeout: 5_000 })
    permit.release()
    expect(sem.available).toBe(1)
    expect(sem.waiting).toBe(0)
  })

  it('submit waits for room when run calls filled the queue, and its task then runs', async () => {
    await using pool = new WorkerPool({ filename, minThreads: 1, maxThreads: 1, maxQueue: 1 })
    const busy = [pool.run({ op: 'sleep', ms: 150 }), pool.run({ op: 'sleep', ms: 150 })]
    let queued = false
    const submitted = pool.submit({ op: 'sleep', ms: 1 }).then((handed) => {
      queued = true
      return handed
    })
    await new Promise((resolve) => setTimeout(resolve, 50))
    expect(queued).toBe(false) // no room yet: still waiting, not handed over
    const { result } = await submitted
    expect(await result).toBe(1)
    expect(await Promise.all(busy)).toEqual([150, 150])
  })

  it('run on a full queue rejects with a QueueFullError naming maxQueue and submit()', async () => {
    await using pool = new WorkerPool({ filename, minThreads: 1, maxThreads: 1, maxQueue: 1 })
    const busy = [pool.run({ op: 'sleep', ms: 100 }), pool.run({ op: 'sleep', ms: 100 })]
    const error = await pool.run({ op: 'sleep', ms: 1 }).catch((e: unknown) => e)
    expect(error).toBeInstanceOf(QueueFullError)
    expect(error).toMatchObject({ code: 'ERR_SLUICE_QUEUE_FULL', message: expect.stringMatching(/maxQueue 1\b.*submit\(\)/) })
    await Promise.all(busy)
    expect(await pool.run(2)).toBe(4) // room again once they finished
  })

  it('a full queue while submit callers wait makes run reject rather than overtake them', async () => {
    await using pool = new WorkerPool({ filename, minThreads: 1, maxThreads: 1, maxQueue: 0 })
    const first = pool.run({ op: 'sleep', ms: 100 })
    const waiting = pool.submit(5)
    await expect(pool.run(6)).rejects.toBeInstanceOf(QueueFullError)
    await first
    expect(await (await waiting).result).toBe(10)
  })

  it('concurrentTasksPerWorker lets one thread run several tasks that await I/O', async () => {
    await using pool = new WorkerPool({ filename, minThreads: 1, maxThreads: 1, concurrentTasksPerWorker: 4, maxQueue: 0 })
    const counters = new SharedArrayBuffer(8)
    const results = (await Promise.all([1, 2, 3, 4].map(() => pool.run({ op: 'overlap', counters, ms: 100 })))) as number[]
    expect(results.every((inside) => inside >= 1)).toBe(true)
    expect(new Int32Array(counters)[1]).toBe(4) // all four were inside the one thread at once
    expect(pool.metrics.threads).toBe(1)
    await expect(Promise.all([1, 2, 3, 4, 5].map(() => pool.run({ op: 'sleep', ms: 10 })))).rejects.toBeInstanceOf(QueueFullError)
  })

  it("a thread that crashes outside a task is reported through the pool's 'error' event and replaced", async () => {
    await using pool = new WorkerPool({ filename, minThreads: 1, maxThreads: 1 })
    const crashed = new Promise<unknown>((resolve) => pool.once('error', resolve))
    await pool.run({ op: 'throw-later', message: 'late' })
    expect(await crashed).toMatchObject({ message: 'late' })
    expect(await pool.run(4)).toBe(8)
  })

  it('the pool keeps its shared primitives alive: an inline semaphore survives idle threads and a GC', () => {
    const { status, result, stderr } = crashCase('collected-share')
    expect(stderr).not.toMatch(/InvalidHandleError|Error:/)
    expect(status).toBe(0)
    expect(result).toEqual({ names: ['sem'] })
  })

  it('a thread that cannot attach a shared primitive rejects its tasks with the reason; the process lives', () => {
    const { status, result } = crashCase('forged-handle')
    expect(status).toBe(0)
    const { outcomes } = result as { outcomes: string[] }
    expect(outcomes).toHaveLength(3)
    for (const message of outcomes) expect(message).toMatch(/could not attach share\.sem: handle refers to no live semaphore/)
  })

  it('a Channel with a custom codec in share is refused at construction, naming it', () => {
    const { status, result } = crashCase('custom-codec')
    expect(status).toBe(0)
    expect(result).toMatchObject({ name: 'TypeError', message: expect.stringMatching(/^options\.share\.ch is a Channel with a custom codec/) })
  })

  it('maxThreads beyond what a shared primitive can attach is refused at construction', () => {
    expect(() => new WorkerPool({ filename, maxThreads: 260, share: { sem: new Semaphore(1) } })).toThrow(RangeError)
    expect(() => new WorkerPool({ filename, maxThreads: 256, share: { sem: new Semaphore(1) } })).toThrow(/options\.maxThreads must be at most 255 when options\.share is given/)
  })

  it('run and submit after close reject with ClosedError', async () => {
    const pool = new WorkerPool({ filename, maxThreads: 1 })
    await pool.close()
    await expect(pool.run(1)).rejects.toBeInstanceOf(ClosedError)
    await expect(pool.submit(1)).rejects.toBeInstanceOf(ClosedError)
  })
})
