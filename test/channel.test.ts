import { MessageChannel } from 'node:worker_threads'
import { describe, expect, it } from 'vitest'
import { Channel, ClosedError, InvalidHandleError, Semaphore, TimeoutError, type Codec, type LocalSemaphoreHandle } from 'sluice'
import { isSettled } from './helpers.js'

describe('Channel', () => {
  it('delivers in order and reports its length', async () => {
    const ch = new Channel<unknown>({ capacity: 4 })
    for (const value of [1, 'two', { three: [3] }, null]) expect(ch.trySend(value)).toBe(true)
    expect(ch.length).toBe(4)
    expect(ch.trySend('full')).toBe(false)
    expect([ch.tryRecv(), await ch.recv(), ch.tryRecv(), await ch.recv()]).toEqual([1, 'two', { three: [3] }, null])
    expect(ch.tryRecv()).toBeUndefined()
  })

  it('send waits for room (backpressure) and recv waits for a message', async () => {
    const ch = new Channel<number>({ capacity: 1, codec: 'number' })
    await ch.send(1)
    const blocked = ch.send(2)
    expect(await isSettled(blocked)).toBe(false)
    expect(await ch.recv()).toBe(1)
    await blocked
    const waiting = ch.recv()
    expect(await waiting).toBe(2)
    const empty = ch.recv()
    expect(await isSettled(empty)).toBe(false)
    ch.trySend(3)
    expect(await empty).toBe(3)
  })

  it('waiting senders and receivers are served first come, first served', async () => {
    const ch = new Channel<number>({ capacity: 1, codec: 'number' })
    const receivers = [ch.recv(), ch.recv(), ch.recv()]
    await ch.sendMany([10, 20, 30])
    expect(await Promise.all(receivers)).toEqual([10, 20, 30])
    ch.trySend(0)
    const senders = [1, 2, 3].map((v) => ch.send(v))
    const got = [await ch.recv(), await ch.recv(), await ch.recv(), await ch.recv()]
    await Promise.all(senders)
    expect(got).toEqual([0, 1, 2, 3])
  })

  it('an aborted recv consumes nothing; a timed-out send sends nothing', async () => {
    const ch = new Channel<number>({ capacity: 1, codec: 'number' })
    const controller = new AbortController()
    const recv = ch.recv({ signal: controller.signal })
    controller.abort(new Error('stop'))
    await expect(recv).rejects.toThrow('stop')
    ch.trySend(1)
    await expect(ch.send(2, { timeout: 10 })).rejects.toBeInstanceOf(TimeoutError)
    expect(ch.length).toBe(1)
    expect(ch.tryRecv()).toBe(1)
    expect(ch.tryRecv()).toBeUndefined()
  })

  it('an abort in the same tick as the grant loses no message', async () => {
    const ch = new Channel<number>({ capacity: 1, codec: 'number' })
    for (let i = 0; i < 100; i++) {
      const controller = new AbortController()
      const recv = ch.recv({ signal: controller.signal })
      ch.trySend(i)
      controller.abort()
      const outcome = await recv.then(
        (value) => value,
        () => 'aborted',
      )
      // Granted synchronously by the send, so the value was delivered.
      expect(outcome).toBe(i)
      expect(ch.length).toBe(0)
    }
  })

  it('close: receivers drain what is left, then end; senders get ClosedError', async () => {
    const ch = new Channel<number>({ capacity: 3, codec: 'number' })
    await ch.sendMany([1, 2])
    ch.close()
    expect(ch.closed).toBe(true)
    expect(() => ch.trySend(3)).toThrow(ClosedError)
    await expect(ch.send(3)).rejects.toBeInstanceOf(ClosedError)
    const seen: number[] = []
    for await (const value of ch) seen.push(value)
    expect(seen).toEqual([1, 2])
    await expect(ch.recv()).rejects.toBeInstanceOf(ClosedError)
    expect(await ch.recvMany(10)).toEqual([])
  })

  it('close wakes waiting receivers (they end) and waiting senders (they reject)', async () => {
    const receiver = new Channel<number>({ capacity: 1, codec: 'number' })
    const waiting = receiver.recv()
    receiver.close()
    await expect(waiting).rejects.toBeInstanceOf(ClosedError)

    const sender = new Channel<number>({ capacity: 1, codec: 'number' })
    sender.trySend(1)
    const blocked = sender.send(2)
    sender.close()
    await expect(blocked).rejects.toBeInstanceOf(ClosedError)
    expect(sender.tryRecv()).toBe(1)
  })

  it('sendMany and recvMany move batches, waiting as needed', async () => {
    const ch = new Channel<number>({ capacity: 8, codec: 'number' })
    const values = Array.from({ length: 100 }, (_, i) => i)
    const sending = ch.sendMany(values)
    const received: number[] = []
    while (received.length < values.length) received.push(...(await ch.recvMany(16)))
    await sending
    expect(received).toEqual(values)
    expect(ch.trySendMany([1, 2, 3])).toBe(3)
    expect(await ch.recvMany(2)).toEqual([1, 2])
  })

  it('numeric sendMany calls waiting at once each send their own values (the encoding scratch array is not shared)', async () => {
    const ch = new Channel<number>({ capacity: 2, codec: 'number' })
    const first = ch.sendMany([1, 2, 3, 4, 5])
    const second = ch.sendMany([6, 7, 8])
    // A getter that sends while a batch is being encoded.
    const sneaky = [9, 0, 11]
    Object.defineProperty(sneaky, 1, { get: () => (ch.trySendMany([99]), 10) })
    const third = ch.sendMany(sneaky)
    const received: number[] = []
    while (received.length < 11) received.push(...(await ch.recvMany(4)))
    await Promise.all([first, second, third])
    expect([...received].sort((a, b) => a - b)).toEqual([1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11])
    const order = (values: number[]) => received.filter((n) => values.includes(n))
    expect(order([1, 2, 3, 4, 5])).toEqual([1, 2, 3, 4, 5])
    expect(order([6, 7, 8])).toEqual([6, 7, 8])
    expect(order([9, 10, 11])).toEqual([9, 10, 11])
  })

  it('recvMany of byte messages gives each its own bytes (views over one buffer per batch), empty ones included', async () => {
    const ch = new Channel<Uint8Array>({ capacity: 8, codec: 'bytes' })
    const sent = [new Uint8Array([1, 2, 3]), new Uint8Array(0), new Uint8Array([4, 5, 6, 7, 8]), new Uint8Array([9])]
    expect(ch.trySendMany(sent)).toBe(4)
    const got = await ch.recvMany(8)
    expect(got.map((m) => Array.from(m))).toEqual(sent.map((m) => Array.from(m)))
    got[0]![0] = 99 // writing one message leaves the others alone
    expect(Array.from(got[2]!)).toEqual([4, 5, 6, 7, 8])
    // Transferring the shared buffer would detach the siblings: it is marked
    // untransferable, as Node's Buffer pool (Node 20 then copies, later Nodes throw).
    const { port1, port2 } = new MessageChannel()
    try {
      port1.postMessage(got[2], [got[2]!.buffer as ArrayBuffer])
    } catch (error) {
      expect((error as Error).name).toBe('DataCloneError')
    }
    port1.close()
    port2.close()
    expect(Array.from(got[2]!)).toEqual([4, 5, 6, 7, 8])
    expect(Array.from(got[3]!)).toEqual([9])
    const objects = new Channel<unknown>({ capacity: 4 }) // v8 codec over the same batch path
    await objects.sendMany([{ a: 1 }, 'two', [3]])
    expect(await objects.recvMany(4)).toEqual([{ a: 1 }, 'two', [3]])
  })

  it('single receives of byte messages of every size keep their bytes, across slabs, while later ones arrive', async () => {
    const ch = new Channel<Uint8Array>({ capacity: 4, codec: 'bytes' })
    // Sizes around the 8 KiB slab limit and enough bytes to fill several 64 KiB slabs.
    const sizes = [0, 1, 7, 8, 9, 4096, 8191, 8192, 8193, 20_000, ...Array.from({ length: 60 }, (_, i) => 1000 + 37 * i)]
    const kept: Uint8Array[] = []
    for (const [i, size] of sizes.entries()) {
      const message = new Uint8Array(size).map((_, j) => (i * 31 + j) & 255)
      if (i % 2 === 0) {
        expect(ch.trySend(message)).toBe(true)
        kept.push(ch.tryRecv()!)
      } else {
        // The waiting path: receive first, then send.
        const receiving = ch.recv()
        await ch.send(message)
        kept.push(await receiving)
      }
    }
    for (const [i, size] of sizes.entries()) {
      const expected = new Uint8Array(size).map((_, j) => (i * 31 + j) & 255)
      expect(kept[i]!.byteLength).toBe(size)
      expect(Buffer.compare(kept[i]!, expected)).toBe(0)
    }
    kept[3]![0] = 200 // one message written does not touch its neighbours
    expect(kept[2]![6]).toBe((2 * 31 + 6) & 255)
    expect(kept[4]![0]).toBe((4 * 31) & 255)
  })

  it('channels receiving in turn (one slab per thread) each keep their own bytes', () => {
    const channels = [0, 1, 2].map(() => new Channel<Uint8Array>({ capacity: 2, codec: 'bytes' }))
    const kept: [number, Uint8Array][] = []
    for (let i = 0; i < 300; i++) {
      const ch = channels[i % 3]!
      ch.trySend(new Uint8Array(100 + (i % 7) * 300).fill(i & 255))
      kept.push([i, ch.tryRecv()!])
    }
    for (const [i, message] of kept) {
      expect(message.byteLength).toBe(100 + (i % 7) * 300)
      expect(message.every((byte) => byte === (i & 255))).toBe(true)
    }
  })

  it('v8-decoded typed arrays that view the received bytes stay intact as more messages arrive', async () => {
    // v8's deserializer returns a Uint8Array as a view over its input (other
    // typed arrays too when aligned), so received bytes must never be reused.
    const ch = new Channel<{ n: number; bytes: Uint8Array; doubles: Float64Array }>({ capacity: 2 })
    const kept: { n: number; bytes: Uint8Array; doubles: Float64Array }[] = []
    for (let n = 0; n < 500; n++) {
      ch.trySend({ n, bytes: Uint8Array.of(n & 255, 7, (n >> 8) & 255), doubles: Float64Array.of(n, n / 2, -n) })
      kept.push(ch.tryRecv()!)
    }
    for (const [n, value] of kept.entries()) {
      expect([value.n, ...value.bytes]).toEqual([n, n & 255, 7, (n >> 8) & 255])
      expect([...value.doubles]).toEqual([n, n / 2, -n])
    }
  })

  it.each([
    ['v8', new Map([[1, { at: new Date(0) }]])],
    ['json', { list: [1, 'a', true, null] }],
    ['bytes', new Uint8Array([0, 255, 7])],
    ['number', -0.5],
  ] as const)('the %s codec round-trips its values', async (codec, value) => {
    const ch = new Channel<unknown>({ capacity: 1, codec })
    await ch.send(value)
    const back = await ch.recv()
    if (value instanceof Uint8Array) expect(new Uint8Array(back as Uint8Array)).toEqual(value)
    else expect(back).toEqual(value)
  })

  it('a custom codec is used both ways', async () => {
    const upper: Codec<string> = {
      encode: (s) => Buffer.from(s.toUpperCase()),
      decode: (m) => Buffer.from(m as Uint8Array).toString(),
    }
    const ch = new Channel({ capacity: 1, codec: upper })
    await ch.send('hi')
    expect(await ch.recv()).toBe('HI')
    expect(ch.handle.codec).toBe('custom')
  })

  it('a message over maxMessageBytes is a RangeError and leaves the channel unchanged', async () => {
    const ch = new Channel<Uint8Array>({ capacity: 2, codec: 'bytes', maxMessageBytes: 4 })
    expect(() => ch.trySend(new Uint8Array(5))).toThrow(RangeError)
    await expect(ch.send(new Uint8Array(5))).rejects.toThrow('more than maxMessageBytes (4)')
    await expect(ch.sendMany([new Uint8Array(1), new Uint8Array(9)])).rejects.toThrow(RangeError)
    expect(ch.length).toBe(0)
    expect(ch.trySend(new Uint8Array(4))).toBe(true)
  })

  it.each([
    [{ capacity: 0 }, RangeError, /options\.capacity/],
    [{ capacity: 2 ** 24 + 1 }, RangeError, /options\.capacity must be an integer between 1 and 16777216/],
    [{ capacity: 2 ** 31 - 1 }, RangeError, /options\.capacity/],
    [{ capacity: '1' }, TypeError, /options\.capacity/],
    [{ capacity: 1, codec: 'yaml' }, TypeError, /options\.codec/],
    [{ capacity: 1, codec: {} }, TypeError, /options\.codec/],
    [{ capacity: 1, maxMessageBytes: -1 }, RangeError, /options\.maxMessageBytes/],
  ])('new Channel(%o) throws naming the field', (options, type, message) => {
    expect(() => new Channel(options as never)).toThrow(type)
    expect(() => new Channel(options as never)).toThrow(message)
  })

  it('a forged handle, or the handle of another kind of primitive, is refused', () => {
    const { doorbells } = new Channel({ capacity: 1 }).handle
    const forged = { kind: 'sluice:Channel', id: 2 ** 40, doorbells, codec: 'v8', maxMessageBytes: 1 } as const
    expect(() => Channel.from(forged)).toThrow(InvalidHandleError)
    const semaphoreId = (new Semaphore(1).handle as LocalSemaphoreHandle).id
    expect(() => Channel.from({ ...forged, id: semaphoreId })).toThrow(InvalidHandleError)
    expect(() => Channel.from({ ...forged, kind: 'sluice:Semaphore' } as never)).toThrow(TypeError)
  })

  it('values a codec cannot encode are refused and nothing is sent', async () => {
    const numbers = new Channel<number>({ capacity: 1, codec: 'number' })
    expect(() => numbers.trySend('1' as never)).toThrow(TypeError)
    const v8 = new Channel({ capacity: 1 })
    await expect(v8.send(() => 1)).rejects.toThrow()
    const json = new Channel({ capacity: 1, codec: 'json' })
    await expect(json.send(undefined)).rejects.toThrow(TypeError)
    expect(numbers.length + v8.length + json.length).toBe(0)
  })
})
