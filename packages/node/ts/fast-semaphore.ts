/**
 * The fast path of a semaphore shared by threads, run in JavaScript on the
 * native semaphore's own memory, as a futex's user space runs its lock: a
 * take or give that finds the way clear is one `Atomics.compareExchange` on
 * the core's state word, with no native call; anything else (a wait to
 * queue, waiters to hand permits to, a lost race) crosses as before, and the
 * native code decides. The rules are the core's (`Semaphore::try_acquire`
 * and `Semaphore::release` without the lock, `crates/core/src/semaphore.rs`),
 * on the low 32 bits of its word: `permits << 2 | CLOSED | QUEUED`. A take
 * never borrows from the high half nor a give carries into it, so the low
 * half alone decides them, whatever the count.
 *
 * The thread's held count (what a dying thread gives back, see
 * `attachment.rs`) is a second word, this thread's alone, kept here between
 * native calls. It moves right after the CAS, take or give, with no call in
 * between: `worker.terminate()` takes effect at V8's interrupt checks, on
 * calls (the `Atomics` builtin's entry among them, before its CAS) and loop
 * back-edges, so a thread stopped at any point leaves the two words
 * agreeing. (With the give's held count moved first, a stress of workers
 * cycling and terminated at random lost a permit in 7 of 150 rounds; in the
 * order below, none in 800: test/semaphore-fast-path.test.ts keeps a
 * shorter run of it.)
 */
import { SEMAPHORE_CLOSED_BIT, SEMAPHORE_PERMIT_SHIFT, SEMAPHORE_QUEUED_BIT } from './native.js'

// Module-level copies: read as constants on the hot path (see semaphore.ts).
/** Waiters queued or permits owed (the core's `QUEUED`). */
const QUEUED: number = SEMAPHORE_QUEUED_BIT
/** Closed (the core's `CLOSED`). */
const CLOSED: number = SEMAPHORE_CLOSED_BIT
/** The permit count sits above the flags. */
const SHIFT: number = SEMAPHORE_PERMIT_SHIFT
const ONE_PERMIT = 2 ** SHIFT
/** The most a count of the low word can stand for exactly: beyond, the high half matters. */
const LOW_WORD_PERMITS = 2 ** (32 - SHIFT)

/** Where the low 32 bits of a native word are in its `Uint32Array` view (the platform's byte order). */
const LOW = new Uint8Array(new Uint32Array([1]).buffer)[0] === 1 ? 0 : 1

export class FastWords {
  readonly #state: Uint32Array
  readonly #held: Uint32Array
  /** The capacity word, whole: one or two 32-bit halves. */
  readonly #capacity: Uint32Array
  /** Where in `#capacity` its low half is, and its high half (-1: a 32-bit word has none). */
  readonly #capacityLow: number
  readonly #capacityHigh: number
  /** The eventual modes: a take may have the permits parked while waiters are queued. */
  readonly #barging: boolean

  /** `words` from `NativeSemaphore.fastWords()`; `barging` for the eventual fairness modes. */
  constructor(words: readonly [ArrayBuffer, ArrayBuffer, ArrayBuffer], barging: boolean) {
    this.#state = new Uint32Array(words[0])
    this.#held = new Uint32Array(words[1])
    this.#capacity = new Uint32Array(words[2])
    const whole = this.#capacity.length === 2
    this.#capacityLow = whole ? LOW : 0
    this.#capacityHigh = whole ? 1 - LOW : -1
    this.#barging = barging
  }

  /** Takes `weight` free permits with one CAS, or returns false (nothing changed): ask the native semaphore then. */
  take(weight: number): boolean {
    const state = this.#state
    // A plain read seeds the CAS, which checks it (the core's Relaxed load): an
    // `Atomics` call costs ~5-10 ns here, not inlined by this V8.
    const word = state[0]!
    // In FIFO mode the count is 0 while QUEUED is set: the test is for the eventual ones' parked permits.
    if ((word & CLOSED) !== 0 || word >>> SHIFT < weight || ((word & QUEUED) !== 0 && !this.#barging)) return false
    if (Atomics.compareExchange(state, 0, word, word - weight * ONE_PERMIT) !== word) return false
    this.#held[0]! += weight
    return true
  }

  /**
   * Gives back `weight` permits this thread holds with one CAS, or returns
   * false (nothing changed): waiters may need them, or the capacity must be
   * checked where it cannot change, so the native semaphore decides.
   */
  give(weight: number): boolean {
    const state = this.#state
    const held = this.#held
    const word = state[0]! // as in `take`
    if ((word & QUEUED) !== 0 || held[0]! < weight) return false
    // The core's check: the count stays within the capacity (permits freed by
    // `releaseUnowned` may have filled it). Only a capacity the low word can
    // count; a count within it cannot carry out of the low word either. Read
    // plainly, as the core reads it (Relaxed) beside its CAS.
    const capacity = this.#capacity
    const most = capacity[this.#capacityLow]!
    if (this.#capacityHigh >= 0 && capacity[this.#capacityHigh] !== 0) return false
    if (most >= LOW_WORD_PERMITS || (word >>> SHIFT) + weight > most) return false
    if (Atomics.compareExchange(state, 0, word, word + weight * ONE_PERMIT) !== word) return false
    held[0]! -= weight
    return true
  }
}
