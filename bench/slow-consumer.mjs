// Peak memory with a slow consumer, one contender per process so that peak RSS
// is its own: a producer worker sends `count` 4 KiB messages as fast as it can;
// the main thread takes ~20 µs per message. A bounded channel holds the
// producer back; an unbounded MessagePort queues everything it sends.
// Prints the peak RSS above the RSS before the producer started, in MiB.
//
//   node bench/slow-consumer.mjs <sluice|port> <count>
import { once } from 'node:events'
import { MessageChannel, Worker } from 'node:worker_threads'
import { Channel, ClosedError } from 'sluice'

const [mode, countArg] = process.argv.slice(2)
const count = Number(countArg)
const size = 4096
const party = new URL('./workers/channel-party.mjs', import.meta.url)

// Peak RSS, sampled every 256 messages by the consumer itself (a timer would
// not fire while it works). Not process.resourceUsage().maxRSS: on Linux a
// child inherits its parent's peak across fork and exec, so a child of a big
// benchmark process would report the parent's.
let peak = 0
let received = 0

function slowly(message) {
  const until = performance.now() + 0.02
  while (performance.now() < until);
  if ((received & 255) === 0) peak = Math.max(peak, process.memoryUsage.rss())
  return message.length
}

const before = process.memoryUsage.rss()
if (mode === 'sluice') {
  const channel = new Channel({ capacity: 1024, codec: 'bytes' })
  const worker = new Worker(party, { workerData: { role: 'producer', mode, count, size, batch: 1, handle: channel.handle } })
  const exited = once(worker, 'exit')
  await once(worker, 'message')
  worker.postMessage('go')
  worker.once('message', () => channel.close())
  for (;;) {
    try {
      received += slowly(channel.tryRecv() ?? (await channel.recv())) > 0 ? 1 : 0
    } catch (error) {
      if (error instanceof ClosedError) break
      throw error
    }
  }
  await exited
} else {
  const { port1, port2 } = new MessageChannel()
  const worker = new Worker(party, { workerData: { role: 'producer', mode, count, size, ports: [port1] }, transferList: [port1] })
  const exited = once(worker, 'exit')
  await once(worker, 'message')
  worker.postMessage('go')
  await new Promise((resolve) => {
    port2.on('message', (message) => {
      if (message === null) return resolve(port2.close())
      received += slowly(message) > 0 ? 1 : 0
    })
  })
  await exited
}
if (received !== count) throw new Error(`received ${received} of ${count}`)
console.log(JSON.stringify({ peakMiB: (peak - before) / 2 ** 20 }))
