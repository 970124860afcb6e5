// The pure-JS baseline: a GCRA token bucket in one number (the theoretical
// arrival time), as the native one, but single-thread.
import { performance } from 'node:perf_hooks'

export class GcraBucket {
  #tat = 0
  #interval
  #burst

  constructor(capacity, refillPerSecond) {
    this.#interval = 1000 / refillPerSecond // ms per token
    this.#burst = capacity * this.#interval
  }

  tryTake(n = 1) {
    const now = performance.now()
    const next = Math.max(this.#tat, now) + n * this.#interval
    if (next - now > this.#burst) return false
    this.#tat = next
    return true
  }
}
