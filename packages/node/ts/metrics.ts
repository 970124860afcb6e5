/**
 * Counters and a wait-time histogram shared by every thread that has a
 * primitive's handle: a `SharedArrayBuffer` that travels with the handle
 * (as a semaphore's doorbells do), updated with `Atomics.add` and read by
 * `metrics()`. Only this file knows its layout.
 *
 * Layout (Uint32 words): every count is a pair [low, high]; `Atomics.add`
 * on the low word returns the old value, and the rare call that carries
 * past 2^32 adds 1 to the high word, so the fast path costs one atomic add
 * and counts do not wrap after 4 billion operations. A reader may see a
 * count between the two adds (off by 2^32 for an instant): acceptable for
 * metrics.
 *
 * The histogram has fixed log-scale buckets of the wait in microseconds:
 * bucket 0 is under 1 µs, bucket k (1..32) is [2^(k-1), 2^k) µs, the last
 * one also everything longer (2^31 µs is 36 min). Only waits that queued are
 * timed and recorded; calls that got what they asked for at once count as
 * waits of 0, derived on read (`acquired` minus the recorded waits), so the
 * fast path never reads a clock.
 *
 * A semaphore's buffer also has one pair of plain (non-atomic) Float64
 * counters per doorbell slot, for the uncontended `acquired` and `refused`
 * counts: a slot belongs to one thread at a time, so its counters have one
 * writer, and a plain add spares the hot path the full barrier of
 * `Atomics.add` (measured 10-15% of an uncontended acquire). A reader sums
 * the slots; it may miss an add still in flight, never count one twice. A
 * slot freed by a thread that exited keeps its counts for the next owner
 * to add to.
 *
 * A named primitive's buffer is an external `ArrayBuffer` over a companion
 * shared-memory block (`<name>.m`, ts/named-metrics.ts), so the same words
 * count for every process: V8's `Atomics` on it are real atomics across
 * processes. A named semaphore's slots are the segment's owner slots,
 * unique machine-wide per thread. Bytes another process wrote are not
 * trusted: a slot that is not a finite count reads as 0, and is reset by
 * the thread that takes it.
 *
 * Named buckets and limiters have no native wait table, so their waiting
 * gauge lives in **process lanes** after the counters (`[tag u32, value
 * i32]` per process slot of the companion segment, crates/shm `words.rs`):
 * a reader sums the lanes of live processes only, so a process killed while
 * waiting stops counting as soon as it is dead.
 */

import { monotonicMs } from './clock.js'

/** Milliseconds, like `WorkerPool.metrics`. */
export interface Percentiles {
  mean: number
  p50: number
  p90: number
  p99: number
  max: number
}

/** What every primitive's `metrics()` has, counted across all threads that share it. */
export interface WaitMetrics {
  /** Calls that got what they asked for (permits, tokens), at once or after waiting. */
  acquired: number
  /** Calls turned away without waiting: a full queue, no permits or tokens for a `try` call, a rate limit. */
  refused: number
  /** Waits ended by their `timeout` (a take whose tokens would come too late included). */
  timedOut: number
  /** Waits ended by their `signal`. */
  aborted: number
  /** Waits queued now. */
  waiting: number
  /**
   * Milliseconds from the call to the grant, of every acquisition (those
   * granted at once count as 0). Percentiles are the upper bound of their
   * power-of-two bucket (at most 2x the true value), capped at `max`.
   */
  waitTime: Percentiles
}

const ACQUIRED = 0
const REFUSED = 2
const TIMED_OUT = 4
const ABORTED = 6
/** A gauge (one Int32-compatible word): waits queued now, for primitives whose native side does not count them. */
const WAITING = 8
/** Microseconds, summed over recorded waits (a pair). */
const WAIT_SUM = 10
/** Longest recorded wait, microseconds (one word, saturating). */
const WAIT_MAX = 12
const BUCKETS = 14
const BUCKET_COUNT = 33
const WORDS = BUCKETS + 2 * BUCKET_COUNT

/** Bytes of the shared counters; the per-slot counters (Float64, 8-aligned) follow. */
const SHARED_BYTES = WORDS * Uint32Array.BYTES_PER_ELEMENT
/** Per slot: uncontended acquired, refused. */
const PER_SLOT = 2

/** Per process lane: the generation tag, the waiting gauge (Int32). */
const PER_LANE = 2

/** @internal Byte offset of process lane `lane` in a buffer without per-thread slots. */
export function laneOffset(lane: number): number {
  return SHARED_BYTES + lane * PER_LANE * Int32Array.BYTES_PER_ELEMENT
}

/**
 * @internal Bytes of a metrics buffer with counters for `slots` threads
 * (what `from(handle)` checks), and `lanes` process lanes after them.
 */
export function metricsBytes(slots = 0, lanes = 0): number {
  return SHARED_BYTES + slots * PER_SLOT * Float64Array.BYTES_PER_ELEMENT + lanes * PER_LANE * Int32Array.BYTES_PER_ELEMENT
}

/** @internal Whether `buffer` can be the metrics buffer of a primitive with `slots` per-thread slots. */
export function isMetricsBuffer(buffer: unknown, slots = 0): buffer is SharedArrayBuffer {
  return buffer instanceof SharedArrayBuffer && buffer.byteLength === metricsBytes(slots)
}

/** Adds `n` (< 2^32) to the count at `i`, carrying into its high word. */
function add(words: Uint32Array, i: number, n: number): void {
  if (Atomics.add(words, i, n) + n > 0xffffffff) Atomics.add(words, i + 1, 1)
}

/** Adds `n` (1 unless given, < 2^32) to the count at `i` with a plain (non-atomic) add: only while no other thread can see `words`. */
function addPlain(words: Uint32Array, i: number, n = 1): void {
  // The sum is computed unwrapped; the array stores it wrapped.
  const sum = words[i]! + n
  words[i] = sum
  if (sum > 0xffffffff) words[i + 1]!++
}

function read(words: Uint32Array, i: number): number {
  return Atomics.load(words, i + 1) * 2 ** 32 + Atomics.load(words, i)
}

/** @internal One thread's view of a primitive's shared counters. */
export class SharedMetrics {
  readonly buffer: ArrayBufferLike
  readonly #words: Uint32Array
  /**
   * True until the buffer may reach another thread (`share`): until then
   * the uncontended counts are plain adds, which spare the hot path the full
   * barrier of `Atomics.add`.
   */
  #private: boolean

  /**
   * A new buffer stays private to this thread until `share`; a given one is
   * shared already, unless its maker says it is still its own (`isPrivate`).
   */
  constructor(buffer?: ArrayBufferLike, isPrivate = buffer === undefined) {
    this.#private = isPrivate
    this.buffer = buffer ?? new SharedArrayBuffer(SHARED_BYTES)
    this.#words = new Uint32Array(this.buffer, 0, WORDS)
  }

  /** The buffer is about to reach other threads (its primitive's `handle` was read). */
  share(): void {
    this.#private = false
  }

  /** Granted at once: the whole cost of the uncontended path. */
  acquired(): void {
    if (this.#private) addPlain(this.#words, ACQUIRED)
    else add(this.#words, ACQUIRED, 1)
  }

  refused(): void {
    if (this.#private) addPlain(this.#words, REFUSED)
    else add(this.#words, REFUSED, 1)
  }

  /** A wait queued at `queuedAt` (`monotonicMs()`) was granted now. */
  granted(queuedAt: number): void {
    const words = this.#words
    const micros = Math.min(Math.floor((monotonicMs() - queuedAt) * 1000), 0xffffffff)
    if (this.#private) {
      // Every queued wait of a semaphore still kept in JavaScript ends here:
      // plain adds spare it four full barriers (~12 ns each).
      addPlain(words, ACQUIRED)
      addPlain(words, BUCKETS + 2 * bucketOf(micros))
      addPlain(words, WAIT_SUM, micros)
      if (micros > words[WAIT_MAX]!) words[WAIT_MAX] = micros
      return
    }
    add(words, ACQUIRED, 1)
    add(words, BUCKETS + 2 * bucketOf(micros), 1)
    add(words, WAIT_SUM, micros)
    for (let max = Atomics.load(words, WAIT_MAX); micros > max; ) {
      const seen = Atomics.compareExchange(words, WAIT_MAX, max, micros)
      if (seen === max) break
      max = seen
    }
  }

  /** A queued wait was cancelled: by its timeout, or by its signal (or a compat adapter). */
  cancelled(timedOut: boolean): void {
    if (this.#private) addPlain(this.#words, timedOut ? TIMED_OUT : ABORTED)
    else add(this.#words, timedOut ? TIMED_OUT : ABORTED, 1)
  }

  /** A take refused at once because its tokens would come after its timeout. */
  timedOut(): void {
    add(this.#words, TIMED_OUT, 1)
  }

  /** The waiting gauge, for primitives that keep it here (`+1` queued, `-1` ended). */
  queued(delta: 1 | -1): void {
    Atomics.add(this.#words, WAITING, delta)
  }

  /** Uncontended counts kept elsewhere (per slot): [acquired, refused]. */
  protected uncontended(): [number, number] {
    return [0, 0]
  }

  /** The waiting gauge, when native code does not count it. */
  protected waitingNow(): number {
    return Atomics.load(this.#words, WAITING) | 0
  }

  /** The snapshot; `waiting` from the caller when native code counts it. */
  read(waiting: number = this.waitingNow()): WaitMetrics {
    const words = this.#words
    const [uncontendedAcquired, uncontendedRefused] = this.uncontended()
    const acquired = read(words, ACQUIRED) + uncontendedAcquired
    const counts: number[] = []
    let recorded = 0
    for (let k = 0; k < BUCKET_COUNT; k++) {
      const count = read(words, BUCKETS + 2 * k)
      counts.push(count)
      recorded += count
    }
    // Grants made at once were never timed: they are waits of 0 (bucket 0).
    counts[0]! += Math.max(0, acquired - recorded)
    const total = Math.max(acquired, recorded)
    const max = Atomics.load(words, WAIT_MAX) / 1000
    const percentile = (p: number): number => {
      if (total === 0) return 0
      const rank = Math.ceil(p * total)
      let seen = 0
      for (let k = 0; k < BUCKET_COUNT; k++) {
        seen += counts[k]!
        if (seen >= rank) return k === 0 ? 0 : Math.min(2 ** k / 1000, max)
      }
      return max
    }
    return {
      acquired,
      refused: read(words, REFUSED) + uncontendedRefused,
      timedOut: read(words, TIMED_OUT),
      aborted: read(words, ABORTED),
      waiting: Math.max(0, waiting),
      waitTime: {
        mean: total === 0 ? 0 : read(words, WAIT_SUM) / total / 1000,
        p50: percentile(0.5),
        p90: percentile(0.9),
        p99: percentile(0.99),
        max,
      },
    }
  }
}

/** The bucket of a wait of `micros` µs: 0 under 1 µs, else 1 + floor(log2), at most 32. */
function bucketOf(micros: number): number {
  return micros < 1 ? 0 : Math.min(32, 32 - Math.clz32(micros))
}

/**
 * @internal A semaphore's metrics: the uncontended counts go to this
 * thread's slot, with plain adds (see the module comment).
 */
export class SlottedMetrics extends SharedMetrics {
  readonly #slots: Float64Array
  readonly #mine: number

  /**
   * A buffer for `slots` threads (`metricsBytes(slots)`), seen from the
   * thread in `slot`, which is its slot's one writer from now on: a value
   * that is not a count (damaged bytes) is reset, or `++` would keep it.
   * `isPrivate`: no other thread can reach `buffer` yet (a semaphore kept
   * in JavaScript); `moveTo` gives a view that is not.
   */
  constructor(buffer: ArrayBufferLike, slots: number, slot: number, isPrivate = false) {
    super(buffer, isPrivate)
    this.#slots = new Float64Array(buffer, SHARED_BYTES, slots * PER_SLOT)
    this.#mine = slot * PER_SLOT
    for (const i of [this.#mine, this.#mine + 1]) {
      if (count(this.#slots[i]!) !== this.#slots[i]) this.#slots[i] = 0
    }
  }

  override acquired(): void {
    this.#slots[this.#mine]!++
  }

  /** `n` uncontended grants at once (counted elsewhere first: `Semaphore`'s `#acquiredHere`). */
  acquiredMany(n: number): void {
    this.#slots[this.#mine]! += n
  }

  override refused(): void {
    this.#slots[this.#mine + 1]!++
  }

  /**
   * This thread's view once it moves to `slot` (a semaphore kept in
   * JavaScript counts in slot 0 until it moves to native memory): its
   * uncontended counts go along, so the slot it leaves is clean for the
   * thread that gets it next. Only before the buffer reaches another thread.
   */
  moveTo(slot: number): SlottedMetrics {
    const moved = new SlottedMetrics(this.buffer, this.#slots.length / PER_SLOT, slot)
    if (slot * PER_SLOT === this.#mine) return moved
    const slots = this.#slots
    slots[slot * PER_SLOT] = slots[slot * PER_SLOT]! + slots[this.#mine]!
    slots[slot * PER_SLOT + 1] = slots[slot * PER_SLOT + 1]! + slots[this.#mine + 1]!
    slots[this.#mine] = slots[this.#mine + 1] = 0
    return moved
  }

  protected override uncontended(): [number, number] {
    const slots = this.#slots
    let acquired = 0
    let refused = 0
    for (let i = 0; i < slots.length; i += PER_SLOT) {
      acquired += count(slots[i]!)
      refused += count(slots[i + 1]!)
    }
    return [acquired, refused]
  }
}

/** A slot's value as a count: NaN, negative, fractional or beyond 2^53 (damaged bytes) read as 0. */
function count(value: number): number {
  return Number.isSafeInteger(value) && value >= 0 ? value : 0
}

/**
 * @internal A named bucket's or limiter's metrics: the atomic counters only
 * (no index is unique per thread across processes), and the waiting gauge
 * in this process's lane (see the module comment).
 */
export class LanedMetrics extends SharedMetrics {
  readonly #lanes: Int32Array
  /** Index of this process's gauge in `#lanes`. */
  readonly #mine: number
  readonly #live: () => number[]

  /**
   * A buffer of `metricsBytes(0, lanes)`, seen from the process in lane
   * `lane` (already claimed: its tag is this process's); `live` answers the
   * live lanes as `[lane, tag, …]`.
   */
  constructor(buffer: ArrayBufferLike, lanes: number, lane: number, live: () => number[]) {
    super(buffer)
    this.#lanes = new Int32Array(buffer, SHARED_BYTES, lanes * PER_LANE)
    this.#mine = lane * PER_LANE + 1
    this.#live = live
  }

  override queued(delta: 1 | -1): void {
    Atomics.add(this.#lanes, this.#mine, delta)
  }

  protected override waitingNow(): number {
    const lanes = this.#lanes
    const live = this.#live()
    let waiting = 0
    for (let i = 0; i + 1 < live.length; i += 2) {
      const at = live[i]! * PER_LANE
      // A lane of a dead process, or one not yet claimed by its new process, has another tag.
      if (at + 1 >= lanes.length || Atomics.load(lanes, at) >>> 0 !== live[i + 1]) continue
      waiting += Math.max(0, Atomics.load(lanes, at + 1))
    }
    return waiting
  }
}
