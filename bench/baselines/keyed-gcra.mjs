// The pure-JS keyed baseline: GCRA per key, one number per key in a Map (the
// key's theoretical arrival time, in nanoseconds since the limiter's origin),
// on process.hrtime() (the cheapest monotonic clock Node offers). Single
// thread, as lean as we can honestly make it while giving the same answer as
// sluice's RateLimiter.tryTake: allowed, remaining, retryAfterMs,
// resetAfterMs, and a bound on the keys it holds (a new key past `maxKeys`
// first sweeps the keys that are back to a fresh key's state, then is refused,
// as whenFull 'refuse'). A GCRA key at rest is its fresh state, so nothing is
// lost by the sweep.
const hrtime = process.hrtime
const KEYS_FULL = Object.freeze({ allowed: false, remaining: 0, retryAfterMs: 0, resetAfterMs: 0, reason: 'keys-full' })

export class GcraMap {
  /** key -> theoretical arrival time: the key is full again at `tat` (ns). */
  #tats = new Map()
  /** Nanoseconds to refill one token. */
  #interval
  /** `capacity * interval`: how far `tat` may run ahead of now. */
  #burst
  #maxKeys
  /** process.hrtime() seconds at creation: readings count from it. */
  #origin = hrtime()[0]

  constructor({ capacity, refillPerSecond, maxKeys = 100_000 }) {
    this.#interval = 1e9 / refillPerSecond
    this.#burst = capacity * this.#interval
    this.#maxKeys = maxKeys
  }

  get size() {
    return this.#tats.size
  }

  tryTake(key, n = 1) {
    const [seconds, nanos] = hrtime()
    const now = (seconds - this.#origin) * 1e9 + nanos
    let tat = this.#tats.get(key)
    if (tat === undefined) {
      if (this.#tats.size >= this.#maxKeys && !this.#sweep(now)) return KEYS_FULL
      tat = 0
    }
    const from = tat > now ? tat : now
    const next = from + n * this.#interval
    const ahead = next - now
    if (ahead > this.#burst) {
      return {
        allowed: false,
        remaining: Math.floor((this.#burst - (from - now)) / this.#interval),
        retryAfterMs: Math.ceil((ahead - this.#burst) / 1e6),
        resetAfterMs: Math.ceil((from - now) / 1e6),
        reason: 'limited',
      }
    }
    this.#tats.set(key, next)
    return { allowed: true, remaining: Math.floor((this.#burst - ahead) / this.#interval), retryAfterMs: 0, resetAfterMs: Math.ceil(ahead / 1e6) }
  }

  /** Drops the keys back at rest; whether there is room now. */
  #sweep(now) {
    for (const [key, tat] of this.#tats) if (tat <= now) this.#tats.delete(key)
    return this.#tats.size < this.#maxKeys
  }
}
