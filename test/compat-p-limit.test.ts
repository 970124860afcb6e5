// p-limit's documented behaviours, run against p-limit 7 itself and against
// sluice/compat/p-limit: the adapter must behave as what it replaces.
import realPLimit, { limitFunction as realLimitFunction } from 'p-limit'
import { describe, expect, it } from 'vitest'
import { Semaphore } from 'sluice'
import pLimit, { limitFunction } from 'sluice/compat/p-limit'

const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms))
const tick = (): Promise<void> => new Promise((resolve) => setImmediate(resolve))

const implementations = [
  ['p-limit', realPLimit, realLimitFunction],
  ['sluice/compat/p-limit', pLimit, limitFunction],
] as unknown as [string, typeof pLimit, typeof limitFunction][]

describe.each(implementations)('%s', (_, makeLimit, makeLimitFunction) => {
  it('runs at most `concurrency` functions at once', async () => {
    const limit = makeLimit(3)
    let running = 0
    let most = 0
    await Promise.all(
      Array.from({ length: 20 }, () =>
        limit(async () => {
          most = Math.max(most, ++running)
          await sleep(2)
          running--
        }),
      ),
    )
    expect(most).toBe(3)
  })

  it('passes arguments and resolves with the result', async () => {
    const limit = makeLimit(1)
    expect(await limit((a: number, b: string) => `${a}${b}`, 1, 'x')).toBe('1x')
  })

  it('counts active and pending promises', async () => {
    const limit = makeLimit(2)
    const runs = Array.from({ length: 5 }, () => limit(() => sleep(20)))
    await tick()
    expect(limit.activeCount).toBe(2)
    expect(limit.pendingCount).toBe(3)
    await Promise.all(runs)
    expect(limit.activeCount).toBe(0)
    expect(limit.pendingCount).toBe(0)
  })

  it('a rejection reaches its caller and does not block the queue', async () => {
    const limit = makeLimit(1)
    const failing = limit(() => Promise.reject(new Error('bad')))
    const next = limit(() => 'next')
    await expect(failing).rejects.toThrow('bad')
    expect(await next).toBe('next')
  })

  it('clearQueue discards pending functions; running ones finish', async () => {
    const limit = makeLimit(1)
    let ran = 0
    const first = limit(async () => {
      await sleep(10)
      ran++
    })
    void limit(async () => {
      ran++
    })
    await tick()
    expect(limit.pendingCount).toBe(1)
    limit.clearQueue()
    expect(limit.pendingCount).toBe(0)
    await first
    await sleep(20)
    expect(ran).toBe(1)
  })

  it('clearQueue right after a call that found a free slot does not discard it (it holds its slot already)', async () => {
    const limit = makeLimit(2)
    let ran = 0
    const call = limit(() => {
      ran++
    })
    limit.clearQueue()
    await call
    expect(ran).toBe(1)
    expect(limit.activeCount).toBe(0)
    expect(await limit(() => 'still works')).toBe('still works')
  })

  it('clearQueue with rejectOnClear rejects the discarded promises with an AbortError', async () => {
    const limit = makeLimit({ concurrency: 1, rejectOnClear: true })
    const first = limit(() => sleep(10))
    const discarded = limit(() => 'never')
    await tick()
    limit.clearQueue()
    await expect(discarded).rejects.toMatchObject({ name: 'AbortError' })
    await first
  })

  it('raising concurrency starts waiting functions at once', async () => {
    const limit = makeLimit(1)
    const runs = Array.from({ length: 4 }, () => limit(() => sleep(30)))
    await tick()
    expect(limit.activeCount).toBe(1)
    limit.concurrency = 3
    expect(limit.concurrency).toBe(3)
    await tick()
    expect(limit.activeCount).toBe(3)
    await Promise.all(runs)
  })

  it('lowering concurrency lets running ones finish and starts no more than the new limit', async () => {
    const limit = makeLimit(3)
    let running = 0
    let mostAfter = 0
    let lowered = false
    const runs = Array.from({ length: 10 }, () =>
      limit(async () => {
        running++
        if (lowered) mostAfter = Math.max(mostAfter, running)
        await sleep(5)
        running--
      }),
    )
    await tick()
    limit.concurrency = 1
    lowered = true
    await Promise.all(runs)
    expect(mostAfter).toBeLessThanOrEqual(3) // those already running when it was lowered
    expect(limit.activeCount).toBe(0)
  })

  it('map runs fn(value, index) under the limit, in order', async () => {
    const limit = makeLimit(2)
    expect(await limit.map([10, 20, 30], async (value, index) => value + index)).toEqual([10, 21, 32])
  })

  it('limitFunction limits calls of one function', async () => {
    let running = 0
    let most = 0
    const limited = makeLimitFunction(
      async (x: number) => {
        most = Math.max(most, ++running)
        await sleep(2)
        running--
        return x * 2
      },
      { concurrency: 2 },
    )
    expect(await Promise.all([1, 2, 3, 4].map((x) => limited(x)))).toEqual([2, 4, 6, 8])
    expect(most).toBe(2)
  })

  it('accepts Infinity', async () => {
    const limit = makeLimit(Number.POSITIVE_INFINITY)
    expect(await Promise.all([1, 2].map((x) => limit(() => x)))).toEqual([1, 2])
  })

  it.each([0, -1, 1.5, '2', Number.NaN])('rejects concurrency %o with a TypeError', (concurrency) => {
    expect(() => makeLimit(concurrency as number)).toThrow(new TypeError('Expected `concurrency` to be a number from 1 and up'))
  })
})

describe('sluice/compat/p-limit extensions', () => {
  it('two limiters on one shared semaphore share one limit', async () => {
    const semaphore = new Semaphore(2)
    const a = pLimit({ semaphore })
    const b = pLimit({ semaphore })
    let running = 0
    let most = 0
    const task = async (): Promise<void> => {
      most = Math.max(most, ++running)
      await sleep(2)
      running--
    }
    await Promise.all([...Array.from({ length: 10 }, () => a(task)), ...Array.from({ length: 10 }, () => b(task))])
    expect(most).toBe(2)
    expect(a.concurrency).toBe(2)
  })
})
