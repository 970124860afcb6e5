// Soak worker: random operations on every shared primitive until told to
// stop, recording what it did in the shared counters (see soak.mjs).
import { setImmediate as yieldToLoop } from 'node:timers/promises'
import { parentPort, workerData } from 'node:worker_threads'
import { Channel, Mutex, Semaphore, TokenBucket } from 'sluice'
import { operate } from './soak-ops.mjs'

const { handles, counters: buffer, index } = workerData
const counters = new Float64Array(buffer)
const primitives = {
  sem: Semaphore.from(handles.sem),
  mutex: Mutex.from(handles.mutex),
  bucket: TokenBucket.from(handles.bucket),
  ch: Channel.from(handles.ch),
}
let stopping = false
parentPort.on('message', (message) => {
  if (message === 'stop') stopping = true
})
while (!stopping) {
  await operate(primitives, counters, index)
  if (Math.random() < 0.1) await yieldToLoop()
}
parentPort.close()
