import fc from 'fast-check'
import { describe, expect, it } from 'vitest'
import { InvalidHandleError, TimeoutError, TokenBucket, type LocalTokenBucketHandle, type TokenBucketOptions } from 'sluice'
import { eventually, nextMessage, runWorker } from './helpers.js'

// A bucket lives in JavaScript until its handle is read, then in native
// memory: every behaviour below holds in both.
describe.each(['kept in this thread', 'shared'] as const)('TokenBucket (%s)', (mode) => {
  const bucketOf = (options: TokenBucketOptions): TokenBucket => {
    const bucket = new TokenBucket(options)
    if (mode === 'shared') void bucket.handle
    return bucket
  }

  it('starts full and tryTake takes until empty', () => {
    const bucket = bucketOf({ capacity: 3, refillPerSecond: 1 })
    expect(bucket.available).toBe(3)
    expect(bucket.tryTake(2)).toBe(true)
    expect(bucket.tryTake(2)).toBe(false)
    expect(bucket.tryTake()).toBe(true)
    expect(bucket.tryTake()).toBe(false)
  })

  it('take waits for the refill', async () => {
    const bucket = bucketOf({ capacity: 2, tokensPerInterval: 1, interval: 20 })
    expect(bucket.tryTake(2)).toBe(true)
    const started = performance.now()
    await bucket.take(2)
    expect(performance.now() - started).toBeGreaterThanOrEqual(35) // 2 tokens at 1 per 20 ms
  })

  it('serves waiting takes in order, a large one before later small ones', async () => {
    const bucket = bucketOf({ capacity: 4, refillPerSecond: 400 })
    bucket.tryTake(4)
    const order: string[] = []
    const big = bucket.take(4).then(() => order.push('big'))
    const small = bucket.take(1).then(() => order.push('small'))
    expect(bucket.tryTake()).toBe(false) // owed to the waiters
    await Promise.all([big, small])
    expect(order).toEqual(['big', 'small'])
  })

  it('abort rejects with the reason and gives the tokens back', async () => {
    const bucket = bucketOf({ capacity: 2, refillPerSecond: 10 })
    bucket.tryTake(2)
    const controller = new AbortController()
    const waiting = bucket.take(2, { signal: controller.signal })
    controller.abort(new Error('stop'))
    await expect(waiting).rejects.toThrow('stop')
    // The refund means the next 2 tokens come after 200 ms, not 400.
    const started = performance.now()
    await bucket.take(2)
    expect(performance.now() - started).toBeLessThan(350)
  })

  it('an already-aborted signal rejects at once and takes nothing', async () => {
    const bucket = bucketOf({ capacity: 1, refillPerSecond: 1 })
    await expect(bucket.take(1, { signal: AbortSignal.abort('no') })).rejects.toBe('no')
    expect(bucket.available).toBe(1)
  })

  it('a take that cannot be served within its timeout rejects at once, taking nothing', async () => {
    const bucket = bucketOf({ capacity: 1, refillPerSecond: 1 })
    bucket.tryTake()
    const started = performance.now()
    await expect(bucket.take(1, { timeout: 100 })).rejects.toBeInstanceOf(TimeoutError)
    expect(performance.now() - started).toBeLessThan(50)
    await expect(bucket.take(1, { timeout: 5_000 })).resolves.toBeUndefined()
  })

  it.each([
    [{ capacity: 0, refillPerSecond: 1 }, RangeError, /options\.capacity/],
    [{ capacity: 1.5, refillPerSecond: 1 }, RangeError, /options\.capacity/],
    [{ capacity: '1', refillPerSecond: 1 }, TypeError, /options\.capacity/],
    [{ capacity: 1, refillPerSecond: 0 }, RangeError, /options\.refillPerSecond/],
    [{ capacity: 1, refillPerSecond: Number.NaN }, RangeError, /options\.refillPerSecond/],
    [{ capacity: 1, refillPerSecond: 2e9 }, RangeError, /refill rate/],
    [{ capacity: 1 }, TypeError, /refillPerSecond/],
    [{ capacity: 1, tokensPerInterval: 1 }, TypeError, /options\.interval/],
    [{ capacity: 1, refillPerSecond: 1, interval: 5 }, TypeError, /not both/],
  ])('new TokenBucket(%o) throws naming the field', (options, type, message) => {
    expect(() => new TokenBucket(options as never)).toThrow(type)
    expect(() => new TokenBucket(options as never)).toThrow(message)
  })

  it('rejects n outside 1..capacity', async () => {
    const bucket = bucketOf({ capacity: 2, refillPerSecond: 1 })
    expect(() => bucket.tryTake(3)).toThrow(new RangeError('n must be an integer between 1 and 2, got 3'))
    await expect(bucket.take(0)).rejects.toThrow(RangeError)
    expect(bucket.available).toBe(2)
  })

  it('a capacity and interval whose product is 2^63 ns or more is a RangeError naming the fields', () => {
    // 2^32 - 1 tokens, one per 2^33 ns: the burst is past 2^64 ns.
    const make = () => new TokenBucket({ capacity: 2 ** 32 - 1, tokensPerInterval: 1, interval: 2 ** 33 / 1e6 })
    expect(make).toThrow(RangeError)
    expect(make).toThrow(
      /^options\.capacity \(4294967295\) tokens at options\.tokensPerInterval 1 per options\.interval 8589\.934592 ms take longer than 2\^63 ns/,
    )
    // Just past 2^63 ns (2^32 - 1 tokens, one per 2^31 + 1 ns): near 2^64 a
    // saturated time sat within one burst of now and every take went through.
    expect(() => new TokenBucket({ capacity: 2 ** 32 - 1, tokensPerInterval: 1, interval: 2147.483649 })).toThrow(RangeError)
    const largest = new TokenBucket({ capacity: 2 ** 31, tokensPerInterval: 1, interval: 4294.967295 })
    expect(largest.tryTake(2 ** 31)).toBe(true)
    expect(largest.tryTake(2 ** 31)).toBe(false)
    expect(() => new TokenBucket({ capacity: 2 ** 32 - 1, refillPerSecond: 1e-4 })).toThrow(
      /^options\.capacity \(4294967295\) tokens at options\.refillPerSecond 0\.0001 take longer/,
    )
    // Just inside the limit is fine: (2^32 - 1) * 2^31 < 2^63.
    expect(new TokenBucket({ capacity: 2 ** 32 - 1, tokensPerInterval: 1, interval: 2 ** 31 / 1e6 }).capacity).toBe(2 ** 32 - 1)
  })

  it('any options either make a bucket or throw a TypeError or RangeError (never a native error)', () => {
    const number = fc.oneof(
      fc.double({ noNaN: false }),
      fc.integer({ min: -2, max: 2 ** 32 + 1 }),
      fc.constantFrom(2 ** 32 - 1, 2 ** 53, 2 ** 64, 1e-9, 1e9, 1e9 + 1, Number.MIN_VALUE, Number.MAX_VALUE),
    )
    const value = fc.oneof(number, fc.constant(undefined), fc.constantFrom('1', null, 1n, {}))
    const anything = fc.record(
      { capacity: value, refillPerSecond: value, tokensPerInterval: value, interval: value },
      { requiredKeys: [] },
    )
    // Valid fields one by one, in combinations that may not be (a large
    // capacity at a slow rate overflows the native burst).
    const capacity = fc.integer({ min: 1, max: 2 ** 32 - 1 })
    const rate = fc.double({ min: 1e-12, max: 1e10, noNaN: true })
    const plausible = fc.oneof(
      fc.record({ capacity, refillPerSecond: rate }),
      fc.record({ capacity, tokensPerInterval: rate, interval: rate }),
    )
    const options = fc.oneof(anything, plausible)
    fc.assert(
      fc.property(options, (opts) => {
        try {
          const bucket = bucketOf(opts as never)
          expect(bucket.capacity).toBe(opts.capacity)
        } catch (error) {
          expect([TypeError, RangeError]).toContain((error as Error).constructor)
          expect((error as Error).message).toMatch(/options/)
        }
      }),
      // No shrinking: a failing case is shown as found (shrinking doubles takes minutes).
      { numRuns: 2_000, endOnFailure: true },
    )
  })

  it('a forged handle gives InvalidHandleError', () => {
    expect(() => TokenBucket.from({ kind: 'sluice:TokenBucket', id: 2 ** 40 })).toThrow(InvalidHandleError)
  })

  it('one bucket limits four workers together to the configured rate (within 5%)', async () => {
    const rate = 400
    const seconds = 2
    const capacity = 10
    const counts = new Int32Array(new SharedArrayBuffer(4))
    const bucket = bucketOf({ capacity, refillPerSecond: rate })
    const workers = Array.from({ length: 4 }, () =>
      runWorker('bucket-takes.mjs', { handle: bucket.handle, counts: counts.buffer }),
    )
    // Start the window only once every worker is up (thread start-up on a
    // loaded machine must not count against the rate).
    await Promise.all(workers.map(({ worker }) => nextMessage(worker)))
    const startAt = Date.now() + 50
    const deadline = startAt + seconds * 1000
    for (const { worker } of workers) worker.postMessage({ startAt, deadline })
    await Promise.all(workers.map((w) => w.exited))
    // The bucket is full (capacity) at the start, then refills at `rate`.
    const expected = capacity + rate * seconds
    expect(Math.abs(counts[0]! - expected) / expected).toBeLessThan(0.05)
  })

  it('gives back the tokens of a worker terminated while its take waits', async () => {
    const bucket = bucketOf({ capacity: 5, refillPerSecond: 5 })
    bucket.tryTake(5)
    const { worker } = runWorker('bucket-take-once.mjs', { handle: bucket.handle, n: 5 })
    expect(await nextMessage(worker)).toBe('waiting')
    await worker.terminate()
    // Without the refund, 5 more tokens would be due only after 2 s.
    await eventually(() => bucket.tryTake(1), 1_500)
  })
})

describe('TokenBucket moving to native memory when its handle is first read', () => {
  // One token per hour: nothing refills while a test runs.
  const slow = { capacity: 5, tokensPerInterval: 1, interval: 3_600_000 }

  it('keeps the tokens, the order of waiting takes and their refunds', async () => {
    const bucket = new TokenBucket({ capacity: 4, refillPerSecond: 400 })
    expect(bucket.tryTake(4)).toBe(true)
    const order: string[] = []
    const big = bucket.take(4).then(() => order.push('big'))
    const controller = new AbortController()
    const aborted = bucket.take(4, { signal: controller.signal })
    const small = bucket.take(1).then(() => order.push('small'))
    const { id } = bucket.handle as LocalTokenBucketHandle // moves, with three takes waiting
    expect((bucket.handle as LocalTokenBucketHandle).id).toBe(id) // once
    expect(bucket.tryTake()).toBe(false) // still owed to the waiters
    controller.abort(new Error('stop'))
    await expect(aborted).rejects.toThrow('stop')
    await Promise.all([big, small])
    expect(order).toEqual(['big', 'small'])
  })

  it('gives a waiting take aborted after the move its tokens back, to every thread', async () => {
    const bucket = new TokenBucket(slow)
    expect(bucket.tryTake(3)).toBe(true)
    const controller = new AbortController()
    const waiting = bucket.take(5, { signal: controller.signal }) // 3 owed
    const { worker } = runWorker('bucket-try-take.mjs', { handle: bucket.handle })
    try {
      expect(await nextMessage(worker)).toBe('ready')
      worker.postMessage(1)
      expect(await nextMessage(worker)).toBe(false)
      controller.abort()
      await expect(waiting).rejects.toBeDefined()
      expect(bucket.available).toBe(2)
      worker.postMessage(2)
      expect(await nextMessage(worker)).toBe(true)
      expect(bucket.available).toBe(0)
    } finally {
      await worker.terminate()
    }
  })

  it('gives back the tokens of a take that waited across the move when its thread is terminated', async () => {
    const { worker } = runWorker('bucket-share-while-waiting.mjs', undefined)
    const bucket = TokenBucket.from(await nextMessage(worker))
    // 5 - 3 taken - 5 waiting: 3 owed, none available.
    expect(bucket.available).toBe(0)
    expect(bucket.tryTake(1)).toBe(false)
    await worker.terminate()
    await eventually(() => bucket.available === 2)
    expect(bucket.tryTake(2)).toBe(true)
  })
})
