// The cross-thread pure-JS baseline: a counting semaphore in a
// SharedArrayBuffer, waiting with Atomics.waitAsync (no event loop blocked).
// It is as lean as we can make it, so it is not fair (a thread that finds a
// permit takes it even while others wait) and has no cancellation: what it
// shows is the floor cost of coordinating threads from JS.
const PERMITS = 0
const WAITERS = 1

export class SabSemaphore {
  #cells

  /** A new semaphore with `permits`, or one over the `buffer` of another thread's. */
  constructor(permitsOrBuffer) {
    if (typeof permitsOrBuffer === 'number') {
      this.#cells = new Int32Array(new SharedArrayBuffer(8))
      this.#cells[PERMITS] = permitsOrBuffer
    } else {
      this.#cells = new Int32Array(permitsOrBuffer)
    }
  }

  get buffer() {
    return this.#cells.buffer
  }

  tryAcquire() {
    const cells = this.#cells
    for (;;) {
      const free = Atomics.load(cells, PERMITS)
      if (free === 0) return false
      if (Atomics.compareExchange(cells, PERMITS, free, free - 1) === free) return true
    }
  }

  async acquire() {
    const cells = this.#cells
    while (!this.tryAcquire()) {
      // Announce the wait before checking the count again (inside waitAsync):
      // a release either sees the announcement or changed the count first.
      Atomics.add(cells, WAITERS, 1)
      const wait = Atomics.waitAsync(cells, PERMITS, 0)
      if (wait.async) await wait.value
      Atomics.sub(cells, WAITERS, 1)
    }
  }

  release() {
    const cells = this.#cells
    Atomics.add(cells, PERMITS, 1)
    if (Atomics.load(cells, WAITERS) > 0) Atomics.notify(cells, PERMITS, 1)
  }
}

const NEXT_TICKET = 0
const SERVING = 1

/**
 * The fair counterpart, for a limit of 1: a ticket lock in a
 * SharedArrayBuffer. Each acquire takes the next ticket and waits
 * (Atomics.waitAsync) until it is served, so permits go in arrival order
 * across threads, as sluice's do; every hand-off to another thread is then a
 * wake-up. It shows what fairness itself costs in plain JS.
 */
export class SabTicketLock {
  #cells

  constructor(buffer) {
    this.#cells = new Int32Array(buffer ?? new SharedArrayBuffer(8))
  }

  get buffer() {
    return this.#cells.buffer
  }

  async acquire() {
    const cells = this.#cells
    const ticket = Atomics.add(cells, NEXT_TICKET, 1)
    for (;;) {
      const serving = Atomics.load(cells, SERVING)
      if (serving === ticket) return
      const wait = Atomics.waitAsync(cells, SERVING, serving)
      if (wait.async) await wait.value
    }
  }

  release() {
    Atomics.add(this.#cells, SERVING, 1)
    // Every waiter wakes and checks its ticket: with a handful of threads a
    // targeted wake-up is not worth its bookkeeping.
    Atomics.notify(this.#cells, SERVING)
  }
}
