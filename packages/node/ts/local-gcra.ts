// A token bucket's state while one thread alone holds it: the same GCRA as
// the native bucket (crates/core/src/token_bucket.rs), step for step, in
// plain JavaScript. A native call costs ~20-40 ns and inlined JavaScript ~2 ns;
// the clock read is what remains (`process.hrtime()`, the cheapest monotonic
// clock Node offers: no brand check, unlike `performance.now()`).
//
// Times are whole nanoseconds since the bucket's own origin, so every value is
// an exact integer in a double as long as it stays below 2^53: the burst is at
// most HORIZON (checked by `fits`), and a bucket older than HORIZON (52 days)
// answers EXPIRED and its owner moves it to native memory, where u64 counts on.

const hrtime = process.hrtime

/** 2^52 ns (~52 days): burst and age limit, so `now + burst` stays below 2^53. */
const HORIZON = 2 ** 52

/** `tryTake`/`reserve` answer: too old to count exactly here; move to native. */
export const EXPIRED = -1

interface Reservation {
  readonly tokens: number
  /** When its tokens are there, in nanoseconds since the origin. */
  readonly readyAt: number
}

/** The state `NativeTokenBucket.adopt` takes, against one clock reading. */
export interface GcraState {
  /** Nanoseconds until the bucket is full again (0: full). */
  fullIn: number
  /** `[token, tokens, dueIn, ...]` of the reservations not yet due. */
  pending: number[]
}

export class LocalGcra {
  /** Theoretical arrival time: the bucket is full again at `tat`; 0 = full. */
  #tat = 0
  /** Nanoseconds to refill one token. */
  readonly #interval: number
  /** `capacity * interval`: how far `tat` may run ahead of now. */
  readonly #burst: number
  /** `process.hrtime()` seconds at creation: readings count from it. */
  readonly #origin: number
  /** This thread's reservations not yet due, by wait token (as the binding's `Pending`). */
  readonly #pending = new Map<number, Reservation>()

  /** Whether a bucket of this size can be counted exactly here. */
  static fits(capacity: number, intervalNanos: number): boolean {
    return capacity * intervalNanos <= HORIZON
  }

  constructor(capacity: number, intervalNanos: number) {
    this.#interval = intervalNanos
    this.#burst = capacity * intervalNanos
    this.#origin = hrtime()[0]
  }

  #now(): number {
    const [seconds, nanos] = hrtime()
    return (seconds - this.#origin) * 1e9 + nanos
  }

  /** 1 if `n` tokens were taken, 0 if they are not there, or EXPIRED. */
  tryTake(n: number): number {
    const now = this.#now()
    if (now > HORIZON) return EXPIRED
    const next = Math.max(this.#tat, now) + n * this.#interval
    if (next - now > this.#burst) return 0
    this.#tat = next
    return 1
  }

  /**
   * Reserves `n` tokens (always: reservations are served in the order made)
   * and answers the nanoseconds until they are there, or EXPIRED. One not due
   * at once is remembered under `token` until `redeem` or `cancel`.
   */
  reserve(n: number, token: number): number {
    const now = this.#now()
    if (now > HORIZON) return EXPIRED
    const next = Math.max(this.#tat, now) + n * this.#interval
    this.#tat = next
    const wait = Math.max(next - this.#burst, now) - now
    if (wait > 0) this.#pending.set(token, { tokens: n, readyAt: now + wait })
    return wait
  }

  /** The wait for `token` ended with its tokens. */
  redeem(token: number): void {
    this.#pending.delete(token)
  }

  /**
   * Gives back the tokens of `token`'s reservation if it is not yet due, as
   * the native `cancel`: `tat` moves back by them, exact for the last
   * reservation and conservative for earlier ones.
   */
  cancel(token: number): boolean {
    const reservation = this.#pending.get(token)
    if (reservation === undefined) return false
    this.#pending.delete(token)
    if (reservation.readyAt <= this.#now()) return false
    this.#tat = Math.max(0, this.#tat - reservation.tokens * this.#interval)
    return true
  }

  /** Whole tokens available now. */
  available(): number {
    const now = this.#now()
    const ahead = Math.max(this.#tat, now) - now
    return Math.floor(Math.max(0, this.#burst - ahead) / this.#interval)
  }

  /** The state to move to native memory, against one clock reading. */
  state(): GcraState {
    const now = this.#now()
    const pending: number[] = []
    for (const [token, { tokens, readyAt }] of this.#pending) {
      // A due reservation has had its tokens: native `cancel` would refund nothing.
      if (readyAt > now) pending.push(token, tokens, readyAt - now)
    }
    return { fullIn: Math.max(0, this.#tat - now), pending }
  }
}
