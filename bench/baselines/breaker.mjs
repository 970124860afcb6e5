// Pure-JS baseline for the circuit breaker benchmarks: the consecutive-failures
// breaker with its state in plain fields of one thread (no sharing, no
// generations, no events), the least a breaker's `run` can cost.
export class LocalBreaker {
  #failures = 0
  #openUntil = 0
  #threshold
  #openDuration

  constructor(threshold, openDuration) {
    this.#threshold = threshold
    this.#openDuration = openDuration
  }

  async run(fn) {
    if (this.#openUntil !== 0) {
      if (performance.now() < this.#openUntil) throw new Error('open')
      this.#openUntil = 0 // half-open: this call is the trial
    }
    try {
      const value = await fn()
      this.#failures = 0
      return value
    } catch (error) {
      if (++this.#failures >= this.#threshold) this.#openUntil = performance.now() + this.#openDuration
      throw error
    }
  }
}
