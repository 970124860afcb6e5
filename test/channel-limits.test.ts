import { execFile } from 'node:child_process'
import { fileURLToPath } from 'node:url'
import { promisify } from 'node:util'
import { describe, expect, it } from 'vitest'
import { Channel, type Codec } from 'sluice'

const run = promisify(execFile)
/** The internal module that holds the binding, to reach it without the TS validation. */
const nativeModule = fileURLToPath(new URL('../packages/node/dist/native.js', import.meta.url))

/** Strings, except that one starting with 'bad' cannot be decoded. */
const picky: Codec<string> = {
  encode: (s) => Buffer.from(s),
  decode(message) {
    const s = Buffer.from(message as Uint8Array).toString()
    if (s.startsWith('bad')) throw new SyntaxError(`cannot decode ${s}`)
    return s
  },
}

describe('Channel capacity bound', () => {
  it('Channel.MAX_CAPACITY is 2^24', () => {
    expect(Channel.MAX_CAPACITY).toBe(2 ** 24)
  })

  it('a capacity at the bound works; past it, in JS or natively, is a RangeError and the process exits normally', async () => {
    // Before the bound, 2^31 - 1 aborted the process (SIGABRT: a 51 GB
    // allocation failed), so this runs in a child process.
    const script = `
      const { Channel } = require('sluice')
      const { NativeChannel } = require(${JSON.stringify(nativeModule)})
      const attempts = {
        'at the bound': () => new Channel({ capacity: Channel.MAX_CAPACITY, codec: 'number' }),
        'past the bound': () => new Channel({ capacity: Channel.MAX_CAPACITY + 1 }),
        '2 ** 31 - 1': () => new Channel({ capacity: 2 ** 31 - 1 }),
        'native, past the bound': () => new NativeChannel(Channel.MAX_CAPACITY + 1),
        'native, 2 ** 31 - 1': () => new NativeChannel(2 ** 31 - 1),
      }
      for (const [name, attempt] of Object.entries(attempts)) {
        try {
          const ch = attempt()
          ch.trySend?.(1)
          console.log(name + ': capacity ' + ch.capacity + ', length ' + ch.length)
        } catch (error) {
          console.log(name + ': ' + error.name + ': ' + error.message)
        }
      }
    `
    const { stdout } = await run(process.execPath, ['-e', script], { timeout: 30_000 })
    expect(stdout.trim().split('\n')).toEqual([
      'at the bound: capacity 16777216, length 1',
      'past the bound: RangeError: options.capacity must be an integer between 1 and 16777216, got 16777217',
      '2 ** 31 - 1: RangeError: options.capacity must be an integer between 1 and 16777216, got 2147483647',
      'native, past the bound: RangeError: capacity must be an integer between 1 and 16777216, got 16777217',
      'native, 2 ** 31 - 1: RangeError: capacity must be an integer between 1 and 16777216, got 2147483647',
    ])
  })
})

describe('Channel recvMany with a huge max', () => {
  it('recvMany(2 ** 32 - 1) on a number channel returns what is queued', async () => {
    const ch = new Channel<number>({ capacity: 8, codec: 'number' })
    ch.trySendMany([1, 2, 3])
    expect(await ch.recvMany(2 ** 32 - 1)).toEqual([1, 2, 3])
    const waiting = ch.recvMany(2 ** 32 - 1)
    ch.trySendMany([4, 5])
    expect(await waiting).toEqual([4, 5])
  })

  it('a numeric recvMany larger than one native chunk returns every queued number, in order', async () => {
    const count = 200_000 // more than the 64 Ki numbers one native call takes
    const ch = new Channel<number>({ capacity: count, codec: 'number' })
    const sent = Float64Array.from({ length: count }, (_, i) => i)
    expect(ch.trySendMany(sent)).toBe(count)
    const got = await ch.recvMany(2 ** 32 - 1)
    expect(got.length).toBe(count)
    expect(got.every((n, i) => n === i)).toBe(true)
    expect(ch.length).toBe(0)
    ch.close()
    expect(await ch.recvMany(2 ** 32 - 1)).toEqual([])
  })

  it('recvMany(2 ** 32 - 1) on a byte channel returns what is queued', async () => {
    const ch = new Channel<unknown>({ capacity: 4 })
    ch.trySendMany(['a', { b: 1 }])
    expect(await ch.recvMany(2 ** 32 - 1)).toEqual(['a', { b: 1 }])
  })
})

describe('Channel decode failures lose no other message', () => {
  it('recvMany returns the messages before one that fails to decode, the next call throws, the rest follow', async () => {
    const ch = new Channel({ capacity: 8, codec: picky })
    await ch.sendMany(['a', 'b', 'c', 'd', 'bad', 'e', 'f'])
    expect(await ch.recvMany(10)).toEqual(['a', 'b', 'c', 'd'])
    await expect(ch.recvMany(10)).rejects.toThrow('cannot decode bad')
    expect(await ch.recvMany(10)).toEqual(['e', 'f'])
    expect(ch.tryRecv()).toBeUndefined()
    // A second bad message among those kept back ends the batch that reaches it.
    await ch.sendMany(['a', 'bad1', 'b', 'c', 'bad2', 'd'])
    expect(await ch.recvMany(10)).toEqual(['a'])
    await expect(ch.recvMany(10)).rejects.toThrow('cannot decode bad1')
    expect(await ch.recvMany(10)).toEqual(['b', 'c'])
    await expect(ch.recvMany(10)).rejects.toThrow('cannot decode bad2')
    expect(await ch.recvMany(10)).toEqual(['d'])
  })

  it('recvMany rejects at once when the first message of its batch fails; the others stay in order', async () => {
    const ch = new Channel({ capacity: 8, codec: picky })
    await ch.sendMany(['bad1', 'a', 'bad2', 'b', 'c'])
    await expect(ch.recvMany(10)).rejects.toThrow('cannot decode bad1')
    // The rest came out with that batch; every kind of receive gets them, in order.
    expect(ch.tryRecv()).toBe('a')
    expect(() => ch.tryRecv()).toThrow('cannot decode bad2')
    expect(await ch.recv()).toBe('b')
    ch.trySend('d')
    expect(await ch.recvMany(1)).toEqual(['c'])
    expect(await ch.recvMany(10)).toEqual(['d'])
  })

  it('a batch received after waiting keeps what follows a message that fails to decode', async () => {
    const ch = new Channel({ capacity: 8, codec: picky })
    const waiting = ch.recvMany(10)
    await ch.sendMany(['a', 'b', 'bad', 'c'])
    expect(await waiting).toEqual(['a', 'b'])
    await expect(ch.recv()).rejects.toThrow('cannot decode bad')
    expect(await ch.recvMany(10)).toEqual(['c'])
  })

  it('after close, what a failed batch kept is delivered before the channel reports drained', async () => {
    const ch = new Channel({ capacity: 8, codec: picky })
    await ch.sendMany(['a', 'bad', 'b'])
    ch.close()
    expect(await ch.recvMany(10)).toEqual(['a'])
    await expect(ch.recvMany(10)).rejects.toThrow('cannot decode bad')
    const rest: string[] = []
    for await (const value of ch) rest.push(value)
    expect(rest).toEqual(['b'])
    expect(await ch.recvMany(10)).toEqual([])
  })

  it('recv and tryRecv lose only the message that fails to decode, waiting or not', async () => {
    const ch = new Channel({ capacity: 8, codec: picky })
    await ch.sendMany(['a', 'bad1', 'b', 'bad2', 'c'])
    expect(await ch.recv()).toBe('a')
    await expect(ch.recv()).rejects.toThrow('cannot decode bad1')
    expect(ch.tryRecv()).toBe('b')
    expect(() => ch.tryRecv()).toThrow('cannot decode bad2')
    expect(ch.tryRecv()).toBe('c')
    const waiting = ch.recv()
    await ch.sendMany(['bad3', 'd'])
    await expect(waiting).rejects.toThrow('cannot decode bad3')
    expect(ch.length).toBe(1)
    expect(await ch.recv()).toBe('d')
  })
})
