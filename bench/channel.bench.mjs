// Cross-thread messages per second: one producer worker, the main thread
// consuming; a sluice Channel (bounded, 1,024) against MessagePort
// (unbounded), each one message at a time and in batches of 256.
import { once } from 'node:events'
import { MessageChannel, Worker } from 'node:worker_threads'
import { Channel } from 'sluice'

const producer = new URL('./workers/channel-producer.mjs', import.meta.url)

async function sluice(count, batch) {
  const ch = new Channel({ capacity: 1024, codec: 'number' })
  const worker = new Worker(producer, { workerData: { mode: 'sluice', count, batch, handle: ch.handle } })
  // Listen for the exit now: a fast producer may be gone before we ask.
  const exited = once(worker, 'exit')
  await once(worker, 'online')
  const started = performance.now()
  let received = 0
  if (batch > 1) {
    while (received < count) received += (await ch.recvMany(batch)).length
  } else {
    while (received < count) {
      if (ch.tryRecv() === undefined) await ch.recv()
      received++
    }
  }
  const seconds = (performance.now() - started) / 1000
  await exited
  return count / seconds
}

async function messagePort(count, batch) {
  const { port1, port2 } = new MessageChannel()
  const worker = new Worker(producer, { workerData: { mode: 'port', count, batch, port: port2 }, transferList: [port2] })
  const exited = once(worker, 'exit')
  await once(worker, 'online')
  const started = performance.now()
  let received = 0
  await new Promise((resolve) => {
    port1.on('message', (message) => {
      received += batch > 1 ? message.length : 1
      if (received >= count) resolve()
    })
  })
  const seconds = (performance.now() - started) / 1000
  port1.close()
  await exited
  return count / seconds
}

/** A custom suite for run.mjs: best of `repeats` runs, in messages per second. */
export function suites({ quick }) {
  const count = quick ? 20_000 : 500_000
  const repeats = quick ? 1 : 3
  const contenders = [
    ['MessagePort', () => messagePort(count, 1)],
    ['MessagePort, batches of 256', () => messagePort(count, 256)],
    ['sluice', () => sluice(count, 1)],
    ['sluice, batches of 256', () => sluice(count, 256)],
  ]
  return [
    {
      name: 'cross-thread messages/s (1 producer worker -> main thread, numbers)',
      baseline: 'MessagePort',
      async run() {
        const rows = []
        for (const [name, measure] of contenders) {
          let best = 0
          for (let i = 0; i < repeats; i++) best = Math.max(best, await measure())
          rows.push({ name, opsPerSecond: best })
        }
        return rows
      },
    },
  ]
}
