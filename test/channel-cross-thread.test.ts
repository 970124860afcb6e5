import { describe, expect, it } from 'vitest'
import { Channel } from 'sluice'
import { eventually, nextMessage, runWorker } from './helpers.js'

interface Tally {
  count: number
  sum: number
  xor: number
}

describe('Channel across worker threads', () => {
  it('2 producer and 2 consumer workers move 100,000 messages, each exactly once', async () => {
    const perProducer = 50_000
    const ch = new Channel<number>({ capacity: 256, codec: 'number' })
    const consumers = [1, 64].map((batch) => runWorker('channel-consumer.mjs', { handle: ch.handle, batch }))
    const producers = [1, 100].map((batch, producer) =>
      runWorker('channel-producer.mjs', { handle: ch.handle, producer, count: perProducer, batch }),
    )
    const tallies = consumers.map(({ worker }) => nextMessage<Tally>(worker))
    expect(await Promise.all(producers.map((p) => p.exited))).toEqual([0, 0])
    ch.close()
    const [a, b] = await Promise.all(tallies)
    let sum = 0
    let xor = 0
    for (let producer = 0; producer < 2; producer++) {
      for (let i = 0; i < perProducer; i++) {
        sum += producer * 1_000_000 + i
        xor ^= producer * 1_000_000 + i
      }
    }
    expect(a!.count + b!.count).toBe(2 * perProducer)
    expect(a!.sum + b!.sum).toBe(sum)
    expect(a!.xor ^ b!.xor).toBe(xor)
    expect(a!.count).toBeGreaterThan(0)
    expect(b!.count).toBeGreaterThan(0)
    expect(ch.length).toBe(0)
  }, 60_000)

  it('a worker terminated while its send waits on a full channel takes no slot with it', async () => {
    const ch = new Channel<number>({ capacity: 1, codec: 'number' })
    ch.trySend(1)
    const { worker } = runWorker('channel-block.mjs', { handle: ch.handle, op: 'send' })
    expect(await nextMessage(worker)).toBe('waiting')
    await eventually(() => ch.length === 1 && !ch.trySend(2))
    await worker.terminate()
    expect(ch.tryRecv()).toBe(1)
    // The freed slot is ours, not the dead sender's.
    expect(ch.trySend(3)).toBe(true)
    expect(ch.tryRecv()).toBe(3)
  })

  it('a worker terminated while its recv waits takes no message with it', async () => {
    const ch = new Channel<number>({ capacity: 1, codec: 'number' })
    const { worker } = runWorker('channel-block.mjs', { handle: ch.handle, op: 'recv' })
    expect(await nextMessage(worker)).toBe('waiting')
    await new Promise((resolve) => setTimeout(resolve, 50))
    await worker.terminate()
    ch.trySend(7)
    expect(ch.tryRecv()).toBe(7)
  })

  it('a send in one thread wakes a receive waiting in another', async () => {
    const ch = new Channel<number>({ capacity: 1, codec: 'number' })
    const received = ch.recv()
    const { exited } = runWorker('channel-producer.mjs', { handle: ch.handle, producer: 0, count: 1, batch: 1 })
    expect(await received).toBe(0)
    expect(await exited).toBe(0)
  })
})
