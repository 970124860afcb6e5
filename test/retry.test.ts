import { afterEach, describe, expect, expectTypeOf, it, vi } from 'vitest'
import { retry, type RetryEvent } from 'sluice'

/** A seeded generator of numbers in [0, 1) (mulberry32): repeatable "randomness". */
function seeded(seed: number): () => number {
  let a = seed >>> 0
  return () => {
    a = (a + 0x6d2b79f5) >>> 0
    let t = a
    t = Math.imul(t ^ (t >>> 15), t | 1)
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61)
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296
  }
}

/** A function failing its first `failures` calls with errors naming the attempt. */
function failing(failures: number): (context: { attempt: number }) => string {
  return ({ attempt }) => {
    if (attempt <= failures) throw new Error(`attempt ${attempt}`)
    return `ok on ${attempt}`
  }
}

function timers(): number {
  return process.getActiveResourcesInfo().filter((kind) => kind === 'Timeout').length
}

/** Runs `retry` under fake timers to the end; returns its outcome and the delays it chose. */
async function delaysOf(
  calls: number,
  backoff: NonNullable<Parameters<typeof retry>[1]>['backoff'],
): Promise<number[]> {
  vi.useFakeTimers({ toFake: ['setTimeout', 'clearTimeout'] })
  const delays: number[] = []
  const done = retry(failing(calls - 1), { retries: calls - 1, backoff, onRetry: ({ delayMs }) => delays.push(delayMs) })
  await vi.runAllTimersAsync()
  await expect(done).resolves.toBe(`ok on ${calls}`)
  return delays
}

afterEach(() => {
  vi.useRealTimers()
})

describe('retry', () => {
  it('calls fn until it fulfils and resolves with its value, numbering the attempts from 1', async () => {
    const attempts: number[] = []
    const value = await retry(
      ({ attempt }) => {
        attempts.push(attempt)
        if (attempt < 3) throw new Error('not yet')
        return 'done'
      },
      { backoff: { base: 1, cap: 1 } },
    )
    expect(value).toBe('done')
    expect(attempts).toEqual([1, 2, 3])
  })

  it('rethrows the last error itself (not an AggregateError) after 1 + retries calls', async () => {
    let calls = 0
    const error = await retry(
      (context) => {
        calls++
        return failing(99)(context)
      },
      { retries: 2, backoff: { base: 1, cap: 1 } },
    ).catch((e: unknown) => e)
    expect(calls).toBe(3)
    expect(error).toBeInstanceOf(Error)
    expect((error as Error).message).toBe('attempt 3')
  })

  it('makes 4 calls at most by default (retries: 3)', async () => {
    let calls = 0
    vi.useFakeTimers({ toFake: ['setTimeout', 'clearTimeout'] })
    const done = retry(() => {
      calls++
      throw new Error('always')
    }).catch((e: unknown) => e)
    await vi.runAllTimersAsync()
    expect(await done).toHaveProperty('message', 'always')
    expect(calls).toBe(4)
  })

  it('tells onRetry each failed attempt, its error and the delay before the next', async () => {
    const events: RetryEvent[] = []
    await retry(failing(2), { backoff: { base: 2, cap: 2, jitter: 'none' }, onRetry: (event) => events.push(event) })
    expect(events.map(({ attempt, delayMs }) => ({ attempt, delayMs }))).toEqual([
      { attempt: 1, delayMs: 2 },
      { attempt: 2, delayMs: 2 },
    ])
    expect((events[1]!.error as Error).message).toBe('attempt 2')
  })

  describe('backoff', () => {
    it('decorrelated jitter (the default) draws from [base, 3 x previous], the previous starting at base', async () => {
      // random() = 0 gives the floor every time, random() -> 1 the ceiling.
      expect(await delaysOf(5, { base: 100, cap: 1_000_000, random: () => 0 })).toEqual([100, 100, 100, 100])
      const top = 1 - 2 ** -40
      expect(await delaysOf(5, { base: 100, cap: 1_000_000, random: () => top })).toEqual([300, 900, 2700, 8100])
      expect(await delaysOf(5, { base: 100, cap: 1000, random: () => top })).toEqual([300, 900, 1000, 1000])
    })

    it('decorrelated jitter keeps 2,000 seeded delays within [base, min(cap, 3 x previous)], spread evenly', async () => {
      const base = 10
      const cap = 5000
      const delays = await delaysOf(2001, { base, cap, random: seeded(17) })
      expect(delays).toHaveLength(2000)
      let previous = base
      const positions: number[] = []
      for (const delay of delays) {
        const high = Math.min(cap, previous * 3)
        expect(delay).toBeGreaterThanOrEqual(base)
        expect(delay).toBeLessThanOrEqual(high)
        if (previous * 3 < cap) positions.push((delay - base) / (previous * 3 - base))
        previous = delay
      }
      // Where each uncapped delay fell in its range: uniform, so the mean is
      // near 1/2 and each quarter holds near a quarter (fixed seed: no flake).
      expect(positions.length).toBeGreaterThan(500)
      const mean = positions.reduce((a, b) => a + b, 0) / positions.length
      expect(mean).toBeGreaterThan(0.45)
      expect(mean).toBeLessThan(0.55)
      for (let q = 0; q < 4; q++) {
        const share = positions.filter((p) => p >= q / 4 && p < (q + 1) / 4).length / positions.length
        expect(share).toBeGreaterThan(0.2)
        expect(share).toBeLessThan(0.3)
      }
    })

    it("full jitter draws from [0, min(cap, base x 2^(attempt-1))] and 'none' is that ceiling", async () => {
      const top = 1 - 2 ** -40
      expect(await delaysOf(6, { base: 10, cap: 100, jitter: 'none' })).toEqual([10, 20, 40, 80, 100])
      expect(await delaysOf(6, { base: 10, cap: 100, jitter: 'full', random: () => top })).toEqual([10, 20, 40, 80, 100])
      expect(await delaysOf(6, { base: 10, cap: 100, jitter: 'full', random: () => 0 })).toEqual([0, 0, 0, 0, 0])
    })

    it('a backoff function chooses each delay from the attempt and the previous delay', async () => {
      const seen: [number, number][] = []
      const delays = await delaysOf(4, (attempt, previous) => {
        seen.push([attempt, previous])
        return attempt * 7
      })
      expect(delays).toEqual([7, 14, 21])
      expect(seen).toEqual([
        [1, 0],
        [2, 7],
        [3, 14],
      ])
    })
  })

  it('stops at once when retryIf declines, rethrowing that error', async () => {
    const asked: [string, number][] = []
    let calls = 0
    const error = await retry(
      (context) => {
        calls++
        return failing(9)(context)
      },
      {
        retries: 5,
        backoff: { base: 1, cap: 1 },
        retryIf: (e, attempt) => {
          asked.push([(e as Error).message, attempt])
          return attempt < 2
        },
      },
    ).catch((e: unknown) => e)
    expect(calls).toBe(2)
    expect((error as Error).message).toBe('attempt 2')
    expect(asked).toEqual([
      ['attempt 1', 1],
      ['attempt 2', 2],
    ])
  })

  it('awaits an async retryIf', async () => {
    const value = await retry(failing(1), { backoff: { base: 1, cap: 1 }, retryIf: async () => true })
    expect(value).toBe('ok on 2')
  })

  it("rejects with the signal's reason as soon as it aborts during a wait, leaving no timer behind", async () => {
    const before = timers()
    const controller = new AbortController()
    const reason = new Error('caller gave up')
    let calls = 0
    const started = performance.now()
    const outcome = retry(
      () => {
        calls++
        throw new Error('down')
      },
      {
        retries: 5,
        backoff: { base: 60_000, cap: 60_000 },
        signal: controller.signal,
        onRetry: () => setImmediate(() => controller.abort(reason)),
      },
    )
    await expect(outcome).rejects.toBe(reason)
    expect(performance.now() - started).toBeLessThan(10_000)
    expect(calls).toBe(1)
    // At most as many as before: a timer an earlier test left may end meanwhile
    // (seen in CI), while retry's 60 s backoff timer, if leaked, would remain.
    expect(timers()).toBeLessThanOrEqual(before)
  })

  it("rejects with the signal's reason without calling fn when the signal is already aborted", async () => {
    const reason = new Error('already')
    const fn = vi.fn(() => 1)
    await expect(retry(fn, { signal: AbortSignal.abort(reason) })).rejects.toBe(reason)
    expect(fn).not.toHaveBeenCalled()
  })

  it("rejects with the signal's reason when it aborted during the attempt that failed", async () => {
    const controller = new AbortController()
    const reason = new Error('stop')
    let calls = 0
    const outcome = retry(
      ({ signal }) => {
        calls++
        controller.abort(reason)
        throw signal.reason
      },
      { signal: controller.signal, backoff: { base: 1, cap: 1 } },
    )
    await expect(outcome).rejects.toBe(reason)
    expect(calls).toBe(1)
  })

  it("hands each attempt the caller's signal, or one that never aborts", async () => {
    const controller = new AbortController()
    const signals: AbortSignal[] = []
    await retry(({ signal }) => void signals.push(signal), { signal: controller.signal })
    await retry(({ signal }) => void signals.push(signal))
    expect(signals[0]).toBe(controller.signal)
    expect(signals[1]).toBeInstanceOf(AbortSignal)
    expect(signals[1]!.aborted).toBe(false)
  })

  it('stops with what onRetry throws', async () => {
    const stop = new Error('from onRetry')
    await expect(
      retry(failing(3), {
        backoff: { base: 1, cap: 1 },
        onRetry: () => {
          throw stop
        },
      }),
    ).rejects.toBe(stop)
  })

  it.each([
    [{ retries: -1 }, RangeError, 'options.retries must be an integer >= 0, got -1'],
    [{ retries: 1.5 }, RangeError, 'options.retries'],
    [{ retries: '3' }, TypeError, "options.retries must be an integer, got '3'"],
    [{ signal: {} }, TypeError, 'options.signal must be an AbortSignal'],
    [{ retryIf: true }, TypeError, 'options.retryIf must be a function, got true'],
    [{ onRetry: 1 }, TypeError, 'options.onRetry must be a function'],
    [{ backoff: 5 }, TypeError, 'options.backoff must be an object, got 5'],
    [{ backoff: { base: -1 } }, RangeError, 'options.backoff.base must be between 0 and'],
    [{ backoff: { cap: 'x' } }, TypeError, 'options.backoff.cap must be a number of milliseconds'],
    [{ backoff: { base: 100, cap: 10 } }, RangeError, 'options.backoff.cap must be >= options.backoff.base (100), got 10'],
    [{ backoff: { jitter: 'equal' } }, TypeError, "options.backoff.jitter must be 'decorrelated', 'full' or 'none', got 'equal'"],
    [{ backoff: { random: 0.5 } }, TypeError, 'options.backoff.random must be a function'],
    ['fast', TypeError, "options must be an object, got 'fast'"],
  ])('rejects %o with a %O naming the field', async (options, type, message) => {
    const fn = vi.fn(() => 1)
    const outcome = retry(fn, options as never)
    await expect(outcome).rejects.toThrow(type)
    await expect(outcome).rejects.toThrow(message)
    expect(fn).not.toHaveBeenCalled()
  })

  it('rejects a delay from random() outside [0, 1) or from a backoff function, naming it', async () => {
    await expect(retry(failing(1), { backoff: { random: () => 1 } })).rejects.toThrow(
      new RangeError('options.backoff.random must return a number in [0, 1), got 1'),
    )
    await expect(retry(failing(1), { backoff: () => Number.NaN })).rejects.toThrow(RangeError)
    await expect(retry(failing(1), { backoff: () => Number.NaN })).rejects.toThrow('the delay options.backoff returned')
  })

  it('resolves with the type of what fn returns', () => {
    expectTypeOf(retry(async () => 1)).toEqualTypeOf<Promise<number>>()
    expectTypeOf(retry(({ attempt }) => String(attempt))).toEqualTypeOf<Promise<string>>()
  })

  it('rejects a non-function fn with a TypeError', async () => {
    await expect(retry('nope' as never)).rejects.toThrow(new TypeError("fn must be a function, got 'nope'"))
  })
})
