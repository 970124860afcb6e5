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
 * native calls. It moves after a take's CAS and before a give's, so that a
 * thread stopped between the two steps would lose the permit, never
 * duplicate it; and none is: `worker.terminate()` takes effect at V8's
 * interrupt checks (entry to a JavaScript function, loop back-edges), of
 * which there is none between them.
 */

/** Bit 0 of the state word: waiters queued or permits owed (see the core's `QUEUED`). */
const QUEUED = 1
/** Bit 1: closed. */
const CLOSED = 2
/** The permit count sits above the two flags. */
const ONE_PERMIT = 4

export class FastWords {
  readonly #state: Uint32Array
  readonly #held: Uint32Array
  /** The eventual modes: a take may have the permits parked while waiters are queued. */
  readonly #barging: boolean

  /** `words` from `NativeSemaphore.fastWords()`; `barging` for the eventual fairness modes. */
  constructor(words: readonly [ArrayBuffer, ArrayBuffer], barging: boolean) {
    this.#state = new Uint32Array(words[0])
    this.#held = new Uint32Array(words[1])
    this.#barging = barging
  }

  /** Takes `weight` free permits with one CAS, or returns false (nothing changed): ask the native semaphore then. */
  take(weight: number): boolean {
    const state = this.#state
    const word = Atomics.load(state, 0)
    // In FIFO mode the count is 0 while QUEUED is set: the test is for the eventual ones' parked permits.
    if ((word & CLOSED) !== 0 || word >>> 2 < weight || ((word & QUEUED) !== 0 && !this.#barging)) return false
    if (Atomics.compareExchange(state, 0, word, word - weight * ONE_PERMIT) !== word) return false
    this.#held[0]! += weight
    return true
  }

  /**
   * Gives back `weight` permits this thread holds with one CAS, or returns
   * false (nothing changed): waiters may need them, so the native semaphore
   * must decide.
   */
  give(weight: number): boolean {
    const state = this.#state
    const held = this.#held
    const word = Atomics.load(state, 0)
    if ((word & QUEUED) !== 0 || word + weight * ONE_PERMIT > 0xffffffff || held[0]! < weight) return false
    held[0]! -= weight
    if (Atomics.compareExchange(state, 0, word, word + weight * ONE_PERMIT) === word) return true
    held[0]! += weight
    return false
  }
}
