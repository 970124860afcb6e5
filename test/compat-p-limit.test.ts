// p-limit's documented behaviours, run against p-limit 7 itself and against
// sluice/compat/p-limit: the adapter must behave as what it replaces.
import fc from 'fast-check'
import realPLimit, { limitFunction as realLimitFunction } from 'p-limit'
import { describe, expect, it } from 'vitest'
import { Semaphore } from 'sluice'
import pLimit, { limitFunction } from 'sluice/compat/p-limit'

const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms))
const tick = (): Promise<void> => new Promise((resolve) => setImmediate(resolve))

/**
 * Tasks that run until told to finish, oldest first: `finishAll(n)` ends
 * them one at a time and returns how many run after each.
 */
function gate() {
  const finishers: (() => void)[] = []
  const gated = {
    running: 0,
    most: 0,
    task: async (): Promise<void> => {
      gated.most = Math.max(gated.most, ++gated.running)
      await new Promise<void>((resolve) => finishers.push(resolve))
      gated.running--
    },
    async finishAll(n: number): Promise<number[]> {
      const trace: number[] = []
      for (let i = 0; i < n; i++) {
        finishers.shift()?.()
        await tick()
        trace.push(gated.running)
      }
      return trace
    },
  }
  return gated
}

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

  it('a call counts as active, or pending, as soon as `limit(fn)` returns, before fn has run', async () => {
    const limit = makeLimit(5)
    let started = 0
    const task = () => {
      started++
      return sleep(5)
    }
    const first = limit(task)
    expect([limit.activeCount, limit.pendingCount, started]).toEqual([1, 0, 0])
    await first
    expect([limit.activeCount, limit.pendingCount]).toEqual([0, 0])
    const immediate = Array.from({ length: 5 }, () => limit(task))
    const delayed = Array.from({ length: 3 }, () => limit(task))
    expect([limit.activeCount, limit.pendingCount, started]).toEqual([5, 3, 1])
    await Promise.all(immediate)
    // The waiting calls took the freed slots before the finished ones' callers resumed.
    expect([limit.activeCount, limit.pendingCount]).toEqual([3, 0])
    await Promise.all(delayed)
    expect([limit.activeCount, limit.pendingCount]).toEqual([0, 0])
  })

  it('with concurrency 1, a second call made at once is pending while the first is active', async () => {
    const limit = makeLimit(1)
    const context = { values: [] as string[] }
    const add = async (ctx: typeof context, value: string) => {
      ctx.values.push(value)
      await sleep(2)
      return ctx.values.length
    }
    const results = [limit(add, context, 'first'), limit(add, context, 'second')]
    expect([limit.activeCount, limit.pendingCount]).toEqual([1, 1])
    expect(await Promise.all(results)).toEqual([1, 2])
    expect(context.values).toEqual(['first', 'second'])
  })

  it('fn runs after the code that called limit(fn), though it counts as active at once', async () => {
    const limit = makeLimit(3)
    let value = 1
    const results = [limit(() => 1), limit(() => value)]
    expect(limit.activeCount).toBe(2)
    value = 2
    expect(await Promise.all(results)).toEqual([1, 2])
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

  it('raising concurrency starts the waiting calls a microtask later: until then they count as pending', async () => {
    const limit = makeLimit(1)
    const runs = Array.from({ length: 3 }, () => limit(() => sleep(5)))
    expect([limit.activeCount, limit.pendingCount]).toEqual([1, 2])
    limit.concurrency = 3
    expect([limit.activeCount, limit.pendingCount]).toEqual([1, 2])
    await Promise.resolve()
    expect([limit.activeCount, limit.pendingCount]).toEqual([3, 0])
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

  it('2 → Infinity → 1: once lowered, no new function starts until those running drop below 1', async () => {
    const limit = makeLimit(2)
    const gated = gate()
    const runs = Array.from({ length: 4 }, () => limit(gated.task))
    await tick()
    limit.concurrency = Number.POSITIVE_INFINITY
    await tick()
    const trace = [gated.running]
    limit.concurrency = 1
    runs.push(...Array.from({ length: 4 }, () => limit(gated.task)))
    trace.push(...(await gated.finishAll(8)))
    await Promise.all(runs)
    expect(trace).toEqual([4, 3, 2, 1, 1, 1, 1, 1, 0])
    expect(gated.most).toBe(4)
  })

  it('Infinity with 5 running → 2: no new function starts until those running drop below 2', async () => {
    const limit = makeLimit(Number.POSITIVE_INFINITY)
    const gated = gate()
    const runs = Array.from({ length: 5 }, () => limit(gated.task))
    await tick()
    limit.concurrency = 2
    runs.push(...Array.from({ length: 4 }, () => limit(gated.task)))
    const trace = [gated.running, ...(await gated.finishAll(9))]
    await Promise.all(runs)
    expect(trace).toEqual([5, 4, 3, 2, 2, 2, 2, 2, 1, 0])
    expect(gated.most).toBe(5)
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

type Step = 'call' | 'finish' | 'clear' | number

/** Runs `steps` on a fresh limiter, one tick after each; returns what is seen after each. */
async function observe(makeLimit: typeof pLimit, initial: number, steps: Step[]): Promise<unknown[]> {
  const limit = makeLimit(initial)
  const gated = gate()
  const log: unknown[] = []
  for (const step of steps) {
    if (step === 'call') void limit(gated.task)
    else if (step === 'finish') await gated.finishAll(1)
    else if (step === 'clear') limit.clearQueue()
    else limit.concurrency = step
    // Counted at once, as p-limit counts them, and once the functions have run.
    log.push([step, 'now', limit.activeCount, limit.pendingCount])
    await tick()
    log.push([step, gated.running, limit.activeCount, limit.pendingCount, limit.concurrency])
  }
  log.push(['most', gated.most])
  await gated.finishAll(steps.length)
  return log
}

describe('side by side with p-limit', () => {
  it('random sequences of calls, finishes, concurrency changes (through Infinity) and clearQueue are observed the same', async () => {
    const concurrency = fc.constantFrom(1, 2, 3, Number.POSITIVE_INFINITY)
    const step: fc.Arbitrary<Step> = fc.oneof(fc.constant('call'), fc.constant('call'), fc.constant('finish'), fc.constant('clear'), concurrency)
    await fc.assert(
      fc.asyncProperty(concurrency, fc.array(step, { maxLength: 14 }), async (initial, steps) => {
        const expected = await observe(realPLimit as unknown as typeof pLimit, initial, steps)
        expect(await observe(pLimit, initial, steps)).toEqual(expected)
      }),
      { numRuns: 200 },
    )
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

  it.each([
    ['kept in JavaScript', false],
    ['in native memory (its handle read)', true],
  ])('clearQueue on one of two limiters sharing a semaphore %s discards only its own queued calls, in order', async (_, shared) => {
    const semaphore = new Semaphore(1)
    if (shared) void semaphore.handle
    const a = pLimit({ semaphore, rejectOnClear: true })
    const b = pLimit({ semaphore, rejectOnClear: true })
    const gated = gate()
    const order: string[] = []
    const record = (name: string) => (): Promise<void> => {
      order.push(name)
      return gated.task()
    }
    const first = a(record('a0'))
    await tick()
    const calls = ['b1', 'a1', 'b2', 'a2', 'b3'].map((name) => [name, (name[0] === 'a' ? a : b)(record(name))] as const)
    const rejected: string[] = []
    for (const [name, call] of calls) call.catch((error: unknown) => rejected.push(`${name}:${(error as Error).name}`))
    expect([a.pendingCount, b.pendingCount]).toEqual([2, 3])
    a.clearQueue()
    expect([a.pendingCount, b.pendingCount]).toEqual([0, 3])
    await tick()
    expect(rejected).toEqual(['a1:AbortError', 'a2:AbortError'])
    await gated.finishAll(4)
    await Promise.all([first, ...calls.filter(([name]) => name[0] === 'b').map(([, call]) => call)])
    expect(order).toEqual(['a0', 'b1', 'b2', 'b3'])
    expect([a.activeCount, b.activeCount, b.pendingCount, semaphore.available]).toEqual([0, 0, 0, 1])
  })
})
