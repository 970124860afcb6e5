import { describe, expect, it } from 'vitest'
import { TaskGroup } from 'sluice'

const sleep = (ms: number, signal?: AbortSignal): Promise<void> =>
  new Promise((resolve, reject) => {
    const timer = setTimeout(resolve, ms)
    signal?.addEventListener('abort', () => {
      clearTimeout(timer)
      reject(signal.reason)
    })
  })

describe('TaskGroup', () => {
  it('join waits for every task and returns their outcomes', async () => {
    const group = new TaskGroup()
    const a = group.spawn(async () => (await sleep(10), 'a'))
    const b = group.spawn(() => 'b')
    const outcomes = await group.join()
    expect(outcomes.map((o) => (o as PromiseFulfilledResult<string>).value)).toEqual(['a', 'b'])
    expect([await a, await b]).toEqual(['a', 'b'])
  })

  it('fails fast: the first failure aborts the signal siblings see, and join rejects with it', async () => {
    const group = new TaskGroup()
    let siblingSawAbort = false
    group.spawn(async (signal) => {
      await sleep(5_000, signal).catch((e) => {
        siblingSawAbort = true
        throw e
      })
    })
    const first = new Error('first')
    group.spawn(async () => {
      await sleep(10)
      throw first
    })
    const started = Date.now()
    const error = await group.join().catch((e: unknown) => e)
    expect(Date.now() - started).toBeLessThan(1_000)
    expect(siblingSawAbort).toBe(true)
    // The sibling's abort error is kept too, with the first as the cause.
    expect(error).toBeInstanceOf(AggregateError)
    expect((error as AggregateError).cause).toBe(first)
    expect(group.signal.reason).toBe(first)
  })

  it('a single failure is rethrown as is', async () => {
    const group = new TaskGroup()
    group.spawn(() => Promise.reject(new RangeError('only')))
    await expect(group.join()).rejects.toThrow(new RangeError('only'))
  })

  it("join({ mode: 'allSettled' }) resolves with every outcome", async () => {
    const group = new TaskGroup()
    group.spawn(() => 1)
    group.spawn(() => Promise.reject(new Error('no')))
    const outcomes = await group.join({ mode: 'allSettled' })
    expect(outcomes.map((o) => o.status)).toEqual(['fulfilled', 'rejected'])
  })

  it('no orphans: join waits for tasks spawned by tasks, and after join nothing runs', async () => {
    const group = new TaskGroup()
    let finished = 0
    group.spawn(async () => {
      await sleep(10)
      group.spawn(async () => {
        await sleep(20)
        finished++
      })
      finished++
    })
    await group.join()
    expect(finished).toBe(2)
    expect(() => group.spawn(() => 1)).toThrow(TypeError)
  })

  it('the outer signal cancels everything, and nested groups propagate cancellation down', async () => {
    const outer = new AbortController()
    const group = new TaskGroup({ signal: outer.signal })
    let innerCancelled = false
    group.spawn(async (signal) => {
      const inner = new TaskGroup({ signal })
      inner.spawn(async (innerSignal) => {
        await sleep(5_000, innerSignal).catch((e) => {
          innerCancelled = true
          throw e
        })
      })
      await inner.join()
    })
    setTimeout(() => outer.abort(new Error('shutdown')), 10)
    await expect(group.join()).rejects.toThrow('shutdown')
    expect(innerCancelled).toBe(true)
  })

  it('concurrency limits how many tasks run at once', async () => {
    const group = new TaskGroup({ concurrency: 2 })
    let running = 0
    let most = 0
    for (let i = 0; i < 10; i++) {
      group.spawn(async () => {
        most = Math.max(most, ++running)
        await sleep(5)
        running--
      })
    }
    await group.join()
    expect(most).toBe(2)
  })

  it('await using joins on disposal', async () => {
    let done = false
    {
      await using group = new TaskGroup()
      group.spawn(async () => {
        await sleep(10)
        done = true
      })
    }
    expect(done).toBe(true)
  })

  it('an ignored failing task does not crash the process (it surfaces from join)', async () => {
    const group = new TaskGroup()
    void group.spawn(() => Promise.reject(new Error('ignored')))
    await new Promise((resolve) => setImmediate(resolve))
    await expect(group.join()).rejects.toThrow('ignored')
  })
})
