// The pure-JS baseline: a single-thread counting semaphore written as fast as
// we know how (a counter, and a ring buffer of resolvers for waiters: no array
// shifting, no per-wait closures beyond the promise's own). It cannot be shared
// across threads; it shows what a native crossing costs against plain JS.

export class RingSemaphore {
  #free
  #waiters = new Array(16)
  #head = 0
  #size = 0

  constructor(permits) {
    this.#free = permits
  }

  tryAcquire() {
    if (this.#free === 0 || this.#size !== 0) return false
    this.#free--
    return true
  }

  acquire() {
    if (this.tryAcquire()) return Promise.resolve()
    return new Promise((resolve) => this.#push(resolve))
  }

  release() {
    if (this.#size === 0) {
      this.#free++
      return
    }
    const resolve = this.#waiters[this.#head]
    this.#waiters[this.#head] = undefined
    this.#head = (this.#head + 1) & (this.#waiters.length - 1)
    this.#size--
    resolve()
  }

  #push(resolve) {
    if (this.#size === this.#waiters.length) {
      // Grow by unrolling the ring into a buffer twice the size.
      const grown = new Array(this.#waiters.length * 2)
      for (let i = 0; i < this.#size; i++) grown[i] = this.#waiters[(this.#head + i) & (this.#waiters.length - 1)]
      this.#waiters = grown
      this.#head = 0
    }
    this.#waiters[(this.#head + this.#size) & (this.#waiters.length - 1)] = resolve
    this.#size++
  }
}
