// Channel.sendMany under waits: aborts, timeouts, closes and terminated
// worker threads while it waits for room; several sendMany calls (and sends)
// of one or more threads waiting at once; the patterns a sender that waited
// for several places at once broke (a timeout under steady progress, a work
// queue feeding itself), kept as guards. Every loop here is bounded.
import { subscribe, unsubscribe } from 'node:diagnostics_channel'
import { describe, expect, it } from 'vitest'
import { Channel, ClosedError, TimeoutError, type Codec } from 'sluice'
import { evalWorker, nextMessage } from './helpers.js'

const tick = (): Promise<void> => new Promise((resolve) => setImmediate(resolve))
const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms))

/** Settles `promise` or says it did not within `ms`. */
async function within<T>(promise: Promise<T>, ms: number): Promise<{ value?: T; error?: unknown; settled: boolean }> {
  let timer: NodeJS.Timeout | undefined
  const late = new Promise<{ settled: boolean }>((resolve) => (timer = setTimeout(() => resolve({ settled: false }), ms)))
  try {
    return await Promise.race([
      promise.then(
        (value) => ({ value, settled: true }),
        (error: unknown) => ({ error, settled: true }),
      ),
      late,
    ])
  } finally {
    clearTimeout(timer)
  }
}

/** Drains what is queued now (bounded by the capacity). */
function drain<T>(ch: Channel<T>): T[] {
  const out: T[] = []
  for (let i = 0; i < ch.capacity + 1 && ch.length > 0; i++) out.push(ch.tryRecv() as T)
  return out
}

/** All the room is free and nobody waits ahead: a batch of capacity + 1 sends exactly capacity. */
function expectAllRoomFree(ch: Channel<number>): void {
  expect(ch.length).toBe(0)
  const cap = ch.capacity
  expect(ch.trySendMany(Array.from({ length: cap + 1 }, (_, i) => i))).toBe(cap)
  expect(drain(ch)).toHaveLength(cap)
}

/**
 * Values are id * 1e6 + round * 1000 + i. Checks that each (id, round) arrived
 * as a prefix of 0..n-1, in order and once, that rounds of one id arrived in
 * order, and returns the count per key.
 */
function checkPrefixes(received: number[]): Map<string, number> {
  const next = new Map<string, number>()
  const lastRound = new Map<number, number>()
  for (const v of received) {
    const id = Math.floor(v / 1e6)
    const round = Math.floor((v % 1e6) / 1000)
    const i = v % 1000
    const key = `${id}:${round}`
    expect(i, `value ${v} of ${key} out of order or repeated`).toBe(next.get(key) ?? 0)
    next.set(key, i + 1)
    expect(round, `round ${round} of ${id} after round ${lastRound.get(id)}`).toBeGreaterThanOrEqual(lastRound.get(id) ?? 0)
    lastRound.set(id, round)
  }
  return next
}

/** A worker's sendMany outcome: [round, values, 'ok' or the error, lane id]. */
type Outcome = [number, number, string, number]

const producerCode = `
const { Channel } = require('sluice')
const { workerData, parentPort } = require('node:worker_threads')
const { handle, id: base, rounds, seed, maxLength, cancel, lanes = 1 } = workerData
const ch = Channel.from(handle)
let s = seed
const rnd = () => (s = (Math.imul(s, 1103515245) + 12345) >>> 0) / 2 ** 32
const results = []
// Each lane is a loop of sendMany calls of its own (id base * 10 + lane), all
// lanes at once: several waits of one thread queued, granted and collected together.
Promise.all(Array.from({ length: lanes }, (_, lane) => run(base * 10 + lane))).then(() => parentPort.postMessage(results))
async function run(id) {
  for (let round = 0; round < rounds; round++) {
    const n = 1 + Math.floor(rnd() * maxLength)
    const values = Array.from({ length: n }, (_, i) => id * 1e6 + round * 1000 + i)
    const mode = cancel ? rnd() : 1
    let options
    if (mode < 0.2) {
      const controller = new AbortController()
      options = { signal: controller.signal }
      setTimeout(() => controller.abort(new Error('aborted')), Math.floor(rnd() * 3))
    } else if (mode < 0.35) {
      options = { timeout: 1 + Math.floor(rnd() * 3) }
    }
    try {
      await ch.sendMany(values, options)
      results.push([round, n, 'ok', id])
    } catch (error) {
      results.push([round, n, error.name + ': ' + error.message, id])
    }
  }
}
`

/** Receives until `done()` and the channel is empty, with a deadline; returns what it got. */
async function consume(ch: Channel<number>, done: () => boolean, seed: number, ms = 20_000): Promise<number[]> {
  const received: number[] = []
  let s = seed
  const rnd = (): number => (s = (Math.imul(s, 1103515245) + 12345) >>> 0) / 2 ** 32
  const deadline = Date.now() + ms
  while (Date.now() < deadline) {
    if (done() && ch.length === 0) {
      // Anything sent late (a worker's last grant) shows up within a few ms.
      await sleep(20)
      if (ch.length === 0) return received
    }
    const how = rnd()
    try {
      if (how < 0.3) received.push(await ch.recv({ timeout: 20 }))
      else if (how < 0.6) received.push(...(await ch.recvMany(1 + Math.floor(rnd() * 5), { timeout: 20 })))
      else if (how < 0.8) {
        const v = ch.tryRecv()
        if (v !== undefined) received.push(v)
        else await tick()
      } else await sleep(1)
    } catch (error) {
      if (error instanceof ClosedError) await tick()
      else if (!(error instanceof TimeoutError)) throw error
    }
  }
  throw new Error(`consumer did not finish within ${ms} ms (received ${received.length})`)
}

describe('Channel.sendMany while it waits for room', () => {
  it('a sendMany whose signal aborts between two of its waits rejects with the reason and sends nothing more', async () => {
    const ch = new Channel<number>({ capacity: 8, codec: 'number' })
    const controller = new AbortController()
    const values = Array.from({ length: 20 }, (_, i) => i)
    const sending = ch.sendMany(values, { signal: controller.signal })
    await tick()
    expect(ch.length).toBe(8)
    // The first receive grants its wait (8 is sent, in this call); the second
    // frees a place while it waits for nothing, and the abort comes before
    // sendMany's next step.
    expect(ch.tryRecv()).toBe(0)
    expect(ch.tryRecv()).toBe(1)
    expect(ch.length).toBe(7)
    controller.abort(new Error('enough'))
    const outcome = await within(sending, 500)
    expect(outcome.settled, 'sendMany ignored an abort that came between its waits').toBe(true)
    expect((outcome.error as Error).message).toBe('enough')
    // Nothing after the abort was sent, and no room is kept.
    expect(drain(ch)).toEqual([2, 3, 4, 5, 6, 7, 8])
    expectAllRoomFree(ch)
  })

  it('numeric sendMany calls of one thread waiting at once each send their own values in order', async () => {
    for (const capacity of [8, 9, 12, 16, 17]) {
      const ch = new Channel<number>({ capacity, codec: 'number' })
      const a = Array.from({ length: 50 }, (_, i) => 1e6 + i)
      const b = Array.from({ length: 50 }, (_, i) => 2e6 + i)
      // Both encode into this thread's scratch array; a third one encoded
      // while they wait must not disturb them either.
      const first = ch.sendMany(a)
      const second = ch.sendMany(b)
      await tick()
      const third = ch.sendMany(Array.from({ length: 30 }, (_, i) => 3e6 + i))
      const received: number[] = []
      for (let i = 0; i < 130 && received.length < 130; i++) {
        // Receive one or a few at a time, so the waits are granted piecemeal.
        if (i % 3 === 0) received.push(await ch.recv())
        else received.push(...(await ch.recvMany(1 + (i % 4))))
      }
      await Promise.all([first, second, third])
      const byKey = checkPrefixes(received)
      expect([byKey.get('1:0'), byKey.get('2:0'), byKey.get('3:0')]).toEqual([50, 50, 30])
      expect(received).toHaveLength(130)
      expectAllRoomFree(ch)
    }
  })

  it('capacities 1 to 5 and 7 to 9: a sendMany against a one-at-a-time consumer delivers everything in order', async () => {
    for (const capacity of [1, 2, 3, 4, 5, 7, 8, 9]) {
      for (const codec of ['number', 'json'] as const) {
        const ch = new Channel<number>({ capacity, codec })
        const values = Array.from({ length: 3 * capacity + 2 }, (_, i) => i)
        const sending = ch.sendMany(values)
        const received: number[] = []
        for (let i = 0; i < values.length; i++) received.push(await ch.recv())
        const outcome = await within(sending, 1000)
        expect(outcome.settled).toBe(true)
        expect(received).toEqual(values)
        expectAllRoomFree(ch)
      }
    }
  })

  it('a single send queued behind a waiting sendMany keeps its FIFO turn', async () => {
    const ch = new Channel<number>({ capacity: 8, codec: 'number' })
    const many = ch.sendMany(Array.from({ length: 12 }, (_, i) => i))
    await tick()
    const single = ch.send(100)
    expect(ch.tryRecv()).toBe(0)
    await tick()
    // The freed place went to the sendMany's wait, queued first; its next
    // wait queues behind the single send.
    expect(ch.length).toBe(8)
    expect(ch.trySend(99)).toBe(false)
    const received = [0]
    for (let i = 0; i < 20 && received.length < 13; i++) received.push(await ch.recv())
    await Promise.all([many, single])
    expect(received.filter((v) => v !== 100)).toEqual(Array.from({ length: 12 }, (_, i) => i))
    expect(received.indexOf(100)).toBe(received.indexOf(8) + 1)
    expectAllRoomFree(ch)
  })

  it('traces each wait of a sendMany on sluice.channel.send, and a traced sendMany still delivers in order', async () => {
    const events: string[] = []
    const handlers = {
      start: () => events.push('start'),
      end: () => events.push('end'),
      asyncStart: () => events.push('asyncStart'),
      asyncEnd: () => events.push('asyncEnd'),
      error: () => events.push('error'),
    }
    for (const [name, handler] of Object.entries(handlers)) subscribe(`tracing:sluice.channel.send:${name}`, handler)
    try {
      const ch = new Channel<number>({ capacity: 8, codec: 'number' })
      const sending = ch.sendMany(Array.from({ length: 10 }, (_, i) => i))
      await tick()
      expect(events).toEqual(['start', 'end'])
      expect(ch.tryRecv()).toBe(0)
      expect(ch.tryRecv()).toBe(1)
      await sending
      expect(events).toEqual(['start', 'end', 'asyncStart', 'asyncEnd'])
      expect(drain(ch)).toEqual([2, 3, 4, 5, 6, 7, 8, 9])
      // A traced wait that times out ends in error with a TimeoutError.
      ch.trySendMany([0, 1, 2, 3, 4, 5, 6, 7])
      await expect(ch.sendMany([8, 9, 10], { timeout: 5 })).rejects.toBeInstanceOf(TimeoutError)
      expect(events.slice(4)).toEqual(['start', 'end', 'error', 'asyncStart', 'asyncEnd'])
      drain(ch)
      expectAllRoomFree(ch)
    } finally {
      for (const [name, handler] of Object.entries(handlers)) unsubscribe(`tracing:sluice.channel.send:${name}`, handler)
    }
  })

  it('a sendMany with a timeout longer than the consumer takes to free one place does not time out ', async () => {
    // The consumer frees one place every 25 ms; each wait of sendMany is for
    // one place, well within 80 ms. (Waiting for a quarter of the capacity,
    // 4 places here, 100 ms, at once turned steady progress into a
    // TimeoutError: the timeout bounds a wait for room, not the whole call.)
    const ch = new Channel<number>({ capacity: 16, codec: 'number' })
    const values = Array.from({ length: 24 }, (_, i) => i)
    const sending = ch.sendMany(values, { timeout: 80 })
    const settled = sending.then(
      () => 'ok',
      (error: unknown) => (error instanceof Error ? error.name : String(error)),
    )
    const received: number[] = []
    let outcome: string | undefined
    void settled.then((o) => (outcome = o))
    for (let i = 0; i < 40 && outcome === undefined; i++) {
      await sleep(25)
      const v = ch.tryRecv()
      if (v !== undefined) received.push(v)
    }
    expect(await settled).toBe('ok')
    received.push(...drain(ch))
    expect(received).toEqual(values)
  })

  it('a message the native side refuses, met after a wait for room, leaves no room held', async () => {
    // A codec output that passes encode's instanceof check but is no typed
    // array: native code refuses it only when it reads it.
    const fake: Codec<number> = {
      encode: (value) => (value === 99 ? (Object.create(Uint8Array.prototype, { byteLength: { value: 1 } }) as Uint8Array) : Buffer.from([value])),
      decode: (bytes) => (bytes as Uint8Array)[0]!,
    }
    const ch = new Channel<number>({ capacity: 8, codec: fake })
    const sending = ch.sendMany([0, 1, 2, 3, 4, 5, 6, 7, 8, 99])
    await tick()
    expect(ch.length).toBe(8)
    expect(ch.tryRecv()).toBe(0)
    expect(ch.tryRecv()).toBe(1)
    // 8 went into the place its wait was granted; 99 is refused when the
    // next batch reads it, and the place that batch claimed goes back.
    await expect(sending).rejects.toBeInstanceOf(TypeError)
    expect(drain(ch)).toEqual([2, 3, 4, 5, 6, 7, 8])
    expect(ch.trySendMany([0, 1, 2, 3, 4, 5, 6, 7, 8])).toBe(8)
  })

  it('a work queue whose 4 workers each re-enqueue a follow-up for every other task finishes', async () => {
    // A deadlock-prone pattern at the best of times (one worker, or a
    // follow-up for every task, hangs), but with 4 workers and capacity 16
    // or 32 it finishes: each freed place goes to the waiting sendMany or to
    // a worker's send in FIFO order. A sendMany at the head waiting for 4
    // (or 8) places at once hung it: the workers, each blocked sending its
    // follow-up behind it, never free them.
    for (const capacity of [16, 32]) {
      const ch = new Channel<number>({ capacity, codec: 'number' })
      const tasks = 100
      const expected = tasks + tasks / 2
      let handled = 0
      const producer = ch.sendMany(Array.from({ length: tasks }, (_, i) => i))
      const workers = Array.from({ length: 4 }, async () => {
        for (let guard = 0; guard < 1000 && handled < expected; guard++) {
          let v: number
          try {
            v = await ch.recv({ timeout: 200 })
          } catch {
            return
          }
          handled++
          if (v < 1e6 && v % 2 === 0) await ch.send(1e6 + v)
        }
      })
      const all = Promise.all([producer, ...workers])
      const outcome = await within(all, 1000)
      ch.close()
      await all.catch(() => undefined)
      expect(outcome.settled, `capacity ${capacity}: hung after ${handled} of ${expected} tasks`).toBe(true)
      expect(handled).toBe(expected)
    }
  })

  it('worker producers with aborts and timeouts: each sendMany arrives as a prefix, in order, once, and the room all comes back', async () => {
    for (const capacity of [8, 11, 16]) {
      const ch = new Channel<number>({ capacity, codec: capacity === 11 ? 'json' : 'number' })
      const workers = Array.from({ length: 3 }, (_, id) =>
        evalWorker(producerCode, { handle: ch.handle, id: id + 1, rounds: 40, seed: 7 + id * 31 + capacity, maxLength: 3 * capacity, cancel: true, lanes: 2 }),
      )
      const results = new Map<number, Outcome[]>()
      workers.forEach(({ worker }, i) => void nextMessage<Outcome[]>(worker).then((r) => results.set(i + 1, r)))
      const received = await consume(ch, () => results.size === workers.length, capacity)
      await Promise.all(workers.map(({ exited }) => exited))
      const counts = checkPrefixes(received)
      for (const rounds of results.values()) {
        for (const [round, n, outcome, id] of rounds) {
          const got = counts.get(`${id}:${round}`) ?? 0
          if (outcome === 'ok') expect(got, `${id}:${round} resolved`).toBe(n)
          else {
            expect(outcome).toMatch(/^(Error: aborted|TimeoutError: )/)
            expect(got, `${id}:${round} rejected (${outcome})`).toBeLessThan(n)
          }
        }
      }
      expectAllRoomFree(ch)
    }
  })

  it('worker producers terminated mid-sendMany take no room with them; what arrived is a prefix of each', async () => {
    for (let round = 0; round < 6; round++) {
      const capacity = [8, 12, 16][round % 3]!
      const ch = new Channel<number>({ capacity, codec: 'number' })
      const workers = Array.from({ length: 3 }, (_, id) =>
        evalWorker(producerCode, { handle: ch.handle, id: id + 1, rounds: 1000, seed: 99 + round * 7 + id, maxLength: 4 * capacity, cancel: false, lanes: 2 }),
      )
      // Consume for a while, then terminate the producers one by one while
      // their sendMany calls wait, are granted, or push.
      let stop = false
      const consuming = consume(ch, () => stop, round)
      for (const [i, { worker }] of workers.entries()) {
        await sleep(15 + 7 * i + round)
        await worker.terminate()
      }
      stop = true
      const received = await consuming
      checkPrefixes(received)
      // Every place of room is back, whatever the workers held when they died.
      expect(drain(ch)).toEqual([])
      expectAllRoomFree(ch)
    }
  })

  it('closing while worker sendMany calls wait: each rejects with ClosedError, what arrived is a prefix, no RangeError', async () => {
    for (let round = 0; round < 6; round++) {
      const capacity = [8, 12, 16][round % 3]!
      const ch = new Channel<number>({ capacity, codec: round % 2 === 0 ? 'number' : 'v8' })
      const workers = Array.from({ length: 3 }, (_, id) =>
        evalWorker(producerCode, { handle: ch.handle, id: id + 1, rounds: 1000, seed: 5 + round * 13 + id, maxLength: 4 * capacity, cancel: false, lanes: 2 }),
      )
      const results = new Map<number, Outcome[]>()
      workers.forEach(({ worker }, i) => void nextMessage<Outcome[]>(worker).then((r) => results.set(i + 1, r)))
      let stop = false
      const consuming = consume(ch, () => stop, round)
      await sleep(20 + round * 3)
      ch.close()
      stop = true
      const received = await consuming
      // After close every sendMany rejects at once: the workers run out of rounds fast.
      await Promise.all(workers.map(({ exited }) => within(exited, 10_000)))
      expect(results.size).toBe(3)
      const counts = checkPrefixes(received)
      for (const rounds of results.values()) {
        const closedSeen = new Set<number>()
        for (const [r, n, outcome, id] of rounds) {
          const got = counts.get(`${id}:${r}`) ?? 0
          if (outcome === 'ok') {
            expect(closedSeen.has(id)).toBe(false)
            expect(got).toBe(n)
          } else {
            expect(outcome).toMatch(/^ClosedError/)
            expect(got).toBeLessThan(n)
            closedSeen.add(id)
          }
        }
        expect(closedSeen.size).toBe(2)
      }
      expect(ch.closed).toBe(true)
      await expect(ch.sendMany([1, 2, 3])).rejects.toBeInstanceOf(ClosedError)
    }
  })
})
