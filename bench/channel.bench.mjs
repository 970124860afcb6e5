// Scenario 5, cross-thread messages per second. First numbers from one
// producer worker to the main thread (sluice Channel, bounded at 1,024,
// against MessagePort, unbounded; one at a time and in batches of 256). Then
// byte messages of 64 B and 4 KiB between worker threads only, 1 -> 1 and
// 2 -> 2, against MessagePort and the SharedArrayBuffer ring baseline. Peak
// memory with a slow consumer is in slow-consumer.mjs.
import { execFileSync } from 'node:child_process'
import { once } from 'node:events'
import { MessageChannel, Worker } from 'node:worker_threads'
import { Channel } from 'sluice'
import { SabRing } from './baselines/sab-ring.mjs'
import { bestOf } from './best-of.mjs'

const producer = new URL('./workers/channel-producer.mjs', import.meta.url)
const party = new URL('./workers/channel-party.mjs', import.meta.url)
const slowConsumer = new URL('./slow-consumer.mjs', import.meta.url).pathname
const CAPACITY = 1024

async function sluice(count, batch) {
  const ch = new Channel({ capacity: 1024, codec: 'number' })
  const worker = new Worker(producer, { workerData: { mode: 'sluice', count, batch, handle: ch.handle } })
  // Listen for the exit now: a fast producer may be gone before we ask.
  const exited = once(worker, 'exit')
  await once(worker, 'message') // ready
  const started = performance.now()
  worker.postMessage('go')
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
  await once(worker, 'message') // ready
  const started = performance.now()
  worker.postMessage('go')
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

/**
 * Messages per second from `producers` to `consumers` worker threads, `count`
 * messages of `size` bytes in all, timed from 'go' until every consumer has
 * its input's end. Throws unless every message arrived exactly once.
 */
async function betweenWorkers(mode, { producers, consumers, count, size, batch = 1 }) {
  const shared = {}
  let channel, ring
  if (mode === 'sluice') {
    channel = new Channel({ capacity: CAPACITY, codec: 'bytes' })
    shared.handle = channel.handle
  } else if (mode === 'sab') {
    ring = SabRing.create(CAPACITY, size)
    shared.ring = { buffer: ring.buffer, capacity: CAPACITY, slotSize: size }
  }
  // MessagePort: one channel per (producer, consumer) pair.
  const pairs = Array.from({ length: producers }, () => Array.from({ length: consumers }, () => new MessageChannel()))
  const start = (role, index, perWorker) => {
    const ports = mode !== 'port' ? undefined : role === 'producer' ? pairs[index].map((p) => p.port1) : pairs.map((row) => row[index].port2)
    const workerData = { role, mode, size, batch, count: perWorker, ports, ...shared }
    return new Worker(party, { workerData, transferList: ports })
  }
  const sending = Array.from({ length: producers }, (_, i) => start('producer', i, count / producers))
  const receiving = Array.from({ length: consumers }, (_, i) => start('consumer', i))
  const workers = [...sending, ...receiving]
  const exited = workers.map((worker) => once(worker, 'exit'))
  await Promise.all(workers.map((worker) => once(worker, 'message')))
  const sent = Promise.all(sending.map((worker) => once(worker, 'message')))
  const received = Promise.all(receiving.map((worker) => once(worker, 'message')))
  const started = performance.now()
  for (const worker of workers) worker.postMessage('go')
  await sent
  channel?.close()
  ring?.close()
  const totals = (await received).map(([report]) => report)
  const seconds = (performance.now() - started) / 1000
  await Promise.all(exited)
  const messages = totals.reduce((sum, t) => sum + t.messages, 0)
  const bytes = totals.reduce((sum, t) => sum + t.bytes, 0)
  if (messages !== count || bytes !== count * size) throw new Error(`${mode}: received ${messages} messages (${bytes} B) of ${count}`)
  return count / seconds
}

/** Custom suites for run.mjs: best of `repeats` runs, in messages per second. */
export function suites({ quick }) {
  const count = quick ? 20_000 : 500_000
  const repeats = quick ? 1 : 3
  const contenders = [
    ['MessagePort', () => messagePort(count, 1)],
    ['MessagePort, batches of 256', () => messagePort(count, 256)],
    ['sluice', () => sluice(count, 1)],
    ['sluice, batches of 256', () => sluice(count, 256)],
  ]
  const best = (measure) => bestOf(repeats, measure)
  const slowCount = quick ? 5_000 : 40_000
  const shapes = [
    [1, 1, 64],
    [1, 1, 4096],
    [2, 2, 64],
    [2, 2, 4096],
  ]
  const byteSuites = shapes.map(([producers, consumers, size]) => {
    const messages = (quick ? 8_000 : 200_000) / (size > 1024 ? 4 : 1)
    const shape = { producers, consumers, count: messages, size }
    return {
      name: `channel ${producers} -> ${consumers} workers, ${size >= 1024 ? `${size / 1024} KiB` : `${size} B`} messages (msgs/s)`,
      baseline: 'MessagePort',
      async run() {
        return [
          { name: 'MessagePort', ...await best(() => betweenWorkers('port', shape)) },
          { name: 'SAB ring baseline', ...await best(() => betweenWorkers('sab', shape)) },
          { name: 'sluice', ...await best(() => betweenWorkers('sluice', shape)) },
          { name: 'sluice, batches of 64', ...await best(() => betweenWorkers('sluice', { ...shape, batch: 64 })) },
        ]
      },
    }
  })
  return [
    {
      name: 'cross-thread messages/s (1 producer worker -> main thread, numbers)',
      baseline: 'MessagePort',
      async run() {
        const rows = []
        for (const [name, measure] of contenders) {
          rows.push({ name, ...(await bestOf(repeats, measure)) })
        }
        return rows
      },
    },
    ...byteSuites,
    {
      name: `peak memory, slow consumer of ${slowCount.toLocaleString('en-US')} 4 KiB messages (MiB of RSS above the start)`,
      baseline: 'MessagePort (unbounded)',
      unit: 'MiB',
      lowerIsBetter: true,
      async run() {
        const peak = (mode) => JSON.parse(execFileSync(process.execPath, [slowConsumer, mode, String(slowCount)], { encoding: 'utf8' })).peakMiB
        return [
          { name: 'MessagePort (unbounded)', value: peak('port') },
          { name: `sluice (bounded at ${CAPACITY.toLocaleString('en-US')})`, value: peak('sluice') },
        ]
      },
    },
  ]
}
