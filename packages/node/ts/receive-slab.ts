/**
 * The receive slab: where single byte messages are received, as views, one
 * allocation per 64 KiB instead of one per message (which was most of a
 * receive's cost). One per thread, shared by all its channels (as Node's
 * Buffer pool), so many channels cost no more. Views are never reused (a
 * decoded value may keep one, as v8's deserializer does for typed arrays),
 * so a kept message keeps its slab alive.
 *
 * Native code copies a message to `slabOffset()` and its length into the
 * slab's header (its first `SLAB_HEADER_BYTES`, never part of a message) and
 * returns `true` in its place; `advance` makes the view here, in JavaScript,
 * which costs a fraction of a view made through N-API.
 */
import { markAsUntransferable } from 'node:worker_threads'
import { MAX_SLAB_MESSAGE, SLAB_HEADER_BYTES, type Received, type SlabReceived } from './native.js'

/** Bytes per slab; each holds messages of up to MAX_SLAB_MESSAGE bytes (8 KiB, from the binding). */
const SLAB_BYTES = 64 * 1024

let slab: ArrayBuffer | undefined
/** The slab's header: the length of the message just placed. */
let header = new Uint32Array(0)
let at = 0

/** The slab the next message may land in (a new one when this one is nearly full). */
export function currentSlab(): ArrayBuffer {
  if (slab === undefined || SLAB_BYTES - at < MAX_SLAB_MESSAGE) {
    slab = new ArrayBuffer(SLAB_BYTES)
    // Transferring it would detach every message received into it.
    markAsUntransferable(slab)
    header = new Uint32Array(slab, 0, 1)
    at = SLAB_HEADER_BYTES
  }
  return slab
}

/** Where in `currentSlab()` the next message goes. */
export function slabOffset(): number {
  return at
}

/**
 * Replaces a message placed in the slab (`true`) by its view, and moves past
 * it; anything else is returned as it is.
 */
export function advance<R extends Received | SlabReceived | undefined | null>(received: R): Exclude<R, SlabReceived> {
  if (received === true) return take() as Exclude<R, SlabReceived>
  if (Array.isArray(received) && received[0] === true) (received as unknown[])[0] = take()
  return received as Exclude<R, SlabReceived>
}

function take(): Uint8Array {
  const length = header[0]!
  const view = new Uint8Array(slab!, at, length)
  // 8-byte aligned, so a typed array the codec views there is aligned.
  at += (length + 7) & ~7
  return view
}
