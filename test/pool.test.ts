import { getEventListeners } from 'node:events'
import { describe, expect, it } from 'vitest'
import { Semaphore, TokenBucket, WorkerPool } from 'sluice'

const filename = new URL('./fixtures/pool-task.mjs', import.meta.url)

describe('WorkerPool', () => {
  it('runs tasks on worker threads and returns their results', async () => {
    await using pool = new WorkerPool<number, number>({ filename, maxThreads: 2 })
    expect(await Promise.all([1, 2, 3].map((n) => pool.run(n)))).toEqual([2, 4, 6])
  })

  it('uses a named export when given one', async () => {
    await using pool = new WorkerPool<number, number>({ filename, name: 'triple', maxThreads: 1 })
    expect(await pool.run(5)).toBe(15)
  })

  it('rejects with the task error', async () => {
    await using pool = new WorkerPool({ filename, maxThreads: 1 })
    await expect(pool.run({ op: 'throw', message: 'x' })).rejects.toThrow('task failed: x')
  })

  it('removes an aborted queued task and reports an aborted running one', async () => {
    await using pool = new WorkerPool({ filename, maxThreads: 1, minThreads: 1 })
    const running = new AbortController()
    const queued = new AbortController()
    const first = pool.run({ op: 'sleep', ms: 300 }, { signal: running.signal })
    const second = pool.run({ op: 'sleep', ms: 300 }, { signal: queued.signal })
    await new Promise((resolve) => setTimeout(resolve, 50))
    expect(pool.queueSize).toBe(1)
    queued.abort()
    await expect(second).rejects.toMatchObject({ name: 'AbortError' })
    expect(pool.queueSize).toBe(0)
    running.abort()
    await expect(first).rejects.toMatchObject({ name: 'AbortError' })
    expect(await pool.run(21)).toBe(42) // the pool still works
  })

  it('many tasks sharing one signal: one listener on it, and aborting it cancels every queued task', async () => {
    await using pool = new WorkerPool({ filename, maxThreads: 1, minThreads: 1, maxQueue: 1000 })
    const shared = new AbortController()
    const blocker = pool.run({ op: 'sleep', ms: 100 })
    const tasks = Array.from({ length: 500 }, (_, i) => pool.run(i, { signal: shared.signal }))
    // piscina listens on each task's signal; Node scans a signal's listeners
    // on every add, so 500 tasks must not mean 500 listeners on this one.
    expect(getEventListeners(shared.signal, 'abort')).toHaveLength(1)
    shared.abort(new Error('request gone'))
    const outcomes = await Promise.allSettled(tasks)
    expect(outcomes.every((o) => o.status === 'rejected')).toBe(true)
    expect(getEventListeners(shared.signal, 'abort')).toHaveLength(0)
    await blocker
    expect(await pool.run(21)).toBe(42)
  })

  it('submit waits for room: 10,000 tasks into a queue of 16 never queue more than 16', async () => {
    await using pool = new WorkerPool<number, number>({ filename, maxThreads: 2, maxQueue: 16 })
    let mostQueued = 0
    const results: Promise<number>[] = []
    for (let i = 0; i < 10_000; i++) {
      const { result } = await pool.submit(i)
      results.push(result)
      mostQueued = Math.max(mostQueued, pool.queueSize)
    }
    const values = await Promise.all(results)
    expect(mostQueued).toBeLessThanOrEqual(16)
    expect(mostQueued).toBeGreaterThan(0)
    expect(values[9_999]).toBe(19_998)
  }, 60_000)

  it('run rejects instead of waiting when the queue is full', async () => {
    await using pool = new WorkerPool({ filename, maxThreads: 1, minThreads: 1, maxQueue: 1 })
    const busy = [pool.run({ op: 'sleep', ms: 100 }), pool.run({ op: 'sleep', ms: 100 })]
    await new Promise((resolve) => setTimeout(resolve, 20))
    await expect(pool.run({ op: 'sleep', ms: 1 })).rejects.toThrow(/queue/i)
    await Promise.all(busy)
  })

  it('map returns results in input order, batching items', async () => {
    await using pool = new WorkerPool<number, number>({ filename, maxThreads: 2 })
    const items = Array.from({ length: 1_000 }, (_, i) => i)
    expect(await pool.map(items)).toEqual(items.map((n) => n * 2))
    expect(pool.metrics.completed).toBeLessThan(100) // far fewer dispatches than items
  })

  it('map fails fast with the first error and cancels what is still queued', async () => {
    await using pool = new WorkerPool<unknown, unknown>({ filename, maxThreads: 1, minThreads: 1 })
    const items: unknown[] = [{ op: 'throw', message: 'first' }, ...Array.from({ length: 50 }, () => ({ op: 'sleep', ms: 20 }))]
    const started = Date.now()
    await expect(pool.map(items, { batchSize: 1, concurrency: 10 })).rejects.toThrow('task failed: first')
    expect(Date.now() - started).toBeLessThan(500) // not 50 x 20 ms
  })

  it('shared primitives limit the whole pool: a semaphore of 2 across 4 threads', async () => {
    const sem = new Semaphore(2)
    await using pool = new WorkerPool({ filename, maxThreads: 4, minThreads: 4, share: { sem } })
    const counters = new SharedArrayBuffer(8)
    const results: Promise<unknown>[] = []
    for (let i = 0; i < 40; i++) results.push((await pool.submit({ op: 'critical', counters })).result)
    await Promise.all(results)
    expect(new Int32Array(counters)[1]).toBe(2) // at most 2 inside, and 2 did overlap
    expect(sem.available).toBe(2)
  })

  it('workers see every shared primitive by name', async () => {
    const share = { sem: new Semaphore(1), bucket: new TokenBucket({ capacity: 1, refillPerSecond: 1 }) }
    await using pool = new WorkerPool({ filename, maxThreads: 1, share })
    expect(await pool.run({ op: 'shared-names' })).toEqual(['bucket', 'sem'])
  })

  it('close drains gracefully; destroy stops now', async () => {
    const pool = new WorkerPool({ filename, maxThreads: 1, minThreads: 1 })
    const pending = [pool.run({ op: 'sleep', ms: 30 }), pool.run({ op: 'sleep', ms: 30 })]
    await pool.close()
    expect(await Promise.all(pending)).toEqual([30, 30])
    const doomed = new WorkerPool({ filename, maxThreads: 1, minThreads: 1 })
    // Observe the rejection before destroying, so it is never unhandled.
    const cut = doomed.run({ op: 'sleep', ms: 5_000 }).then(
      () => 'finished',
      (error: unknown) => error,
    )
    await new Promise((resolve) => setTimeout(resolve, 50))
    await doomed.destroy()
    expect(await cut).toBeInstanceOf(Error)
  })

  it('map and run reject bad arguments naming them', async () => {
    await using pool = new WorkerPool({ filename, maxThreads: 1 })
    await expect(pool.map(42 as never)).rejects.toThrow(new TypeError('items must be iterable, got 42'))
    await expect(pool.map([1], { batchSize: 0 })).rejects.toThrow(/options\.batchSize/)
    await expect(pool.run(1, { signal: 'x' as never })).rejects.toThrow(/options\.signal/)
  })

  it('reports metrics', async () => {
    await using pool = new WorkerPool<number, number>({ filename, maxThreads: 2 })
    await Promise.all([1, 2, 3, 4].map((n) => pool.run(n)))
    const { completed, runTime, waitTime, queueSize } = pool.metrics
    expect(completed).toBe(4)
    expect(queueSize).toBe(0)
    expect(runTime.p50).toBeGreaterThanOrEqual(0)
    expect(waitTime.p99).toBeGreaterThanOrEqual(waitTime.p50)
  })

  it.each([
    [{}, TypeError, /options\.filename/],
    [{ filename, maxThreads: 0 }, RangeError, /options\.maxThreads/],
    [{ filename, maxQueue: -1 }, RangeError, /options\.maxQueue/],
    [{ filename, share: { sem: 5 } }, TypeError, /options\.share\.sem/],
  ])('new WorkerPool(%o) throws naming the field', (options, type, message) => {
    expect(() => new WorkerPool(options as never)).toThrow(type)
    expect(() => new WorkerPool(options as never)).toThrow(message)
  })
})
