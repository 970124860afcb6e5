// Hostile input: every public constructor, method and option called with
// arbitrary values. Each call either works, or fails with a TypeError or
// RangeError (or the error a hostile value itself throws, such as a throwing
// getter's); none crashes the process, hangs, or corrupts state (checked
// after every call).
import fc from 'fast-check'
import { describe, expect, it } from 'vitest'
import { Channel, Mutex, Permit, Semaphore, TokenBucket } from 'sluice'

class GetterError extends Error {}

const throwingGetters = new Proxy(
  {},
  {
    get() {
      throw new GetterError('hostile getter')
    },
  },
)
const revoked = (() => {
  const { proxy, revoke } = Proxy.revocable({}, {})
  revoke()
  return proxy
})()
const detached = (() => {
  const view = new Uint8Array(8)
  structuredClone(view.buffer, { transfer: [view.buffer] })
  return view // a view over a detached buffer
})()

const SPECIAL: unknown[] = [
  Number.NaN, Infinity, -Infinity, -0, 0, -1, 1.5, 2 ** 31, 2 ** 53, Number.MAX_VALUE, 1e-300,
  3n, '3', '', Symbol('s'), null, undefined, [], {}, () => 1, throwingGetters, revoked, detached,
  new Date(Number.NaN), Object.create(null),
]

/**
 * Hostile values, each behind a thunk: fast-check inspects the values it
 * generates, and a revoked proxy or a throwing getter would fail fast-check
 * itself rather than the code under test.
 */
const hostile: fc.Arbitrary<() => unknown> = fc.oneof(
  fc.anything({ withBigInt: true, withNullPrototype: true, withTypedArray: true, withSparseArray: true }).map((v) => () => v),
  fc.nat(SPECIAL.length - 1).map((i) => () => SPECIAL[i]),
)

/** Whether an error is one a bad argument may produce. */
function acceptable(error: unknown): boolean {
  return error instanceof TypeError || error instanceof RangeError || error instanceof GetterError
}

/** Calls `fn`, awaiting a promise result at most 2 s; returns the outcome. */
async function attempt(fn: () => unknown): Promise<{ value?: unknown; error?: unknown }> {
  try {
    const result = fn()
    if (result instanceof Promise) {
      const timeout = new Promise((_, reject) => setTimeout(() => reject(new Error('hung')), 2_000).unref())
      return { value: await Promise.race([result, timeout]) }
    }
    return { value: result }
  } catch (error) {
    return { error }
  }
}

/** Gives back whatever a successful call handed out. */
function cleanUp(value: unknown): void {
  if (value instanceof Permit) value.release()
}

const sem = new Semaphore(3)
const mutex = new Mutex()
const bucket = new TokenBucket({ capacity: 1_000_000, refillPerSecond: 1e9 })
const channel = new Channel<unknown>({ capacity: 4 })
const numbers = new Channel<number>({ capacity: 4, codec: 'number' })
const bytes = new Channel<Uint8Array>({ capacity: 4, codec: 'bytes', maxMessageBytes: 64 })

function intact(): void {
  expect(sem.available).toBe(3)
  expect(sem.waiting).toBe(0)
  expect(mutex.isLocked).toBe(false)
  expect(bucket.capacity).toBe(1_000_000)
  for (const ch of [channel, numbers, bytes] as Channel<unknown>[]) {
    // By length: a v8 channel can carry `undefined`, which tryRecv returns too.
    while (ch.length > 0) ch.tryRecv()
    expect(ch.length).toBe(0)
    expect(ch.closed).toBe(false)
  }
}

// eslint-disable-next-line @typescript-eslint/no-explicit-any -- the point is to pass anything
const calls: Record<string, (x: any) => unknown> = {
  'new Semaphore(x)': (x) => new Semaphore(x),
  'new Semaphore(2, x)': (x) => new Semaphore(2, x),
  'new Semaphore(2, { maxWaiters: x })': (x) => new Semaphore(2, { maxWaiters: x }),
  'sem.tryAcquire(x)': (x) => sem.tryAcquire(x),
  'sem.acquire(x)': (x) => sem.acquire(x),
  'sem.acquire({ weight: x })': (x) => sem.acquire({ weight: x }),
  'sem.acquire({ signal: x })': (x) => sem.acquire({ signal: x }),
  'sem.acquire({ timeout: x })': (x) => sem.acquire({ timeout: x }),
  'sem.run(x)': (x) => sem.run(x),
  'sem.run(fn, x)': (x) => sem.run(() => 1, x),
  'Semaphore.from(x)': (x) => Semaphore.from(x),
  'new Mutex(x)': (x) => new Mutex(x),
  'mutex.lock(x)': (x) => mutex.lock(x),
  'mutex.runExclusive(x)': (x) => mutex.runExclusive(x),
  'Mutex.from(x)': (x) => Mutex.from(x),
  'new TokenBucket(x)': (x) => new TokenBucket(x),
  'new TokenBucket({ capacity: x })': (x) => new TokenBucket({ capacity: x, refillPerSecond: 1 }),
  'new TokenBucket({ refillPerSecond: x })': (x) => new TokenBucket({ capacity: 1, refillPerSecond: x }),
  'new TokenBucket({ tokensPerInterval: x })': (x) => new TokenBucket({ capacity: 1, tokensPerInterval: x, interval: 1 }),
  'new TokenBucket({ interval: x })': (x) => new TokenBucket({ capacity: 1, tokensPerInterval: 1, interval: x }),
  'bucket.tryTake(x)': (x) => bucket.tryTake(x),
  'bucket.take(x)': (x) => bucket.take(x),
  'bucket.take(1, x)': (x) => bucket.take(1, x),
  'TokenBucket.from(x)': (x) => TokenBucket.from(x),
  'new Channel(x)': (x) => new Channel(x),
  'new Channel({ capacity: x })': (x) => new Channel({ capacity: x }),
  'new Channel({ codec: x })': (x) => new Channel({ capacity: 1, codec: x }),
  'new Channel({ maxMessageBytes: x })': (x) => new Channel({ capacity: 1, maxMessageBytes: x }),
  'channel.trySend(x)': (x) => channel.trySend(x),
  'channel.send(x)': (x) => channel.send(x, { timeout: 0 }),
  'channel.sendMany(x)': (x) => channel.sendMany(x, { timeout: 0 }),
  'numbers.trySend(x)': (x) => numbers.trySend(x),
  'numbers.trySendMany(x)': (x) => numbers.trySendMany(x),
  'bytes.trySend(x)': (x) => bytes.trySend(x),
  // A message is queued first, so a valid call returns instead of waiting.
  'channel.recv(x)': (x) => (channel.trySend(1), channel.recv(x)),
  'channel.recvMany(x)': (x) => channel.recvMany(x, { timeout: 0 }),
  'channel.recvMany(1, x)': (x) => (channel.trySend(1), channel.recvMany(1, x)),
  'Channel.from(x)': (x) => Channel.from(x),
  'Channel.from(handle, x)': (x) => Channel.from(channel.handle, x),
}

describe('hostile input', () => {
  it.each(Object.keys(calls))('%s works or throws a TypeError/RangeError, and leaves state intact', async (name) => {
    const call = calls[name]!
    await fc.assert(
      fc.asyncProperty(hostile, async (thunk) => {
        const { value, error } = await attempt(() => call(thunk()))
        if (error !== undefined && !acceptable(error)) {
          // A wait that timed out or was refused for capacity is not a bad argument.
          expect((error as { code?: string }).code ?? String(error)).toMatch(/ERR_SLUICE_TIMEOUT|ERR_SLUICE_QUEUE_FULL/)
        }
        cleanUp(value)
        intact()
      }),
      { numRuns: 60 },
    )
  })

  it('error messages name the field that was wrong', async () => {
    expect(() => sem.tryAcquire(Number.NaN)).toThrow(/^weight /)
    await expect(sem.acquire({ timeout: Infinity })).rejects.toThrow(/^options\.timeout /)
    await expect(sem.run(42 as never)).rejects.toThrow(/^fn must be a function/)
    expect(() => new Mutex(null as never)).toThrow(/^semaphore must be a Semaphore/)
    await expect(channel.sendMany(5 as never)).rejects.toThrow(/^values must be iterable/)
    expect(() => channel.trySend(Symbol('x'))).toThrow(/cannot be encoded by the v8 codec/)
  })
})
