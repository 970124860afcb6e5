// Benchmark worker: sends `count` numbers as fast as it can, through a sluice
// Channel (one by one or in batches) or a MessagePort (one by one or batched).
// Says 'ready' once set up and starts on 'go', so the timing leaves out the
// worker's start (loading its modules took 30-45 ms, most of a 500,000-number run).
import { once } from 'node:events'
import { parentPort, workerData } from 'node:worker_threads'
import { Channel } from 'sluice'

const { mode, count, batch, handle, port } = workerData
const ch = mode === 'sluice' ? Channel.from(handle) : undefined
parentPort.postMessage('ready')
await once(parentPort, 'message')
if (mode === 'sluice') {
  if (batch > 1) {
    const values = Array.from({ length: batch }, (_, i) => i)
    for (let sent = 0; sent < count; sent += batch) await ch.sendMany(values)
  } else {
    for (let i = 0; i < count; i++) if (!ch.trySend(i)) await ch.send(i)
  }
} else if (batch > 1) {
  const values = Array.from({ length: batch }, (_, i) => i)
  for (let sent = 0; sent < count; sent += batch) port.postMessage(values)
} else {
  for (let i = 0; i < count; i++) port.postMessage(i)
}
