// Benchmark worker: a producer or a consumer of byte messages through a sluice
// Channel (one at a time or in batches), the SAB ring baseline, or
// MessagePorts. Starts on 'go'; a producer says 'sent' when done, a consumer
// reports what it received when its input ends.
import { once } from 'node:events'
import { parentPort, workerData } from 'node:worker_threads'
import { Channel, ClosedError } from 'sluice'
import { SabRing } from '../baselines/sab-ring.mjs'

const { role, mode, count, size, batch, handle, ring: ringShape, ports } = workerData
// Attached before saying 'ready'.
const channel = handle ? Channel.from(handle) : undefined

async function produce() {
  const payload = new Uint8Array(size).fill(7)
  if (mode === 'sluice') {
    const ch = channel
    if (batch > 1) {
      const values = Array.from({ length: batch }, () => payload)
      for (let sent = 0; sent < count; sent += batch) await ch.sendMany(values.slice(0, Math.min(batch, count - sent)))
    } else {
      for (let i = 0; i < count; i++) if (!ch.trySend(payload)) await ch.send(payload)
    }
  } else if (mode === 'sab') {
    const ring = new SabRing(ringShape.buffer, ringShape.capacity, ringShape.slotSize)
    for (let i = 0; i < count; i++) ring.push(payload)
  } else {
    // MessagePort: one port per consumer, dealt round-robin; null ends each.
    for (let i = 0; i < count; i++) ports[i % ports.length].postMessage(payload)
    for (const port of ports) port.postMessage(null)
  }
}

/** Resolves with [messages, bytes] received. */
async function consume() {
  let messages = 0
  let bytes = 0
  if (mode === 'sluice') {
    const ch = channel
    if (batch > 1) {
      for (let got = await ch.recvMany(batch); got.length > 0; got = await ch.recvMany(batch)) {
        messages += got.length
        for (const message of got) bytes += message.length
      }
    } else {
      for (;;) {
        let message = ch.tryRecv()
        if (message === undefined) {
          try {
            message = await ch.recv()
          } catch (error) {
            if (error instanceof ClosedError) break
            throw error
          }
        }
        messages++
        bytes += message.length
      }
    }
  } else if (mode === 'sab') {
    const ring = new SabRing(ringShape.buffer, ringShape.capacity, ringShape.slotSize)
    for (let message = ring.pop(); message !== undefined; message = ring.pop()) {
      messages++
      bytes += message.length
    }
  } else {
    let open = ports.length
    await new Promise((resolve) => {
      for (const port of ports) {
        port.on('message', (message) => {
          if (message === null) {
            port.close()
            if (--open === 0) resolve()
            return
          }
          messages++
          bytes += message.length
        })
      }
    })
  }
  return [messages, bytes]
}

// Waits that are only an Atomics.waitAsync do not keep a thread alive.
const keepAlive = setInterval(() => {}, 2 ** 30)
parentPort.postMessage('ready')
await once(parentPort, 'message')
if (role === 'producer') {
  await produce()
  parentPort.postMessage({ sent: true })
} else {
  const [messages, bytes] = await consume()
  parentPort.postMessage({ messages, bytes })
}
clearInterval(keepAlive)
