// The circuit breaker's state machine over shared memory: every thread that
// holds the breaker's `SharedArrayBuffer` reads and moves the same state, and
// every process that maps a named breaker's segment (`CircuitBreaker.open`:
// the same words, as an external `ArrayBuffer`; `Atomics` on it are the same
// atomic instructions).
//
// Every transition is one `Atomics.compareExchange` of the 64-bit status word,
// which packs the state, a generation and a deadline, so exactly one thread
// performs each transition (it alone emits the event) and a thread that dies
// mid-transition cannot leave half of one behind:
//
//   bits 0-1   state: CLOSED, OPEN or HALF_OPEN
//   bits 2-21  generation, +1 (wrapping) on every transition
//   bits 22-62 deadline, ms since the breaker's origin: when OPEN ends, or
//              when HALF_OPEN's unreported trials count as failed (41 bits:
//              69 years)
//
// A call captures the low 22 bits (its "phase": state and generation) when it
// starts and reports against them: a result from an earlier generation (a
// call begun before the circuit opened, a trial that outlived its half-open
// period) is ignored. No transition runs on a timer: the first call after a
// deadline performs it, so a breaker keeps no timer and no thread alive.
//
// The Int32 words after the status word:
// - CONSECUTIVE: failures in a row while CLOSED.
// - TRIALS_STARTED, TRIALS_SUCCEEDED: HALF_OPEN's trial counts, each tagged
//   with its generation (tag << 16 | count), so a new half-open period starts
//   from zero without a reset that a slow thread could race.
// - REOPENS: reopenings since the last close, for the open duration's backoff.
// - then `buckets` x [epoch, calls, failures] (failure-rate mode): the bucket
//   of epoch e = floor(time / (window / buckets)) is e % buckets; the first
//   thread to find it holding an older epoch claims it with a compareExchange
//   of its epoch and subtracts the counts it read before, so adds made by
//   other threads in the meantime are kept (no lock, nothing to wedge).
//
// The hot path (a closed breaker's `admit` and `report`) reads only the phase,
// with a 32-bit `Atomics.load` of the status word's low half: no BigInt. A
// 64-bit compareExchange and an aligned 32-bit load of half of it are each
// single-copy atomic on the platforms Node runs on (x64, arm64), so that load
// returns the low half of one status word, never a mix of two.
//
// Time is ms since the breaker's origin on CLOCK_MONOTONIC (`monotonicMs()`),
// the one clock every thread and every process of the machine reads alike:
// a named breaker's origin is the segment's, written by its creator.
//
// A named breaker's words are bytes any process (or a stray write) could
// have damaged, so no value in them may wedge the breaker or throw: a state
// of 3 is reset to CLOSED, a deadline further off than any transition could
// have set counts as passed, a negative failure count as one failure, a
// negative reopening count as none, a window slice stamped over a window
// ahead as stale, and negative slice counts as zero.
import { endianness } from 'node:os'
import type { BreakerConfig } from './circuit-breaker-options.js'
import { monotonicMs } from './clock.js'

export const CLOSED = 0
export const OPEN = 1
export const HALF_OPEN = 2

/** `admit` turned the call away: the circuit is open. */
export const BROKEN_OPEN = -1
/** `admit` turned the call away: half-open, every trial under way. */
export const BROKEN_TRIALS = -2

export type Transition =
  | { readonly to: 'open'; readonly reason: OpenReason; readonly openDuration: number }
  | { readonly to: 'halfOpen' }
  | { readonly to: 'close' }

/** Why a circuit opened. */
export type OpenReason = 'failures' | 'failure-rate' | 'trial-failed' | 'trial-timed-out'

const PHASE_BITS = 22n
const PHASE_MASK = (1n << PHASE_BITS) - 1n
const GEN_MASK = (1 << 20) - 1

/** Int32 index of the status word's low half (state, generation, deadline's low bits). */
const STATUS_LOW = endianness() === 'LE' ? 0 : 1
const PHASE_MASK_32 = (1 << 22) - 1
const CONSECUTIVE = 2 // Int32 index; 0-1 are the 64-bit status word
const TRIALS_STARTED = 3
const TRIALS_SUCCEEDED = 4
const REOPENS = 5
const BUCKETS = 8
const BUCKET_WORDS = 3

/** Bounds every compare-exchange loop: each failed exchange means another thread moved on. */
const MAX_TRIES = 64
/**
 * Slack on the deadline check: a deadline this much beyond the furthest any
 * transition sets (now + maxOpenDuration, now + trialTimeout) is damage. It
 * covers the ceil() of the stored deadline and the clock calibration
 * between processes (µs), with room to spare.
 */
const DEADLINE_SLACK = 1000

export function bufferBytes(buckets: number): number {
  return (BUCKETS + BUCKET_WORDS * buckets) * Int32Array.BYTES_PER_ELEMENT
}

export class BreakerState {
  readonly #status: BigInt64Array
  readonly #words: Int32Array
  readonly #config: BreakerConfig
  readonly #origin: number
  readonly #bucketMs: number
  readonly #onTransition: (transition: Transition) => void

  /**
   * @param buffer the words: a `SharedArrayBuffer` between threads, or an
   *   external `ArrayBuffer` over a named breaker's segment
   * @param origin the breaker's time origin, `monotonicMs()` when it was created
   */
  constructor(buffer: ArrayBufferLike, config: BreakerConfig, origin: number, onTransition: (transition: Transition) => void) {
    this.#status = new BigInt64Array(buffer, 0, 1)
    this.#words = new Int32Array(buffer)
    this.#config = config
    this.#origin = origin
    this.#bucketMs = config.window / config.buckets
    this.#onTransition = onTransition
  }

  /** A fresh buffer: closed, generation 0, an empty window. */
  static create(config: BreakerConfig): { buffer: SharedArrayBuffer; origin: number } {
    // Zeroed words are a fresh breaker (as a named breaker's segment starts):
    // the buckets' epoch 0 is the first slice, with no calls in it.
    return { buffer: new SharedArrayBuffer(bufferBytes(config.buckets)), origin: monotonicMs() }
  }

  /** The current state (an OPEN past its deadline stays OPEN until a call moves it). */
  get state(): number {
    const state = this.#phase() & 3
    // Damaged (3): the next call resets it to CLOSED.
    return state === 3 ? CLOSED : state
  }

  /** The status word's phase (state and generation), read without a BigInt. */
  #phase(): number {
    return Atomics.load(this.#words, STATUS_LOW) & PHASE_MASK_32
  }

  /**
   * Whether a call may run now: its phase (>= 0) to report with, or
   * BROKEN_OPEN / BROKEN_TRIALS. Performs OPEN -> HALF_OPEN once the open
   * duration is over, and HALF_OPEN -> OPEN once unreported trials time out.
   */
  admit(): number {
    const fast = this.#phase()
    if ((fast & 3) === CLOSED) return fast
    const config = this.#config
    for (let i = 0; i < MAX_TRIES; i++) {
      const word = Atomics.load(this.#status, 0)
      const phase = Number(word & PHASE_MASK)
      const state = phase & 3
      if (state === CLOSED) return phase
      if (state === 3) {
        this.#reset(word, false)
        continue
      }
      const now = this.#now()
      let deadline = Number(word >> PHASE_BITS)
      // Further off than any transition sets it: damage, count it as passed.
      if (deadline > now + (state === OPEN ? config.maxOpenDuration : config.trialTimeout) + DEADLINE_SLACK) deadline = now
      if (state === OPEN) {
        if (now < deadline) return BROKEN_OPEN
        if (this.#transition(word, HALF_OPEN, now + config.trialTimeout)) this.#onTransition({ to: 'halfOpen' })
        continue
      }
      const gen = phase >>> 2
      if (this.#takeTrial(gen)) {
        // The slot counts against generation `gen`; if that half-open period
        // ended meanwhile, running the call would be a trial nobody reads.
        if (this.#phase() === phase) return phase
        continue
      }
      if (now < deadline) return BROKEN_TRIALS
      // Trials went unreported past their deadline: count them as failed.
      this.#open(word, 'trial-timed-out')
    }
    return BROKEN_OPEN
  }

  /** Reports how a call admitted with `phase` ended. */
  report(phase: number, failed: boolean): void {
    if ((phase & 3) === HALF_OPEN) {
      const word = Atomics.load(this.#status, 0)
      if (Number(word & PHASE_MASK) !== phase) return
      if (failed) {
        this.#open(word, 'trial-failed')
      } else if (this.#addTagged(TRIALS_SUCCEEDED, phase >>> 2, Infinity) === this.#config.halfOpenTrials) {
        // Exactly one thread sees the count reach the budget: it closes.
        this.#close(word)
      }
      return
    }
    if (this.#phase() !== phase) return
    if (this.#config.mode === 'consecutive') {
      if (!failed) {
        // Read first: a success storm need not write the shared line.
        if (Atomics.load(this.#words, CONSECUTIVE) !== 0) Atomics.store(this.#words, CONSECUTIVE, 0)
      } else {
        const count = Atomics.add(this.#words, CONSECUTIVE, 1) + 1
        // Below 1 only if damaged: count this failure as the first.
        if (count < 1) Atomics.compareExchange(this.#words, CONSECUTIVE, count, 1)
        if (count >= this.#config.consecutiveFailures) this.#openFrom(phase, 'failures')
      }
      return
    }
    const epoch = epochAt(this.#now(), this.#bucketMs)
    this.#record(epoch, failed)
    if (failed && this.#rateExceeded(epoch)) this.#openFrom(phase, 'failure-rate')
  }

  #now(): number {
    return monotonicMs() - this.#origin
  }

  /** Compare-exchanges `word` for the next generation in `state`; true if this thread did it. */
  #transition(word: bigint, state: number, deadline: number): boolean {
    const gen = (Number((word & PHASE_MASK) >> 2n) + 1) & GEN_MASK
    const next = (BigInt(Math.max(0, Math.ceil(deadline))) << PHASE_BITS) | BigInt((gen << 2) | state)
    return Atomics.compareExchange(this.#status, 0, word, next) === word
  }

  #openFrom(phase: number, reason: OpenReason): void {
    const word = Atomics.load(this.#status, 0)
    if (Number(word & PHASE_MASK) === phase) this.#open(word, reason)
  }

  /** CLOSED or HALF_OPEN `word` -> OPEN, the open duration doubling with each reopening. */
  #open(word: bigint, reason: OpenReason): void {
    const { openDuration, maxOpenDuration } = this.#config
    const reopening = Number(word & 3n) === HALF_OPEN
    const reopens = reopening ? Math.max(0, Atomics.load(this.#words, REOPENS)) + 1 : 0
    const duration = Math.min(maxOpenDuration, openDuration * 2 ** Math.min(reopens, 31))
    if (!this.#transition(word, OPEN, this.#now() + duration)) return
    Atomics.store(this.#words, REOPENS, reopens)
    this.#onTransition({ to: 'open', reason, openDuration: duration })
  }

  /** HALF_OPEN `word` -> CLOSED with fresh counts. */
  #close(word: bigint): void {
    this.#reset(word, true)
  }

  /**
   * `word` -> CLOSED with fresh counts: the close of a half-open period
   * (`emit`), or the repair of a damaged state (no event: nothing opened).
   */
  #reset(word: bigint, emit: boolean): void {
    // Reset before the exchange: no call records while half-open, and once
    // closed, calls would record into the old counts.
    Atomics.store(this.#words, CONSECUTIVE, 0)
    const stale = (epochAt(this.#now(), this.#bucketMs) - this.#config.buckets) | 0
    for (let i = 0; i < this.#config.buckets; i++) {
      const at = BUCKETS + i * BUCKET_WORDS
      Atomics.store(this.#words, at, stale)
      Atomics.store(this.#words, at + 1, 0)
      Atomics.store(this.#words, at + 2, 0)
    }
    if (!this.#transition(word, CLOSED, 0)) return
    Atomics.store(this.#words, REOPENS, 0)
    if (emit) this.#onTransition({ to: 'close' })
  }

  /** Takes one of generation `gen`'s trial slots if any is left. */
  #takeTrial(gen: number): boolean {
    return this.#addTagged(TRIALS_STARTED, gen, this.#config.halfOpenTrials) > 0
  }

  /**
   * Adds 1 to the counter at `index` for generation `gen` (a counter tagged
   * with another generation counts as 0) unless it is at `limit`: the new
   * count, or 0 if at the limit.
   */
  #addTagged(index: number, gen: number, limit: number): number {
    const tag = gen & 0xffff
    for (let i = 0; i < MAX_TRIES; i++) {
      const word = Atomics.load(this.#words, index)
      const count = word >>> 16 === tag ? word & 0xffff : 0
      if (count >= limit || count === 0xffff) return 0
      if (Atomics.compareExchange(this.#words, index, word, (tag << 16) | (count + 1)) === word) return count + 1
    }
    return 0
  }

  /** Counts one ended call in the bucket of `epoch`. */
  #record(epoch: number, failed: boolean): void {
    const at = BUCKETS + mod(epoch, this.#config.buckets) * BUCKET_WORDS
    const words = this.#words
    for (let i = 0; i < MAX_TRIES; i++) {
      const stamp = Atomics.load(words, at)
      const age = (epoch - stamp) | 0
      if (age === 0) {
        Atomics.add(words, at + 1, 1)
        if (failed) Atomics.add(words, at + 2, 1)
        return
      }
      // Claimed for a later slice already (this thread read its clock a
      // window ago): the sample is out of date, and claiming back would wipe
      // it. A stamp a whole window ahead was never claimed by a clock: damage.
      if (age < 0 && age > -this.#config.buckets) return
      const calls = Atomics.load(words, at + 1)
      const failures = Atomics.load(words, at + 2)
      if (Atomics.compareExchange(words, at, stamp, epoch) === stamp) {
        Atomics.sub(words, at + 1, calls)
        Atomics.sub(words, at + 2, failures)
      }
    }
  }

  /** Whether the window ending at `epoch` holds enough calls, failing at the configured rate. */
  #rateExceeded(epoch: number): boolean {
    const { buckets, minimumCalls, failureRate } = this.#config
    const words = this.#words
    let calls = 0
    let failures = 0
    for (let i = 0; i < buckets; i++) {
      const at = BUCKETS + i * BUCKET_WORDS
      const age = (epoch - Atomics.load(words, at)) | 0
      if (age >= buckets || age <= -buckets) continue
      // Negative only if damaged; the slice ages out within a window.
      calls += Math.max(0, Atomics.load(words, at + 1))
      failures += Math.max(0, Atomics.load(words, at + 2))
    }
    return calls >= minimumCalls && failures >= failureRate * calls
  }
}

/** The window slice `time` falls in, wrapped to 32 bits (compared by wrapping differences). */
function epochAt(time: number, bucketMs: number): number {
  return Math.floor(time / bucketMs) | 0
}

function mod(n: number, m: number): number {
  return ((n % m) + m) % m
}
