// The cross-thread pure-JS channel baseline: a bounded MPMC ring of byte
// messages in one SharedArrayBuffer (Vyukov's sequence-stamped slots, the
// design of sluice's native queue), written as lean as we can. A thread that
// finds the ring full or empty blocks in Atomics.wait, so it is for workers
// that do nothing else; it has no cancellation and no codecs.
const HEAD = 0 // next position to pop
const TAIL = 1 // next position to push
const CLOSED = 2
const POPPED = 3 // bumped after every pop: what blocked producers wait on
const PUSHED = 4 // bumped after every push: what blocked consumers wait on
const PRODUCERS_WAITING = 5
const CONSUMERS_WAITING = 6
const CONTROL = 8

export class SabRing {
  #control
  #stamps
  #lengths
  #bytes
  #mask
  #slotSize

  /** A new ring of `capacity` (a power of two) slots of `slotSize` bytes, or one over another thread's `buffer`. */
  static create(capacity, slotSize) {
    const buffer = new SharedArrayBuffer(4 * CONTROL + 8 * capacity + capacity * slotSize)
    const ring = new SabRing(buffer, capacity, slotSize)
    for (let i = 0; i < capacity; i++) ring.#stamps[i] = i
    return ring
  }

  constructor(buffer, capacity, slotSize) {
    this.#control = new Int32Array(buffer, 0, CONTROL)
    this.#stamps = new Int32Array(buffer, 4 * CONTROL, capacity)
    this.#lengths = new Int32Array(buffer, 4 * CONTROL + 4 * capacity, capacity)
    this.#bytes = new Uint8Array(buffer, 4 * CONTROL + 8 * capacity)
    this.#mask = capacity - 1
    this.#slotSize = slotSize
  }

  get buffer() {
    return this.#control.buffer
  }

  tryPush(message) {
    const control = this.#control
    for (;;) {
      const pos = Atomics.load(control, TAIL)
      const slot = pos & this.#mask
      const lag = (Atomics.load(this.#stamps, slot) - pos) | 0
      if (lag < 0) return false // full: this slot still holds the message of the previous lap
      if (lag === 0 && Atomics.compareExchange(control, TAIL, pos, (pos + 1) | 0) === pos) {
        this.#bytes.set(message, slot * this.#slotSize)
        this.#lengths[slot] = message.length
        Atomics.store(this.#stamps, slot, (pos + 1) | 0) // publishes the bytes
        Atomics.add(control, PUSHED, 1)
        if (Atomics.load(control, CONSUMERS_WAITING) > 0) Atomics.notify(control, PUSHED, 1)
        return true
      }
    }
  }

  /** A copy of the oldest message, or undefined when the ring is empty. */
  tryPop() {
    const control = this.#control
    for (;;) {
      const pos = Atomics.load(control, HEAD)
      const slot = pos & this.#mask
      const lag = (Atomics.load(this.#stamps, slot) - ((pos + 1) | 0)) | 0
      if (lag < 0) return undefined // empty
      if (lag === 0 && Atomics.compareExchange(control, HEAD, pos, (pos + 1) | 0) === pos) {
        const start = slot * this.#slotSize
        const message = this.#bytes.slice(start, start + this.#lengths[slot])
        Atomics.store(this.#stamps, slot, (pos + this.#mask + 1) | 0) // frees the slot for the next lap
        Atomics.add(control, POPPED, 1)
        if (Atomics.load(control, PRODUCERS_WAITING) > 0) Atomics.notify(control, POPPED, 1)
        return message
      }
    }
  }

  push(message) {
    const control = this.#control
    for (;;) {
      const seen = Atomics.load(control, POPPED)
      if (this.tryPush(message)) return
      Atomics.add(control, PRODUCERS_WAITING, 1)
      Atomics.wait(control, POPPED, seen, 50)
      Atomics.sub(control, PRODUCERS_WAITING, 1)
    }
  }

  /** The oldest message, blocking while the ring is empty; undefined once closed and drained. */
  pop() {
    const control = this.#control
    for (;;) {
      const seen = Atomics.load(control, PUSHED)
      const message = this.tryPop()
      if (message !== undefined) return message
      if (Atomics.load(control, CLOSED) === 1) return this.tryPop()
      Atomics.add(control, CONSUMERS_WAITING, 1)
      Atomics.wait(control, PUSHED, seen, 50)
      Atomics.sub(control, CONSUMERS_WAITING, 1)
    }
  }

  close() {
    Atomics.store(this.#control, CLOSED, 1)
    Atomics.add(this.#control, PUSHED, 1)
    Atomics.notify(this.#control, PUSHED)
  }
}
