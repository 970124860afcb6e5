// One RateLimiter shared by real worker threads: every thread's grants on a
// key add up to at most what one key allows (its capacity, plus its rate
// over the time they were made), and a thread that dies while its takes wait
// gives their tokens back.
import { describe, expect, it } from 'vitest'
import { RateLimiter, WorkerPool } from 'sluice'
import { fixture, eventually, nextMessage, runWorker } from './helpers.js'

/**
 * Runs four workers on `limiter` for `ms` over keys 0..keys-1 (two with
 * tryTake, two with take when `waits`) and returns the grants per key and
 * the keys-full answers, with the window's length in ms.
 */
async function run(
  limiter: RateLimiter,
  keys: number,
  ms: number,
  waits: boolean,
): Promise<{ grants: Int32Array; keysFull: number; elapsedMs: number }> {
  const counts = new Int32Array(new SharedArrayBuffer(4 * (keys + 1)))
  const workers = Array.from({ length: 4 }, (_, w) =>
    runWorker('rate-limiter-takes.mjs', {
      handle: limiter.handle,
      counts: counts.buffer,
      keys,
      offset: Math.floor((w * keys) / 4),
      waits: waits && w >= 2,
    }),
  )
  // Start the window only once every worker is up.
  await Promise.all(workers.map(({ worker }) => nextMessage(worker)))
  const startAt = Date.now() + 50
  const deadline = startAt + ms
  for (const { worker } of workers) worker.postMessage({ startAt, deadline })
  await Promise.all(workers.map((w) => w.exited))
  // A grant was counted only if Date.now() read startAt..deadline around it;
  // 2 ms more for Date.now()'s granularity and its drift from the monotonic clock.
  return { grants: counts.subarray(0, keys), keysFull: counts[keys]!, elapsedMs: ms + 2 }
}

describe.each(['gcra', 'sliding-window'] as const)('RateLimiter (%s) across threads', (algorithm) => {
  it('four workers on the same hot keys, by tryTake and take, get at most capacity + rate x elapsed per key', async () => {
    const capacity = 20
    const perSecond = 100
    const limiter = new RateLimiter({ capacity, refillPerSecond: perSecond, algorithm })
    const { grants, elapsedMs } = await run(limiter, 4, 1_500, true)
    const most = capacity + (perSecond * elapsedMs) / 1000
    for (const granted of grants) {
      expect(granted).toBeLessThanOrEqual(most)
      // Not a limiter that refuses everything: the spinning workers take most tokens.
      expect(granted).toBeGreaterThan(most / 2)
    }
  })

  it('four workers on 100,000 distinct keys get at most capacity + rate x elapsed on each, and every key its capacity', async () => {
    const capacity = 2
    const perSecond = 1
    const keys = 100_000
    // Room to spare: a shard (of 64) fills a little before the whole table,
    // and an evicted key would start fresh and could be granted again.
    const limiter = new RateLimiter({ capacity, refillPerSecond: perSecond, algorithm, maxKeys: 150_000 })
    const { grants, keysFull, elapsedMs } = await run(limiter, keys, 1_500, false)
    const most = Math.floor(capacity + (perSecond * elapsedMs) / 1000)
    let over = 0
    let under = 0
    for (const granted of grants) {
      if (granted > most) over++
      if (granted < capacity) under++
    }
    expect({ over, under, keysFull }).toEqual({ over: 0, under: 0, keysFull: 0 })
    expect(limiter.size).toBeLessThanOrEqual(keys)
  })
})

describe('RateLimiter when a thread dies', () => {
  it('gives back the reserved tokens of a worker terminated while its takes wait', async () => {
    // One token per hour: nothing refills while the test runs.
    const limiter = new RateLimiter({ capacity: 5, tokensPerInterval: 1, interval: 3_600_000 })
    expect(limiter.tryTake('k', 3).allowed).toBe(true)
    expect(limiter.tryTake(42, 3).allowed).toBe(true)
    const { worker } = runWorker('rate-limiter-take-once.mjs', { handle: limiter.handle, keys: ['k', 42], n: 5 })
    expect(await nextMessage(worker)).toBe('waiting')
    // 5 - 3 taken - 5 waiting: 3 owed on each key, the waiting take first.
    expect(limiter.tryTake('k')).toMatchObject({ allowed: false, remaining: 0 })
    await worker.terminate()
    await eventually(() => limiter.peek('k', 2).allowed && limiter.peek(42, 2).allowed)
    // Given back, not merely due: a take of the 2 left is served at once.
    await limiter.take('k', 2, { timeout: 0 })
    await limiter.take(42, 2, { timeout: 0 })
    expect(limiter.tryTake('k').allowed).toBe(false)
  })
})

describe('RateLimiter in a WorkerPool', () => {
  it('a pool shares it with every worker through share', async () => {
    const limiter = new RateLimiter({ limit: 2, windowMs: 60_000 })
    await using pool = new WorkerPool({ filename: fixture('rate-limiter-pool-task.mjs').href, maxThreads: 2, share: { limiter } })
    expect(await pool.run({ key: 'k', n: 2 })).toMatchObject({ allowed: true, remaining: 0 })
    expect(await pool.run({ key: 'k', n: 1 })).toMatchObject({ allowed: false, reason: 'limited' })
    expect(limiter.tryTake('k')).toMatchObject({ allowed: false, reason: 'limited' })
  })
})
