// The circuit breaker's state machine over shared memory: every thread that
// holds the breaker's `SharedArrayBuffer` reads and moves the same state.
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
import { endianness } from 'node:os'
import type { BreakerConfig } from './circuit-breaker-options.js'

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

export function bufferBytes(buckets: number): number {
  return (BUCKETS + BUCKET_WORDS * buckets) * Int32Array.BYTES_PER_ELEMENT
}

/** Milliseconds on a clock every thread of the process shares. */
function wallNow(): number {
  return performance.timeOrigin + performance.now()
}

export class BreakerState {
  readonly #status: BigInt64Array
  readonly #words: Int32Array
  readonly #config: BreakerConfig
  readonly #origin: number
  readonly #bucketMs: number
  readonly #onTransition: (transition: Transition) => void

  /** @param origin the breaker's time origin, `wallNow()` when it was created */
  constructor(buffer: SharedArrayBuffer, config: BreakerConfig, origin: number, onTransition: (transition: Transition) => void) {
    this.#status = new BigInt64Array(buffer, 0, 1)
    this.#words = new Int32Array(buffer)
    this.#config = config
    this.#origin = origin
    this.#bucketMs = config.window / config.buckets
    this.#onTransition = onTransition
  }

  /** A fresh buffer: closed, generation 0, an empty window. */
  static create(config: BreakerConfig): { buffer: SharedArrayBuffer; origin: number } {
    const buffer = new SharedArrayBuffer(bufferBytes(config.buckets))
    const origin = wallNow()
    const words = new Int32Array(buffer)
    // Epoch 0 could be the current one modulo 2^32: mark every bucket stale.
    const stale = (epochAt(origin, config.window / config.buckets) - config.buckets) | 0
    for (let i = 0; i < config.buckets; i++) words[BUCKETS + i * BUCKET_WORDS] = stale
    return { buffer, origin }
  }

  /** The current state (an OPEN past its deadline stays OPEN until a call moves it). */
  get state(): number {
    return this.#phase() & 3
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
      const now = this.#now()
      const deadline = Number(word >> PHASE_BITS)
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
      } else if (Atomics.add(this.#words, CONSECUTIVE, 1) + 1 >= this.#config.consecutiveFailures) {
        this.#openFrom(phase, 'failures')
      }
      return
    }
    const epoch = epochAt(wallNow(), this.#bucketMs)
    this.#record(epoch, failed)
    if (failed && this.#rateExceeded(epoch)) this.#openFrom(phase, 'failure-rate')
  }

  #now(): number {
    return wallNow() - this.#origin
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
    const reopens = reopening ? Atomics.load(this.#words, REOPENS) + 1 : 0
    const duration = Math.min(maxOpenDuration, openDuration * 2 ** Math.min(reopens, 31))
    if (!this.#transition(word, OPEN, this.#now() + duration)) return
    Atomics.store(this.#words, REOPENS, reopens)
    this.#onTransition({ to: 'open', reason, openDuration: duration })
  }

  /** HALF_OPEN `word` -> CLOSED with fresh counts. */
  #close(word: bigint): void {
    // Reset before the exchange: no call records while half-open, and once
    // closed, calls would record into the old counts.
    Atomics.store(this.#words, CONSECUTIVE, 0)
    const stale = (epochAt(wallNow(), this.#bucketMs) - this.#config.buckets) | 0
    for (let i = 0; i < this.#config.buckets; i++) {
      const at = BUCKETS + i * BUCKET_WORDS
      Atomics.store(this.#words, at, stale)
      Atomics.store(this.#words, at + 1, 0)
      Atomics.store(this.#words, at + 2, 0)
    }
    if (!this.#transition(word, CLOSED, 0)) return
    Atomics.store(this.#words, REOPENS, 0)
    this.#onTransition({ to: 'close' })
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
      // window ago): the sample is out of date, and claiming back would wipe it.
      if (age < 0) return
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
      calls += Atomics.load(words, at + 1)
      failures += Atomics.load(words, at + 2)
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
