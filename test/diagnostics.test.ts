import { channel, tracingChannel } from 'node:diagnostics_channel'
import { afterEach, describe, expect, it } from 'vitest'
import { Channel, Mutex, Permit, QueueFullError, RateLimiter, Semaphore, TimeoutError, TokenBucket, WorkerPool } from 'sluice'
import { fixture, nextMessage, runWorker } from './helpers.js'

type Message = Record<string, unknown>
type Event = [string, Message]

const PHASES = ['start', 'end', 'asyncStart', 'asyncEnd', 'error'] as const

/** Subscribers removed after each test, however it ends. */
const cleanups: (() => void)[] = []
afterEach(() => {
  for (const cleanup of cleanups.splice(0)) cleanup()
})

/** Records every phase of the tracing channel `name`, in order, until the test ends. */
function trace(name: string): Event[] {
  const events: Event[] = []
  const tracing = tracingChannel(name)
  const handlers = Object.fromEntries(PHASES.map((phase) => [phase, (message: unknown) => events.push([phase, message as Message])]))
  tracing.subscribe(handlers as never)
  cleanups.push(() => tracing.unsubscribe(handlers as never))
  return events
}

/** Records the messages of the plain channel `name` until the test ends. */
function listen(name: string): Message[] {
  const messages: Message[] = []
  const onMessage = (message: unknown): void => {
    messages.push(message as Message)
  }
  channel(name).subscribe(onMessage)
  cleanups.push(() => channel(name).unsubscribe(onMessage))
  return messages
}

const phases = (events: Event[]): string[] => events.map(([phase]) => phase)
const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms))

describe('diagnostics_channel: Semaphore', () => {
  it('traces an acquire that waits: start and end at the call, asyncStart and asyncEnd at the grant, one message with the wait time', async () => {
    const events = trace('sluice.semaphore.acquire')
    const sem = new Semaphore(2)
    const held = await sem.acquire({ weight: 2 })
    events.length = 0
    const waiting = sem.acquire({ weight: 2, priority: 3 })
    expect(phases(events)).toEqual(['start', 'end'])
    setTimeout(() => held.release(), 30)
    const permit = await waiting
    expect(phases(events)).toEqual(['start', 'end', 'asyncStart', 'asyncEnd'])
    const message = events[0]![1]
    expect(events.every(([, m]) => m === message)).toBe(true)
    expect(message).toMatchObject({ semaphore: sem, weight: 2, priority: 3, result: permit })
    expect(message.waitMs).toBeGreaterThanOrEqual(25)
    expect(message.waitMs).toBeLessThan(5_000)
    permit.release()
  })

  it('a start subscriber that releases a permit of the semaphore it traces lets the acquire take it at once', async () => {
    for (const shared of [false, true]) {
      const sem = new Semaphore(1)
      if (shared) void sem.handle // native from here on
      let held: Permit | undefined = await sem.acquire()
      const tracing = tracingChannel('sluice.semaphore.acquire')
      const handlers = {
        start: (): void => {
          held?.release()
          held = undefined
        },
      }
      tracing.subscribe(handlers as never)
      try {
        const acquiring = sem.acquire()
        expect(sem.waiting).toBe(0) // took it at once, never queued
        const permit = await acquiring
        expect(sem.available).toBe(0)
        permit.release()
        expect(sem.available).toBe(1)
      } finally {
        tracing.unsubscribe(handlers as never)
      }
    }
  })

  it('traces an acquire granted at once with a wait of about 0 ms, and a Mutex lock on its semaphore', async () => {
    const events = trace('sluice.semaphore.acquire')
    const sem = new Semaphore(1)
    ;(await sem.acquire()).release()
    expect(phases(events)).toEqual(['start', 'end', 'asyncStart', 'asyncEnd'])
    expect(events[0]![1]).toMatchObject({ semaphore: sem, weight: 1, priority: 0 })
    expect(events[0]![1].waitMs).toBeLessThan(1_000)
    events.length = 0
    const mutex = new Mutex(sem)
    expect(await mutex.runExclusive(() => 'inside')).toBe('inside')
    expect(phases(events)).toEqual(['start', 'end', 'asyncStart', 'asyncEnd'])
    expect(events[0]![1].semaphore).toBe(sem)
  })

  it('traces only the wait of run, not fn, and hides the internal wait object from the message', async () => {
    const events = trace('sluice.semaphore.acquire')
    const sem = new Semaphore(1)
    const order: string[] = []
    const result = await sem.run(() => {
      order.push(`fn after ${phases(events).join(',')}`)
      return 42
    })
    expect(result).toBe(42)
    expect(order).toEqual(['fn after start,end,asyncStart,asyncEnd'])
    expect(events[0]![1].result).toBeUndefined()
  })

  it('traces an aborted wait: error with the signal reason, before asyncStart and asyncEnd', async () => {
    const events = trace('sluice.semaphore.acquire')
    const sem = new Semaphore(1)
    const held = sem.tryAcquire()!
    const controller = new AbortController()
    const waiting = sem.acquire({ signal: controller.signal })
    const reason = new Error('gave up')
    controller.abort(reason)
    await expect(waiting).rejects.toBe(reason)
    expect(phases(events)).toEqual(['start', 'end', 'error', 'asyncStart', 'asyncEnd'])
    expect(events[2]![1].error).toBe(reason)
    held.release()
  })

  it('traces a wait that times out with a TimeoutError', async () => {
    const events = trace('sluice.semaphore.acquire')
    const sem = new Semaphore(1)
    const held = sem.tryAcquire()!
    await expect(sem.acquire({ timeout: 10 })).rejects.toBeInstanceOf(TimeoutError)
    expect(phases(events)).toEqual(['start', 'end', 'error', 'asyncStart', 'asyncEnd'])
    expect(events[2]![1].error).toBeInstanceOf(TimeoutError)
    expect(events[2]![1].waitMs).toBeGreaterThanOrEqual(5)
    held.release()
  })

  it('publishes a refusal when the queue is full, and traces it as an error', async () => {
    const events = trace('sluice.semaphore.acquire')
    const refused = listen('sluice.semaphore.refused')
    const sem = new Semaphore(1, { maxWaiters: 0 })
    const held = sem.tryAcquire()!
    await expect(sem.acquire({ weight: 1 })).rejects.toBeInstanceOf(QueueFullError)
    expect(refused).toEqual([{ semaphore: sem, weight: 1, reason: 'queue-full' }])
    expect(phases(events)).toEqual(['start', 'end', 'error', 'asyncStart', 'asyncEnd'])
    held.release()
  })

  it('publishes nothing for a tryAcquire that gets nothing (a polling loop would flood the channel)', () => {
    const refused = listen('sluice.semaphore.refused')
    const events = trace('sluice.semaphore.acquire')
    const sem = new Semaphore(1)
    const held = sem.tryAcquire()!
    expect(sem.tryAcquire()).toBeNull()
    expect(refused).toEqual([])
    expect(events).toEqual([])
    held.release()
  })

  it('publishes each release with its weight, and a close with its reason', async () => {
    const released = listen('sluice.semaphore.release')
    const closed = listen('sluice.semaphore.close')
    const sem = new Semaphore(3)
    ;(await sem.acquire({ weight: 2 })).release()
    await sem.run(() => undefined)
    expect(released).toEqual([
      { semaphore: sem, weight: 2 },
      { semaphore: sem, weight: 1 },
    ])
    sem.close('shutting down')
    sem.close('again')
    expect(closed).toEqual([{ semaphore: sem, reason: 'shutting down' }])
  })

  it('traces and publishes the same before and after the handle is first read (the move to native memory)', async () => {
    const events = trace('sluice.semaphore.acquire')
    const released = listen('sluice.semaphore.release')
    const refused = listen('sluice.semaphore.refused')
    const sem = new Semaphore(1, { maxWaiters: 1 })
    const held = await sem.acquire()
    const queuedLocally = sem.acquire({ priority: 2 })
    await expect(sem.acquire()).rejects.toBeInstanceOf(QueueFullError)
    void sem.handle // the move: the queued wait goes with it, still traced
    await expect(sem.acquire()).rejects.toBeInstanceOf(QueueFullError)
    held.release()
    const permit = await queuedLocally
    permit.release()
    ;(await sem.acquire()).release()
    expect(released).toEqual([1, 1, 1].map((weight) => ({ semaphore: sem, weight })))
    expect(refused).toEqual([1, 1].map((weight) => ({ semaphore: sem, weight, reason: 'queue-full' })))
    const messages = [...new Set(events.map(([, message]) => message))]
    expect(messages).toHaveLength(5)
    expect(messages[1]).toMatchObject({ semaphore: sem, priority: 2, result: permit })
    expect(events.filter(([, message]) => message === messages[1]).map(([phase]) => phase)).toEqual(['start', 'end', 'asyncStart', 'asyncEnd'])
  })

  it('publishes nothing once the subscribers are gone', async () => {
    const tracing = tracingChannel('sluice.semaphore.acquire')
    const seen: unknown[] = []
    const handlers = { start: (m: unknown) => seen.push(m), end() {}, asyncStart() {}, asyncEnd() {}, error() {} }
    tracing.subscribe(handlers)
    const onRelease = (m: unknown): void => {
      seen.push(m)
    }
    channel('sluice.semaphore.release').subscribe(onRelease)
    const sem = new Semaphore(1)
    ;(await sem.acquire()).release()
    expect(seen).toHaveLength(2)
    tracing.unsubscribe(handlers)
    channel('sluice.semaphore.release').unsubscribe(onRelease)
    expect(tracing.hasSubscribers).toBe(false)
    ;(await sem.acquire()).release()
    await sem.run(() => undefined)
    sem.close()
    expect(seen).toHaveLength(2)
  })

  it('a subscriber in a worker thread sees that thread’s operations, and the main thread’s subscriber does not', async () => {
    const events = trace('sluice.semaphore.acquire')
    const sem = new Semaphore(2)
    const { worker, exited } = runWorker('diagnostics-worker.mjs', { handle: sem.handle })
    try {
      expect(await nextMessage(worker)).toEqual([
        ['start', 2],
        ['asyncEnd', 2],
        ['start', 1],
        ['asyncEnd', 1],
      ])
      expect(await exited).toBe(0)
    } finally {
      await worker.terminate()
    }
    expect(events).toEqual([])
  })
})

describe('diagnostics_channel: TokenBucket and RateLimiter', () => {
  it('traces a take that waits for tokens, with the tokens and the wait time', async () => {
    const events = trace('sluice.token-bucket.take')
    const bucket = new TokenBucket({ capacity: 2, refillPerSecond: 100 })
    // Not awaited: the second take queues behind the first's 2 tokens however slow this machine is.
    const first = bucket.take(2)
    await bucket.take(1)
    await first
    expect(phases(events)).toEqual(['start', 'end', 'start', 'end', 'asyncStart', 'asyncEnd', 'asyncStart', 'asyncEnd'])
    expect(events[0]![1]).toMatchObject({ bucket, tokens: 2 })
    events.splice(0, 2)
    expect(events[0]![1]).toMatchObject({ bucket, tokens: 1 })
    expect(events[0]![1].waitMs).toBeGreaterThanOrEqual(5)
  })

  it('publishes a tryTake refused by the bucket', () => {
    const refused = listen('sluice.token-bucket.refused')
    const bucket = new TokenBucket({ capacity: 1, refillPerSecond: 0.001 })
    expect(bucket.tryTake()).toBe(true)
    expect(bucket.tryTake()).toBe(false)
    expect(refused).toEqual([{ bucket, tokens: 1 }])
  })

  it('publishes a rate-limited tryTake with its key, and a take refused for a new key when the keys are full', async () => {
    const refused = listen('sluice.rate-limiter.refused')
    const limiter = new RateLimiter({ limit: 1, windowMs: 60_000, maxKeys: 1, whenFull: 'refuse' })
    expect(limiter.tryTake('a').allowed).toBe(true)
    expect(limiter.tryTake('a', 1).allowed).toBe(false)
    await expect(limiter.take('b')).rejects.toMatchObject({ name: 'KeysFullError' })
    expect(refused).toEqual([
      { limiter, key: 'a', tokens: 1, reason: 'limited' },
      { limiter, key: 'b', tokens: 1, reason: 'keys-full' },
    ])
  })

  it('traces a limiter take with its key; a take refused for its timeout ends in error', async () => {
    const events = trace('sluice.rate-limiter.take')
    const limiter = new RateLimiter({ limit: 1, windowMs: 60_000 })
    await limiter.take('user-1')
    await expect(limiter.take('user-1', 1, { timeout: 10 })).rejects.toBeInstanceOf(TimeoutError)
    expect(phases(events)).toEqual(['start', 'end', 'asyncStart', 'asyncEnd', 'start', 'end', 'error', 'asyncStart', 'asyncEnd'])
    expect(events[0]![1]).toMatchObject({ limiter, key: 'user-1', tokens: 1 })
  })
})

describe('diagnostics_channel: Channel and WorkerPool', () => {
  it('traces a recv that waits and a send that waits, not the ones that go through at once; publishes the close', async () => {
    const recvs = trace('sluice.channel.recv')
    const sends = trace('sluice.channel.send')
    const closed = listen('sluice.channel.close')
    const ch = new Channel<number>({ capacity: 1, codec: 'number' })
    const received = ch.recv()
    expect(phases(recvs)).toEqual(['start', 'end'])
    await ch.send(7)
    expect(await received).toBe(7)
    expect(phases(recvs)).toEqual(['start', 'end', 'asyncStart', 'asyncEnd'])
    expect(recvs[0]![1]).toMatchObject({ channel: ch, result: 7 })
    expect(sends).toEqual([]) // there was room
    await ch.send(1)
    const blocked = ch.send(2)
    expect(phases(sends)).toEqual(['start', 'end'])
    expect(ch.tryRecv()).toBe(1)
    await blocked
    expect(phases(sends)).toEqual(['start', 'end', 'asyncStart', 'asyncEnd'])
    ch.close()
    expect(closed).toEqual([{ channel: ch }])
  })

  // A subscriber may act on the channel it traces. The wait is queued
  // natively before `start` is published, so a receive (or send) in a
  // `start` handler grants it there and then: the grant must reach the wait
  // and the room (or message) it holds must not be lost.
  it('a start subscriber that receives from the channel it traces grants the waiting send, losing no room', async () => {
    const ch = new Channel<number>({ capacity: 2, codec: 'number' })
    const taken: (number | undefined)[] = []
    const tracing = tracingChannel('sluice.channel.send')
    const handlers = { start: (): void => void taken.push(ch.tryRecv()) }
    tracing.subscribe(handlers as never)
    cleanups.push(() => tracing.unsubscribe(handlers as never))
    await ch.send(1)
    await ch.send(2)
    const blocked = ch.send(3)
    expect(taken).toEqual([1])
    const settled = await Promise.race([blocked.then(() => 'sent'), sleep(200).then(() => 'pending')])
    expect(settled).toBe('sent')
    tracing.unsubscribe(handlers as never)
    // Every place of room is there: 2 and 3 queued, then the channel drains and fills to its capacity again.
    expect([ch.tryRecv(), ch.tryRecv(), ch.tryRecv()]).toEqual([2, 3, undefined])
    expect([ch.trySend(4), ch.trySend(5), ch.trySend(6)]).toEqual([true, true, false])
  })

  it('a start subscriber that sends into the channel it traces grants the waiting recv, losing no message', async () => {
    const ch = new Channel<number>({ capacity: 2, codec: 'number' })
    const tracing = tracingChannel('sluice.channel.recv')
    const handlers = { start: (): void => void ch.trySend(9) }
    tracing.subscribe(handlers as never)
    cleanups.push(() => tracing.unsubscribe(handlers as never))
    const received = ch.recv()
    const settled = await Promise.race([received, sleep(200).then(() => 'pending')])
    expect(settled).toBe(9)
    tracing.unsubscribe(handlers as never)
    expect(ch.tryRecv()).toBeUndefined()
    expect([ch.trySend(1), ch.trySend(2), ch.trySend(3)]).toEqual([true, true, false])
  })

  it('traces a pool task with its input and duration, and its queue semaphore publishes nothing', async () => {
    const tasks = trace('sluice.pool.run')
    const acquires = trace('sluice.semaphore.acquire')
    const releases = listen('sluice.semaphore.release')
    const pool = new WorkerPool({ filename: fixture('pool-task.mjs'), maxThreads: 1 })
    try {
      expect(await pool.run(21)).toBe(42)
      const { result } = await pool.submit({ op: 'sleep', ms: 20 })
      expect(await result).toBe(20)
    } finally {
      await pool.close()
    }
    expect(phases(tasks)).toEqual(['start', 'end', 'asyncStart', 'asyncEnd', 'start', 'end', 'asyncStart', 'asyncEnd'])
    expect(tasks[0]![1]).toMatchObject({ pool, task: 21, result: 42 })
    expect(tasks[4]![1].durationMs).toBeGreaterThanOrEqual(15)
    expect(acquires).toEqual([])
    expect(releases).toEqual([])
  })
})

describe('diagnostics_channel: guards', () => {
  it('Permit stays a Permit when traced', async () => {
    trace('sluice.semaphore.acquire')
    const permit = await new Semaphore(1).acquire()
    expect(permit).toBeInstanceOf(Permit)
    permit.release()
  })

  it('a traced take rejects once, with no unhandled rejection', async () => {
    trace('sluice.token-bucket.take')
    const bucket = new TokenBucket({ capacity: 1, refillPerSecond: 0.001 })
    await bucket.take()
    const controller = new AbortController()
    const waiting = bucket.take(1, { signal: controller.signal })
    controller.abort(new Error('stop'))
    await expect(waiting).rejects.toThrow('stop')
    await sleep(5)
  })
})
