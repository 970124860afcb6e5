/**
 * The receive slab: where single byte messages are received, as views, one
 * allocation per 64 KiB instead of one per message (which was most of a
 * receive's cost). One per thread, shared by all its channels (as Node's
 * Buffer pool), so many channels cost no more. Views are never reused (a
 * decoded value may keep one, as v8's deserializer does for typed arrays),
 * so a kept message keeps its slab alive.
 */
import { markAsUntransferable } from 'node:worker_threads'
import { MAX_SLAB_MESSAGE, type Received } from './native.js'

/** Bytes per slab; each holds messages of up to MAX_SLAB_MESSAGE bytes (8 KiB, from the binding). */
const SLAB_BYTES = 64 * 1024

let slab: Uint8Array | undefined
let at = 0

/** The slab the next message may land in (a new one when this one is nearly full). */
export function currentSlab(): Uint8Array {
  if (slab === undefined || SLAB_BYTES - at < MAX_SLAB_MESSAGE) {
    slab = new Uint8Array(SLAB_BYTES)
    // Transferring it would detach every message received into it.
    markAsUntransferable(slab.buffer)
    at = 0
  }
  return slab
}

/** Where in `currentSlab()` the next message goes. */
export function slabOffset(): number {
  return at
}

/** Moves past the message just received if it landed in the slab. */
export function advance<R extends Received | undefined | null>(received: R): R {
  const message = Array.isArray(received) ? received[0] : received
  if (message instanceof Uint8Array && message.buffer === slab?.buffer) {
    // 8-byte aligned, so a typed array the codec views there is aligned.
    at += (message.byteLength + 7) & ~7
  }
  return received
}
