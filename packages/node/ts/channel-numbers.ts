/**
 * The number codec's fast path: numeric batches cross into and out of
 * native code as one `Float64Array`, with no per-number allocation.
 */
import type { Doorbell } from './doorbell.js'
import { chanRecvNumbers, type FastHandle } from './native.js'
import { show } from './validate.js'

/**
 * Most numbers one native call receives: the scratch array stays at most
 * 512 KiB whatever `max` and the capacity are.
 */
const NUMBER_CHUNK = 64 * 1024

/**
 * Most numbers `toFloat64s` encodes into the thread's reused scratch array
 * (512 KiB); a larger batch gets an array of its own.
 */
const SCRATCH_MAX = 64 * 1024
let scratch = new Float64Array(0)
/** A `toFloat64s` is filling the scratch array (a getter on `values` may send too). */
let filling = false

/**
 * A batch of numbers to send, as one `Float64Array` (checked: numbers only).
 * Unless `values` is one already, it may be a view of a scratch array this
 * thread reuses (an allocation per batch cost more than the rest of a small
 * batch's send): use it before anything else can run (an `await`), or copy it.
 */
export function toFloat64s(values: Iterable<unknown>): Float64Array {
  if (values instanceof Float64Array) return values
  const list = Array.isArray(values) ? (values as unknown[]) : Array.from(values)
  const length = list.length
  let numbers: Float64Array
  const reuse = !filling && length <= SCRATCH_MAX
  if (reuse) {
    if (scratch.length < length) scratch = new Float64Array(Math.min(SCRATCH_MAX, Math.max(length, 2 * scratch.length)))
    numbers = scratch.length === length ? scratch : scratch.subarray(0, length)
    filling = true
  } else {
    numbers = new Float64Array(length)
  }
  try {
    for (let i = 0; i < length; i++) {
      const value = list[i]
      if (typeof value !== 'number') throw new TypeError(`message must be a number, got ${show(value)}`)
      numbers[i] = value
    }
  } finally {
    if (reuse) filling = false
  }
  return numbers
}

/** Receives numeric batches of one channel into a reused scratch array. */
export class NumberBatches {
  readonly #fast: FastHandle
  readonly #capacity: number
  readonly #doorbell: Doorbell
  #scratch = new Float64Array(0)

  constructor(fast: FastHandle, capacity: number, doorbell: Doorbell) {
    this.#fast = fast
    this.#capacity = capacity
    this.#doorbell = doorbell
  }

  /**
   * Receives what is queued onto `values` until it holds `max`, in chunks:
   * the scratch array is sized for what can be there (the capacity), not for
   * `max`, which may be 2^32 - 1. Returns false if the channel is closed and
   * drained.
   */
  take(max: number, values: number[]): boolean {
    const size = Math.min(max, this.#capacity, NUMBER_CHUNK)
    if (this.#scratch.length < size) this.#scratch = new Float64Array(size)
    const scratch = this.#scratch
    while (values.length < max) {
      const room = Math.min(max - values.length, scratch.length)
      const out = room === scratch.length ? scratch : scratch.subarray(0, room)
      const outcome = chanRecvNumbers(this.#fast, out)
      if (outcome === null) return false
      let count: number
      if (typeof outcome === 'number') {
        count = outcome
      } else {
        count = outcome[0]!
        this.#doorbell.deliver(outcome, 1)
      }
      // Sized once, then filled: faster than a push per number.
      const start = values.length
      values.length = start + count
      for (let i = 0; i < count; i++) values[start + i] = out[i]!
      if (count < room) break
    }
    return true
  }
}
