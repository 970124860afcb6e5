import { createRequire } from 'node:module'
import { setTimeout as sleep } from 'node:timers/promises'
import fc from 'fast-check'
import { describe, expect, it } from 'vitest'
import {
  InvalidHandleError,
  KeysFullError,
  RateLimiter,
  SluiceError,
  TimeoutError,
  TokenBucket,
  type RateLimitResult,
  type RateLimiterOptions,
  type LocalTokenBucketHandle,
} from 'sluice'

/** Asserts `value` is within [low, high]. */
const within = (value: number, low: number, high: number): void => {
  expect(value).toBeGreaterThanOrEqual(low)
  expect(value).toBeLessThanOrEqual(high)
}

describe('RateLimiter options', () => {
  it('has the documented defaults, and limit per windowMs is a burst of limit refilled over windowMs', () => {
    const limiter = new RateLimiter({ limit: 100, windowMs: 60_000 })
    expect(limiter.capacity).toBe(100)
    expect(limiter.windowMs).toBe(60_000)
    expect(limiter.algorithm).toBe('gcra')
    expect(limiter.maxKeys).toBe(100_000)
    expect(limiter.whenFull).toBe('evict')
    expect(limiter.size).toBe(0)
    expect(RateLimiter.MAX_KEY_BYTES).toBe(512)
  })

  it('takes the rate as for a TokenBucket: refillPerSecond, or tokensPerInterval per interval', () => {
    const perSecond = new RateLimiter({ capacity: 10, refillPerSecond: 5, algorithm: 'sliding-window', maxKeys: 7, whenFull: 'refuse' })
    expect(perSecond.windowMs).toBe(2_000) // 10 tokens at 5 a second
    expect([perSecond.algorithm, perSecond.maxKeys, perSecond.whenFull]).toEqual(['sliding-window', 7, 'refuse'])
    // A token every 33,333,333 ns (whole nanoseconds): the window is 2 ns short of 200 ms.
    expect(new RateLimiter({ capacity: 6, tokensPerInterval: 3, interval: 100 }).windowMs).toBe(199.999998)
  })

  it.each([
    [undefined, TypeError, /^options must give limit and windowMs, or capacity/],
    [{}, TypeError, /^options must give limit and windowMs, or capacity/],
    [5, TypeError, /^options must be an object/],
    [{ limit: 0, windowMs: 1000 }, RangeError, /^options\.limit must be an integer between 1 and 4294967295, got 0/],
    [{ limit: 1.5, windowMs: 1000 }, RangeError, /^options\.limit/],
    [{ limit: 2 ** 32, windowMs: 1000 }, RangeError, /^options\.limit/],
    [{ limit: '5', windowMs: 1000 }, TypeError, /^options\.limit must be an integer, got '5'/],
    [{ limit: 5 }, TypeError, /^options\.windowMs must be a positive number, got undefined/],
    [{ windowMs: 1000 }, TypeError, /^options\.limit/],
    [{ limit: 5, windowMs: 0 }, RangeError, /^options\.windowMs must be a positive number, got 0/],
    [{ limit: 5, windowMs: Number.NaN }, RangeError, /^options\.windowMs/],
    [{ limit: 5, windowMs: Infinity }, RangeError, /^options\.windowMs/],
    [{ limit: 5, windowMs: '1000' }, TypeError, /^options\.windowMs/],
    [{ limit: 1_000_000, windowMs: 1e-4 }, RangeError, /^options\.windowMs must leave at least 1 ns per token/],
    [{ limit: 5, windowMs: 1e30 }, RangeError, /^options\.windowMs must be shorter than 2\^63 ns/],
    [{ limit: 5, windowMs: 1000, capacity: 5 }, TypeError, /not both/],
    [{ limit: 5, windowMs: 1000, refillPerSecond: 5 }, TypeError, /not both/],
    [{ capacity: 5 }, TypeError, /refillPerSecond/],
    [{ capacity: 0, refillPerSecond: 1 }, RangeError, /^options\.capacity/],
    [{ capacity: '5', refillPerSecond: 1 }, TypeError, /^options\.capacity/],
    [{ capacity: 5, refillPerSecond: -1 }, RangeError, /^options\.refillPerSecond/],
    [{ capacity: 5, tokensPerInterval: 1 }, TypeError, /^options\.interval/],
    [{ capacity: 5, refillPerSecond: 1, interval: 5 }, TypeError, /not both/],
    [{ capacity: 2 ** 32 - 1, refillPerSecond: 1e-4 }, RangeError, /^options\.capacity \(4294967295\) tokens at options\.refillPerSecond 0\.0001 take longer than 2\^63 ns/],
    // (2^32 - 1) * (2^32 + 1) ns = 2^64 - 1: a bucket's limit, but a key of this limiter took without limit.
    [{ capacity: 2 ** 32 - 1, tokensPerInterval: 1, interval: 4294.967297 }, RangeError, /^options\.capacity \(4294967295\) tokens .* take longer than 2\^63 ns/],
    [{ limit: 2, windowMs: 2 ** 63 / 1e6 }, RangeError, /^options\.windowMs must be shorter than 2\^63 ns/],
    [{ limit: 5, windowMs: 1000, algorithm: 'fixed-window' }, TypeError, /^options\.algorithm must be 'gcra' or 'sliding-window', got 'fixed-window'/],
    [{ limit: 5, windowMs: 1000, algorithm: 1 }, TypeError, /^options\.algorithm/],
    [{ limit: 5, windowMs: 1000, maxKeys: 0 }, RangeError, /^options\.maxKeys must be an integer between 1 and/],
    [{ limit: 5, windowMs: 1000, maxKeys: 1.5 }, RangeError, /^options\.maxKeys/],
    [{ limit: 5, windowMs: 1000, maxKeys: '10' }, TypeError, /^options\.maxKeys/],
    [{ limit: 5, windowMs: 1000, whenFull: 'drop' }, TypeError, /^options\.whenFull must be 'evict' or 'refuse', got 'drop'/],
    [{ limit: 5, windowMs: 1000, whenFull: 1 }, TypeError, /^options\.whenFull/],
  ])('new RateLimiter(%o) throws naming the field', (options, type, message) => {
    expect(() => new RateLimiter(options as never)).toThrow(type)
    expect(() => new RateLimiter(options as never)).toThrow(message)
  })

  it('any options either make a limiter or throw a TypeError or RangeError naming options (never a native error)', () => {
    const number = fc.oneof(
      fc.double({ noNaN: false }),
      fc.integer({ min: -2, max: 2 ** 32 + 1 }),
      fc.constantFrom(2 ** 32 - 1, 2 ** 53, 2 ** 64, 1e-9, 1e9, 1e9 + 1, Number.MIN_VALUE, Number.MAX_VALUE),
    )
    const value = fc.oneof(number, fc.constant(undefined), fc.constantFrom('1', null, 1n, {}, 'gcra', 'sliding-window', 'evict', 'refuse'))
    const anything = fc.record(
      { limit: value, windowMs: value, capacity: value, refillPerSecond: value, tokensPerInterval: value, interval: value, algorithm: value, maxKeys: value, whenFull: value },
      { requiredKeys: [] },
    )
    const count = fc.integer({ min: 1, max: 2 ** 32 - 1 })
    const rate = fc.double({ min: 1e-12, max: 1e10, noNaN: true })
    const common = {
      algorithm: fc.constantFrom('gcra' as const, 'sliding-window' as const),
      maxKeys: fc.integer({ min: 1, max: 1_000_000 }),
      whenFull: fc.constantFrom('evict' as const, 'refuse' as const),
    }
    const plausible = fc.oneof(
      fc.record({ limit: count, windowMs: rate, ...common }, { requiredKeys: ['limit', 'windowMs'] }),
      fc.record({ capacity: count, refillPerSecond: rate, ...common }, { requiredKeys: ['capacity', 'refillPerSecond'] }),
      fc.record({ capacity: count, tokensPerInterval: rate, interval: rate }),
    )
    fc.assert(
      fc.property(fc.oneof(anything, plausible), (opts) => {
        try {
          const limiter = new RateLimiter(opts as RateLimiterOptions)
          expect(limiter.capacity).toBe((opts as { limit?: number }).limit ?? (opts as { capacity?: number }).capacity)
          expect(limiter.tryTake('k').allowed).toBe(true)
        } catch (error) {
          expect([TypeError, RangeError]).toContain((error as Error).constructor)
          expect((error as Error).message).toMatch(/options/)
        }
      }),
      { numRuns: 1_000, endOnFailure: true },
    )
  })
})

describe('RateLimiter with GCRA', () => {
  // 10 tokens, one every 100 ms.
  const options = { capacity: 10, refillPerSecond: 10 } as const

  it('a new key starts full; tryTake answers what is left, when to retry and when the key is full again', () => {
    const limiter = new RateLimiter(options)
    expect(limiter.tryTake('a')).toEqual({ allowed: true, remaining: 9, retryAfterMs: 0, resetAfterMs: 100 })
    const rest = limiter.tryTake('a', 9)
    expect(rest).toMatchObject({ allowed: true, remaining: 0, retryAfterMs: 0 })
    within(rest.resetAfterMs, 950, 1000)
    const denied = limiter.tryTake('a')
    expect(denied).toMatchObject({ allowed: false, remaining: 0, reason: 'limited' })
    within(denied.retryAfterMs, 50, 100)
    within(denied.resetAfterMs, 950, 1000)
    // A request of 3 waits for 3 tokens.
    within(limiter.tryTake('a', 3).retryAfterMs, 250, 300)
  })

  it('refills continuously, one token per interval', async () => {
    const limiter = new RateLimiter(options)
    limiter.tryTake('a', 10)
    await sleep(230)
    const result = limiter.tryTake('a', 2)
    expect(result.allowed).toBe(true)
    expect(limiter.tryTake('a').allowed).toBe(false)
  })

  it('peek answers what a take would get, taking nothing', () => {
    const limiter = new RateLimiter(options)
    expect(limiter.peek('a')).toEqual({ allowed: true, remaining: 10, retryAfterMs: 0, resetAfterMs: 0 })
    limiter.tryTake('a', 8)
    expect(limiter.peek('a', 2)).toMatchObject({ allowed: true, remaining: 2 })
    const over = limiter.peek('a', 3)
    expect(over).toMatchObject({ allowed: false, remaining: 2, reason: 'limited' })
    within(over.retryAfterMs, 50, 100)
    expect(limiter.tryTake('a', 2).allowed).toBe(true) // the peeks took nothing
  })

  it('rejects n outside 1..capacity, naming n', async () => {
    const limiter = new RateLimiter(options)
    expect(() => limiter.tryTake('a', 11)).toThrow(new RangeError('n must be an integer between 1 and 10, got 11'))
    expect(() => limiter.tryTake('a', 0)).toThrow(RangeError)
    expect(() => limiter.peek('a', 1.5)).toThrow(/^n must be/)
    expect(() => limiter.tryTake('a', '2' as never)).toThrow(TypeError)
    await expect(limiter.take('a', 11)).rejects.toThrow(RangeError)
    expect(limiter.peek('a').remaining).toBe(10)
  })
})

describe('RateLimiter with a sliding window', () => {
  // 4 per window of 1 s.
  const options = { limit: 4, windowMs: 1_000, algorithm: 'sliding-window' } as const

  it('counts up to the limit in a window; a key is fresh again once two windows have passed', () => {
    const limiter = new RateLimiter(options)
    const first = limiter.tryTake('a')
    expect(first).toMatchObject({ allowed: true, remaining: 3, retryAfterMs: 0 })
    // Reset comes at the end of the next window: between 1 and 2 windows away.
    within(first.resetAfterMs, 1_001, 2_000)
    expect(limiter.tryTake('a', 3)).toMatchObject({ allowed: true, remaining: 0 })
    const denied = limiter.tryTake('a')
    expect(denied).toMatchObject({ allowed: false, remaining: 0, reason: 'limited' })
    // One more fits once a quarter of the next window has passed, when the
    // previous window's 4 weigh 3: 3/4 of a window before the reset.
    within(denied.resetAfterMs - denied.retryAfterMs, 749, 751)
  })

  it('GCRA is full a window after a burst, while the sliding window still counts it just past the next window edge', async () => {
    const windowMs = 1_000
    const gcra = new RateLimiter({ limit: 4, windowMs })
    const sliding = new RateLimiter({ limit: 4, windowMs, algorithm: 'sliding-window' })
    // How far into its window the sliding limiter is: a new key resets two windows minus that.
    let probes = 0
    const into = (): number => 2 * windowMs - sliding.tryTake(`probe-${probes++}`).resetAfterMs
    for (let attempt = 0; ; attempt++) {
      // Start 20-100 ms into a window.
      for (let e = into(); e < 20 || e > 100; e = into()) await sleep(e < 20 ? 20 - e : windowMs + 20 - e)
      const burstAt = performance.now()
      expect(gcra.tryTake('k', 4).allowed).toBe(true)
      expect(sliding.tryTake('k', 4).allowed).toBe(true)
      await sleep(windowMs + 30)
      const slidingAnswer = sliding.tryTake('k')
      const gcraAnswer = gcra.tryTake('k', 4)
      const late = performance.now() - burstAt - windowMs
      // Past 1/4 of the next window, the burst weighs 3 and one more fits: a
      // run this late on a loaded machine proves nothing, so try again.
      if (late + 100 > windowMs / 4 && attempt < 3) {
        gcra.reset('k')
        sliding.reset('k')
        continue
      }
      // GCRA refilled all 4 tokens during the window since the burst.
      expect(gcraAnswer.allowed).toBe(true)
      // The sliding window weighs the previous window's 4 by how much of it
      // still overlaps: 4 x 0.9-0.95 + 1 > 4 until a quarter into the window.
      expect(slidingAnswer).toMatchObject({ allowed: false, reason: 'limited' })
      within(slidingAnswer.retryAfterMs, 1, 250)
      break
    }
  })
})

describe('RateLimiter keys', () => {
  const options = { limit: 2, windowMs: 60_000 } as const

  it('limits each key on its own', () => {
    const limiter = new RateLimiter(options)
    expect(limiter.tryTake('a', 2).allowed).toBe(true)
    expect(limiter.tryTake('a').allowed).toBe(false)
    expect(limiter.tryTake('b', 2).allowed).toBe(true)
    expect(limiter.tryTake(7, 2).allowed).toBe(true)
    expect(limiter.size).toBe(3)
  })

  it('1 and "1" are different keys, and -0 is 0', () => {
    const limiter = new RateLimiter(options)
    expect(limiter.tryTake(1, 2).allowed).toBe(true)
    expect(limiter.tryTake(1).allowed).toBe(false)
    expect(limiter.tryTake('1').remaining).toBe(1)
    expect(limiter.tryTake(0, 2).allowed).toBe(true)
    expect(limiter.tryTake(-0).allowed).toBe(false)
    expect(limiter.tryTake(Number.MAX_SAFE_INTEGER).allowed).toBe(true)
    expect(limiter.tryTake(-Number.MAX_SAFE_INTEGER).allowed).toBe(true)
  })

  it('string keys are compared as their UTF-8 bytes, non-ASCII included', () => {
    const limiter = new RateLimiter(options)
    for (const key of ['ключ', '🔑', 'caf\u00e9']) {
      expect(limiter.tryTake(key, 2).allowed).toBe(true)
      expect(limiter.tryTake(key).allowed).toBe(false)
    }
    // Other bytes, other keys: another emoji, and é as e + a combining accent.
    expect(limiter.tryTake('🗝').allowed).toBe(true)
    expect(limiter.tryTake('cafe\u0301').allowed).toBe(true)
    // U+FFFD itself is a key like any other.
    expect(limiter.tryTake('\ufffd', 2).allowed).toBe(true)
    expect(limiter.tryTake('a\ufffdb', 2).allowed).toBe(true)
  })

  it('refuses a key with a lone surrogate, which has no UTF-8 and would share a cell with U+FFFD', () => {
    const limiter = new RateLimiter(options)
    for (const key of ['\ud800', '\udc00', 'a\udbffb', '\ufffd\ud800', 'x'.repeat(100) + '\ud83d']) {
      expect(() => limiter.tryTake(key), JSON.stringify(key)).toThrow(RangeError)
      expect(() => limiter.tryTake(key)).toThrow(/^key must be .* got a string with a lone surrogate$/)
      expect(() => limiter.peek(key)).toThrow(RangeError)
      expect(() => limiter.reset(key)).toThrow(RangeError)
    }
    expect(limiter.size).toBe(0)
    // A surrogate pair is one character: fine.
    expect(limiter.tryTake('\ud83d\udd11').allowed).toBe(true)
    expect(limiter.tryTake('🔑').allowed).toBe(true)
    expect(limiter.tryTake('🔑').allowed).toBe(false)
  })

  it.each([
    ['ASCII', 'a'.repeat(512), 'a'.repeat(513)],
    ['2-byte', 'é'.repeat(256), `${'é'.repeat(256)}a`],
    ['3-byte', '€'.repeat(170) + 'ab', '€'.repeat(171)],
    ['4-byte', '🔑'.repeat(128), `${'🔑'.repeat(128)}a`],
  ])('a %s key of 512 UTF-8 bytes is fine and one of 513 is a RangeError naming key', (_, longest, tooLong) => {
    const limiter = new RateLimiter(options)
    expect(Buffer.byteLength(longest)).toBe(512)
    expect(Buffer.byteLength(tooLong)).toBe(513)
    expect(limiter.tryTake(longest).allowed).toBe(true)
    expect(limiter.tryTake(longest).allowed).toBe(true)
    expect(limiter.tryTake(longest).allowed).toBe(false)
    expect(() => limiter.tryTake(tooLong)).toThrow(RangeError)
    expect(() => limiter.tryTake(tooLong)).toThrow(/^key must be a string of 1 to 512 UTF-8 bytes or a safe integer, got a string of (at least )?513 bytes/)
    // A key differing only past byte 512 is refused too, not cut to its first 512.
    expect(() => limiter.tryTake(longest + 'x')).toThrow(RangeError)
  })

  it.each([
    ['an empty string', '', RangeError],
    ['a string of 100,000 characters', 'x'.repeat(100_000), RangeError],
    ['NaN', Number.NaN, RangeError],
    ['Infinity', Infinity, RangeError],
    ['a fraction', 1.5, RangeError],
    ['an unsafe integer', 2 ** 53, RangeError],
    ['a negative unsafe integer', -(2 ** 53), RangeError],
    ['undefined', undefined, TypeError],
    ['null', null, TypeError],
    ['a boolean', true, TypeError],
    ['a bigint', 1n, TypeError],
    ['a symbol', Symbol('k'), TypeError],
    ['an object', { toString: () => 'a' }, TypeError],
    ['a String object', new String('a'), TypeError],
    ['an array', ['a'], TypeError],
    ['a function', () => 'a', TypeError],
  ])('a key that is %s is a %s naming key, from every method', async (_, key, type) => {
    const limiter = new RateLimiter(options)
    for (const call of [() => limiter.tryTake(key as never), () => limiter.peek(key as never), () => limiter.reset(key as never)]) {
      expect(call).toThrow(type)
      expect(call).toThrow(/^key must be/)
    }
    await expect(limiter.take(key as never)).rejects.toThrow(type)
    expect(limiter.size).toBe(0)
  })
})

describe('RateLimiter with hostile arguments', () => {
  it('any key and n to any method either work or throw a TypeError or RangeError naming key or n, and the limiter stays consistent', async () => {
    const limiter = new RateLimiter({ limit: 3, windowMs: 60_000, maxKeys: 50 })
    const special = fc.constantFrom<unknown>(
      '', 'a'.repeat(513), '\ud800', '\u0000', 0, -0, 2 ** 53, -(2 ** 53), Number.NaN, Infinity, 1.5, 1n, true, null, undefined,
      Symbol('k'), {}, [], () => 1, new String('a'), new Float64Array(3), Object.create(null),
    )
    const key = fc.oneof(fc.string({ unit: 'binary', maxLength: 600 }), fc.integer(), fc.double(), fc.anything(), special)
    const n = fc.oneof(fc.integer({ min: -1, max: 5 }), fc.double(), special)
    const method = fc.constantFrom('tryTake', 'peek', 'take', 'reset')
    await fc.assert(
      fc.asyncProperty(method, key, n, async (name, k, count) => {
        let outcome: unknown
        try {
          const call = (limiter[name] as (key: unknown, n: unknown, options?: unknown) => unknown).call(limiter, k, count, { timeout: 0 })
          outcome = await Promise.resolve(call).catch((error: unknown) => (error instanceof TimeoutError ? undefined : Promise.reject(error)))
        } catch (error) {
          expect([TypeError, RangeError]).toContain((error as Error).constructor)
          expect((error as Error).message).toMatch(/^(key|n) must be/)
          return
        }
        if (name === 'tryTake' || name === 'peek') {
          const result = outcome as RateLimitResult
          expect(Number.isInteger(result.remaining) && result.remaining >= 0 && result.remaining <= 3).toBe(true)
          expect(Number.isInteger(result.retryAfterMs) && Number.isInteger(result.resetAfterMs)).toBe(true)
        }
        expect(limiter.size).toBeLessThanOrEqual(50)
      }),
      { numRuns: 1_000, endOnFailure: true },
    )
  })
})

describe('RateLimiter take', () => {
  it('waits for the refill', async () => {
    const limiter = new RateLimiter({ capacity: 2, tokensPerInterval: 1, interval: 20 })
    limiter.tryTake('k', 2)
    const started = performance.now()
    await limiter.take('k', 2)
    expect(performance.now() - started).toBeGreaterThanOrEqual(35) // 2 tokens at 1 per 20 ms
  })

  it('serves takes on one key in order, a large one before later small ones, and leaves other keys alone', async () => {
    const limiter = new RateLimiter({ capacity: 4, refillPerSecond: 400 })
    limiter.tryTake('k', 4)
    const order: string[] = []
    const big = limiter.take('k', 4).then(() => order.push('big'))
    const small = limiter.take('k', 1).then(() => order.push('small'))
    expect(limiter.tryTake('k')).toMatchObject({ allowed: false, remaining: 0 }) // owed to the waiters
    expect(limiter.tryTake('other', 4).allowed).toBe(true)
    await Promise.all([big, small])
    expect(order).toEqual(['big', 'small'])
  })

  it('abort rejects with the reason and gives the tokens back', async () => {
    const limiter = new RateLimiter({ capacity: 2, refillPerSecond: 10 })
    limiter.tryTake('k', 2)
    const controller = new AbortController()
    const waiting = limiter.take('k', 2, { signal: controller.signal })
    controller.abort(new Error('stop'))
    await expect(waiting).rejects.toThrow('stop')
    // The refund means the next 2 tokens come after 200 ms, not 400.
    const started = performance.now()
    await limiter.take('k', 2)
    expect(performance.now() - started).toBeLessThan(350)
  })

  it('an already-aborted signal rejects at once and takes nothing', async () => {
    const limiter = new RateLimiter({ limit: 1, windowMs: 1_000 })
    await expect(limiter.take('k', 1, { signal: AbortSignal.abort('no') })).rejects.toBe('no')
    expect(limiter.peek('k').remaining).toBe(1)
  })

  it('a take that cannot be served within its timeout rejects at once with TimeoutError, taking nothing', async () => {
    for (const algorithm of ['gcra', 'sliding-window'] as const) {
      const limiter = new RateLimiter({ limit: 1, windowMs: 200, algorithm })
      limiter.tryTake('k')
      const started = performance.now()
      await expect(limiter.take('k', 1, { timeout: 100 })).rejects.toBeInstanceOf(TimeoutError)
      expect(performance.now() - started).toBeLessThan(50)
      // Nothing was reserved: a reservation would have pushed the retry a window further.
      expect(limiter.peek('k').retryAfterMs).toBeLessThanOrEqual(algorithm === 'gcra' ? 200 : 400)
      await expect(limiter.take('k', 1, { timeout: 5_000 })).resolves.toBeUndefined()
    }
  })

  it('rejects bad options naming them', async () => {
    const limiter = new RateLimiter({ limit: 1, windowMs: 1_000 })
    await expect(limiter.take('k', 1, { timeout: -1 })).rejects.toThrow(/^options\.timeout/)
    await expect(limiter.take('k', 1, { signal: 'x' as never })).rejects.toThrow(/^options\.signal/)
    expect(limiter.size).toBe(0)
  })
})

describe('RateLimiter maxKeys', () => {
  it("whenFull 'evict' forgets the least recently used key to make room for a new one", () => {
    const limiter = new RateLimiter({ limit: 2, windowMs: 60_000, maxKeys: 2 })
    expect(limiter.tryTake('a').allowed).toBe(true)
    expect(limiter.tryTake('b').allowed).toBe(true)
    expect(limiter.tryTake('a').allowed).toBe(true) // a used last: b is the least recent
    expect(limiter.tryTake('c', 2).allowed).toBe(true) // evicts b
    expect(limiter.size).toBe(2)
    expect(limiter.tryTake('a')).toMatchObject({ allowed: false, reason: 'limited' }) // kept
    expect(limiter.tryTake('b', 2).allowed).toBe(true) // forgotten: a fresh key again
  })

  it("whenFull 'refuse' answers keys-full for a new key, rejects its take with KeysFullError, and keeps the live keys", async () => {
    const limiter = new RateLimiter({ limit: 1, windowMs: 60_000, maxKeys: 2, whenFull: 'refuse' })
    expect(limiter.tryTake('a').allowed).toBe(true)
    expect(limiter.tryTake('b').allowed).toBe(true)
    // peek answers what tryTake would: no room for 'c' either.
    expect(limiter.peek('c')).toMatchObject({ allowed: false, remaining: 0, reason: 'keys-full' })
    const refused: RateLimitResult = limiter.tryTake('c')
    expect(refused).toMatchObject({ allowed: false, remaining: 0, reason: 'keys-full' })
    expect(limiter.peek('c')).toEqual(refused)
    const error = await limiter.take('c').catch((e: unknown) => e)
    expect(error).toBeInstanceOf(KeysFullError)
    expect(error).toBeInstanceOf(SluiceError)
    expect(error).toMatchObject({ name: 'KeysFullError', code: 'ERR_SLUICE_KEYS_FULL' })
    expect((error as Error).message).toMatch(/2 keys are live \(options\.maxKeys\)/)
    expect(limiter.tryTake('a')).toMatchObject({ allowed: false, reason: 'limited' })
    expect(limiter.reset('a')).toBe(true)
    expect(limiter.tryTake('c').allowed).toBe(true)
  })

  it('a key back to its full quota no longer takes room', async () => {
    const limiter = new RateLimiter({ limit: 1, windowMs: 30, maxKeys: 1, whenFull: 'refuse' })
    expect(limiter.tryTake('a').allowed).toBe(true)
    expect(limiter.tryTake('b').reason).toBe('keys-full')
    await sleep(40)
    expect(limiter.tryTake('b').allowed).toBe(true)
  })
})

describe('RateLimiter reset and handles', () => {
  it('reset forgets a key, which starts full again; false for a key it did not know', () => {
    const limiter = new RateLimiter({ limit: 2, windowMs: 60_000 })
    limiter.tryTake('k', 2)
    expect(limiter.reset('k')).toBe(true)
    expect(limiter.tryTake('k', 2).allowed).toBe(true)
    expect(limiter.reset('never')).toBe(false)
    expect(limiter.reset(1)).toBe(false)
  })

  it('RateLimiter.from(limiter.handle) is the same limiter, with the same options', () => {
    const limiter = new RateLimiter({ limit: 3, windowMs: 1_500, algorithm: 'sliding-window', maxKeys: 50, whenFull: 'refuse' })
    const handle = limiter.handle
    expect(handle).toEqual({ kind: 'sluice:RateLimiter', id: expect.any(Number), metrics: expect.any(SharedArrayBuffer) })
    const other = RateLimiter.from(structuredClone(handle))
    expect([other.capacity, other.windowMs, other.algorithm, other.maxKeys, other.whenFull]).toEqual([3, 1_500, 'sliding-window', 50, 'refuse'])
    expect(limiter.tryTake('k', 3).allowed).toBe(true)
    expect(other.tryTake('k')).toMatchObject({ allowed: false, reason: 'limited' })
    expect(other.size).toBe(1)
  })

  it('a forged, foreign or malformed handle is refused', () => {
    expect(() => RateLimiter.from({ kind: 'sluice:RateLimiter', id: 2 ** 40 })).toThrow(InvalidHandleError)
    const bucket = new TokenBucket({ capacity: 1, refillPerSecond: 1 })
    expect(() => RateLimiter.from({ kind: 'sluice:RateLimiter', id: (bucket.handle as LocalTokenBucketHandle).id })).toThrow(InvalidHandleError)
    expect(() => RateLimiter.from(bucket.handle as never)).toThrow(TypeError)
    expect(() => RateLimiter.from({ kind: 'sluice:RateLimiter' } as never)).toThrow(/^handle must be a RateLimiter handle/)
  })
})

describe('RateLimiter binding', () => {
  interface Binding {
    NativeRateLimiter: new (capacity: number, intervalNanos: number, algorithm: string, maxKeys: number, whenFull: string) => {
      decisionHandle(out: unknown): object
      fastHandle(): object
    }
    limiterTryTake(handle: unknown, key: unknown, n: number): number
  }
  const binding = createRequire(import.meta.url)('../packages/node/binding.js') as Binding

  it('writes decisions only into a Float64Array over shared memory, which cannot be detached under it', () => {
    const native = new binding.NativeRateLimiter(5, 1e6, 'gcra', 10, 'evict')
    for (const out of [
      new Float64Array(3), // detachable: its memory could go away under native code
      new Float64Array(new SharedArrayBuffer(16)),
      new Int32Array(new SharedArrayBuffer(24)),
      new Float64Array(new SharedArrayBuffer(32)).subarray(2),
      [0, 0, 0],
      undefined,
    ]) {
      expect(() => native.decisionHandle(out)).toThrow(/^out must be a Float64Array of at least 3 over a SharedArrayBuffer/)
    }
    const out = new Float64Array(new SharedArrayBuffer(24))
    const handle = native.decisionHandle(out)
    expect(binding.limiterTryTake(handle, 'k', 2)).toBe(1)
    expect([...out]).toEqual([3, 0, 2])
  })

  it('refuses any handle but a decision handle, and leaves an unusable call without effect', () => {
    const native = new binding.NativeRateLimiter(5, 1e6, 'gcra', 10, 'evict')
    for (const handle of [native.fastHandle(), {}, null, 1]) expect(() => binding.limiterTryTake(handle, 'k', 1)).toThrow(TypeError)
    expect(() => binding.limiterTryTake(native.fastHandle(), 'k', 1)).toThrow(/^the first argument must be a sluice rate limiter decision handle/)
    expect(() => binding.limiterTryTake(native.decisionHandle(new Float64Array(new SharedArrayBuffer(24))), 'k', 0)).toThrow(RangeError)
  })
})
