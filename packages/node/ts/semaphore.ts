import { onCancellation } from './abort.js'
import { keepAliveInFlight } from './in-flight.js'
import { monotonicMs } from './clock.js'
import * as diagnostics from './diagnostics.js'
import { Doorbell, nextToken, type Wait } from './doorbell.js'
import { Errors, type ClosedError } from './errors.js'
import type { FifoBell } from './fifo-bell.js'
import { LocalSemaphore, type LocalWait } from './local-semaphore.js'
import {
  attachById,
  CLOSED,
  DONE,
  DOORBELL_SLOTS,
  NativeSemaphore,
  QUEUED,
  TOO_HEAVY,
  semAcquire,
  semRelease,
  semServe,
  semTakeGranted,
  semTryAcquire,
  semValue,
  semClosed,
  type FastHandle,
  type Outcome,
} from './native.js'
import { FastWords } from './fast-semaphore.js'
import { isMetricsBuffer, metricsBytes, SlottedMetrics, type SharedMetrics, type WaitMetrics } from './metrics.js'
import { openSemaphore, unlinkSemaphore, type NamedSemaphoreHandle, type OpenSemaphoreOptions } from './named.js'
import { openInStore, type Store } from './open.js'
import * as symbols from './symbols.js'
import { show, validateFairness, validateInteger, validateOptions, type Fairness } from './validate.js'
import { validateWaitOptions, type Cancel, type Queue } from './wait.js'

// Module-level copies for the hot paths. The CommonJS output reads a named
// import as a property of the other module's exports object at each use, a
// load V8 does not fold into a constant (the exports are written twice:
// `void 0` first); a copy in a module-level const is one. Measured on sync
// `tryAcquire().release()`: 5.5 -> 4.1 ns.
const { semaphoreAcquire, semaphoreClose, semaphoreRefused, semaphoreRelease, traceWait } = diagnostics
const kAttach: typeof symbols.kAttach = symbols.kAttach
const kForget: typeof symbols.kForget = symbols.kForget
const kInternals: typeof symbols.kInternals = symbols.kInternals
const kLocal: typeof symbols.kLocal = symbols.kLocal
const kOpenSemaphore: typeof symbols.kOpenSemaphore = symbols.kOpenSemaphore
const kRelease: typeof symbols.kRelease = symbols.kRelease

export type { Cancel } from './wait.js'

/** Most permits a semaphore can have (JS-side limit, far below the core's). */
export const MAX_PERMITS = 2 ** 31 - 1

export interface SemaphoreOptions {
  /**
   * Most waits that may be queued at once, across all threads; an `acquire`
   * beyond it rejects with a `QueueFullError` instead of waiting. Unbounded
   * by default.
   */
  maxWaiters?: number
  /**
   * How waiters of other threads are served against callers that arrive
   * later. `'fifo'` (the default): a release hands its permits to the
   * longest waiter, and nobody barges past a queued one. `'eventual'`
   * (parking_lot's eventual fairness): while the first waiter has waited
   * less than 0.5 ms, a release leaves its permits free for whoever asks
   * first, often the releasing thread itself, and wakes that waiter to try
   * again; once it has waited 0.5 ms, the next release hands off to it as in
   * `'fifo'`. No waiter then waits more than 0.5 ms plus one hold time plus
   * one wake-up beyond its FIFO turn, and a contended semaphore shared by
   * threads goes much faster (no wake-up between holders). Priorities order
   * the queue as in `'fifo'`. The mode travels in the `handle`. While the
   * semaphore is kept by one thread (before its `handle` is read) it is
   * served FIFO, which eventual fairness allows. `'eventual-head'`: as
   * `'eventual'`, but the 0.5 ms counts from the first release that finds
   * the waiter first in line, so each waiter in turn may be passed over for
   * 0.5 ms (the k-th in line about k times that beyond its FIFO turn):
   * fewer hand-offs to a sleeping thread, the most throughput under steady
   * contention (see `Fairness`).
   */
  fairness?: Fairness
}

export interface AcquireOptions {
  /** Permits to take at once (default 1, at most the capacity). */
  weight?: number
  /** Aborting it withdraws the wait; the promise rejects with `signal.reason`. */
  signal?: AbortSignal
  /** Milliseconds to wait before rejecting with a `TimeoutError`. */
  timeout?: number
  /**
   * Waits are served higher priority first, first come first served within
   * a priority (default 0; an integer in the 32-bit range). A wait that would
   * stand first in the queue takes the permits set aside for the waiter it
   * overtakes, so it may be granted at once.
   */
  priority?: number
}

/**
 * A plain, cloneable description of a semaphore, to pass to another thread
 * through `postMessage` or `workerData`; `Semaphore.from(handle)` there gives
 * the same semaphore. Reading `handle` keeps the semaphore alive for at
 * least 30 s (IN_FLIGHT_MS); beyond that, some thread must hold a `Semaphore`
 * for it while its handle is in flight.
 */
export type SemaphoreHandle = LocalSemaphoreHandle | NamedSemaphoreHandle

/** The handle of a semaphore made with `new Semaphore` (threads of one process). */
export interface LocalSemaphoreHandle {
  readonly kind: 'sluice:Semaphore'
  readonly id: number
  readonly doorbells: SharedArrayBuffer
  /**
   * The counters of `metrics()`, shared by every thread (always in a handle
   * sluice made; without it, `from` counts for its own thread alone).
   */
  readonly metrics?: SharedArrayBuffer
  /** The semaphore's `fairness` (optional in a handle made by hand; the semaphore's own mode wins). */
  readonly fairness?: Fairness
}

/** `Semaphore.metrics()`: counts across every thread that shares the semaphore. */
export interface SemaphoreMetrics extends WaitMetrics {
  /** Permits in existence now. */
  capacity: number
  /** Permits held now (by `Permit`s and running `run` calls). */
  inUse: number
}

/**
 * `Permit`'s base class, empty, for speed alone. `acquire` resolves a promise
 * with a new permit, and TurboFan resolves a promise with a new instance of a
 * derived class without looking up its `then`; with an instance of a base
 * class it looks it up, ~15-25 ns of a ~60 ns `await acquire()` + `release()`
 * (measured on Node 20 and 24; `RunWait` gets this from its own hierarchy).
 */
class FastResolved {}

/**
 * Permits taken from a semaphore. Release it once, explicitly or with
 * `using permit = ...`; releasing again does nothing.
 */
export class Permit extends FastResolved implements Disposable {
  readonly weight: number
  #semaphore: Semaphore | undefined

  /** @internal made by `Semaphore` only */
  constructor(semaphore: Semaphore, weight: number) {
    super()
    this.#semaphore = semaphore
    this.weight = weight
  }

  /** Whether `release` has run. */
  get released(): boolean {
    return this.#semaphore === undefined
  }

  /** Aborts if the permit is lost while held: never, in process (a store's lease can be). */
  get signal(): AbortSignal {
    return neverAborted
  }

  /** Gives the permits back. A second call is a no-op, never a new permit. */
  release(): void {
    const semaphore = this.#semaphore
    if (semaphore === undefined) return
    this.#semaphore = undefined
    semaphore[kRelease](this.weight)
  }

  /**
   * Gives the permits up for good instead of releasing them: the semaphore's
   * capacity shrinks by `weight` (as tokio's `SemaphorePermit::forget`).
   */
  forget(): void {
    const semaphore = this.#semaphore
    if (semaphore === undefined) return
    this.#semaphore = undefined
    semaphore[kForget](this.weight)
  }

  [Symbol.dispose](): void {
    this.release()
  }
}

/**
 * What `Semaphore` uses of its native object: a `NativeSemaphore` (threads
 * of one process) or a `NativeNamedSemaphore` (every process of the machine),
 * whose raw hot calls are the same functions.
 */
export type SemaphoreNative = Pick<
  NativeSemaphore,
  | 'fastHandle'
  | 'capacity'
  | 'available'
  | 'waiting'
  | 'closed'
  | 'slot'
  | 'cancel'
  | 'addPermits'
  | 'forgetPermits'
  | 'forgetHeld'
  | 'close'
>

const neverAborted = new AbortController().signal

/** A native semaphore attached to this thread, for the constructor to adopt. */
interface Attached {
  native: SemaphoreNative
  /** A process-local semaphore's doorbells, or this thread's FIFO for a named one. */
  bells: SharedArrayBuffer | FifoBell
  /** The shared counters: a handle's buffer, or a named semaphore's view of its companion block. */
  metrics?: SharedArrayBuffer | SlottedMetrics
  /** Only for a named semaphore: what `handle` returns. */
  named?: NamedSemaphoreHandle
  /** Only for a named semaphore: reaps dead processes' waits (throttled), before `metrics()` reads `waiting`. */
  sweep?: () => unknown
}

function newDoorbells(): SharedArrayBuffer {
  return new SharedArrayBuffer(DOORBELL_SLOTS * Int32Array.BYTES_PER_ELEMENT)
}

/** Counters shared by every thread, and a pair per doorbell slot (see `SlottedMetrics`). */
function newMetrics(): SharedArrayBuffer {
  return new SharedArrayBuffer(metricsBytes(DOORBELL_SLOTS))
}

/**
 * The doorbell slot whose metrics counters a semaphore kept in JavaScript
 * uses: it has no native slot yet. Its counts move to the thread's native
 * slot when the semaphore moves (`SlottedMetrics.moveTo`).
 */
const LOCAL_SLOT = 0

/** A semaphore's counters as this thread sees them now (set by `Semaphore`'s static block). */
let metricsOf: (semaphore: Semaphore) => SlottedMetrics
/** `semaphore.#endWait(wait)`, for the waits of this file (set there too). */
let endWait: (semaphore: Semaphore, wait: { queuedAt: number }) => number
/** A semaphore's `RunEnds` for runs of one permit (made on first use; set by `Semaphore`'s static block). */
let runEndsOf: (semaphore: Semaphore) => RunEnds
/** `internal.run`, without the `[kInternals]` getter and closure on every call (set there too). */
let runHooked: <T>(semaphore: Semaphore, fn: () => T | PromiseLike<T>, hooks: RunHooks) => Promise<Awaited<T>>

/**
 * A counting semaphore shared by every thread that has its handle. Waiters
 * are served first come, first served across all threads; a waiter needing
 * many permits is not overtaken by smaller requests that arrive after it.
 *
 * Until its `handle` is first read, no other thread can reach the semaphore,
 * so its state (counts and queue) lives in JavaScript (`LocalSemaphore`) and
 * no call crosses into native code. Reading `handle` moves the state, the
 * permits this thread holds and its queued waits, in order and under their
 * tokens, into a native semaphore, synchronously; from then on every call goes
 * there, and the waits moved carry on: the doorbell delivers their grants.
 * A named semaphore (`Semaphore.open`) and one made from a handle are native
 * from the start.
 */
export class Semaphore {
  /** Set while the semaphore is this thread's alone; then the native fields are unset. */
  #local: LocalSemaphore | undefined
  #native: SemaphoreNative | undefined
  /** For the hot calls, which skip napi-rs's per-call costs. */
  #fast: FastHandle | undefined
  /** Takes and gives without a native call when the way is clear (a semaphore of this process's threads). */
  #words: FastWords | undefined
  /** Cached: reading it from native costs a call (refreshed when it matters). */
  #capacity: number
  #bells: SharedArrayBuffer | FifoBell | undefined
  readonly #named: NamedSemaphoreHandle | undefined
  readonly #sweep: (() => unknown) | undefined
  /** This thread's view of the counters: slot LOCAL_SLOT while local, its native slot after. */
  #metrics: SlottedMetrics
  /** What a native wait needs: this thread's doorbell and the native withdraw. */
  #queue: Queue | undefined
  /** Only in the thread that closed it: the reason given to `close`. */
  #closeReason: unknown
  /** False for a semaphore inside another primitive (a pool's room), which publishes nothing. */
  #published = true
  /**
   * Grants made at once while the semaphore is kept in JavaScript, not yet
   * added to its metrics slot: a field increment costs the uncontended path
   * less than the slot's. Nobody else can read the slot meanwhile; `metrics()`
   * and the move to native memory add these first (`#countedNow`).
   */
  #acquiredHere = 0

  /**
   * @param permits how many permits exist (a positive integer); all start free.
   */
  constructor(permits: number, options?: SemaphoreOptions)
  /** @internal adopts a native semaphore already attached to this thread */
  constructor(attach: typeof kAttach, attached: Attached)
  /** @internal starts from a state kept in JavaScript (`internal.create`) */
  constructor(local: typeof kLocal, state: LocalSemaphore)
  constructor(permits: number | typeof kAttach | typeof kLocal, options?: SemaphoreOptions | Attached | LocalSemaphore) {
    if (permits === kAttach) {
      const { native, bells, named, metrics, sweep } = options as Attached
      this.#named = named
      this.#sweep = sweep
      this.#metrics =
        metrics instanceof SlottedMetrics ? metrics : new SlottedMetrics(metrics ?? newMetrics(), DOORBELL_SLOTS, native.slot)
      this.#capacity = this.#attach(native, bells).capacity
      return
    }
    let local: LocalSemaphore
    if (permits === kLocal) local = options as LocalSemaphore
    else {
      validateInteger(permits, 'permits', 1, MAX_PERMITS)
      const { maxWaiters, fairness } = validateOptions<SemaphoreOptions>(options, 'options')
      if (maxWaiters !== undefined) validateInteger(maxWaiters, 'options.maxWaiters', 0, 2 ** 32 - 1)
      local = new LocalSemaphore(permits, maxWaiters)
      local.fairness = validateFairness(fairness, 'options.fairness')
    }
    local.owner = this
    this.#local = local
    this.#capacity = local.capacity
    this.#named = undefined
    this.#sweep = undefined
    // Its own until `handle` is read (`#shared` moves the counts to a shared view).
    this.#metrics = new SlottedMetrics(newMetrics(), DOORBELL_SLOTS, LOCAL_SLOT, true)
  }

  #attach(native: SemaphoreNative, bells: SharedArrayBuffer | FifoBell): SemaphoreNative {
    this.#native = native
    this.#bells = bells
    const fast = (this.#fast = native.fastHandle() as FastHandle)
    if (native instanceof NativeSemaphore) {
      const words = native.fastWords()
      if (words !== null) this.#words = new FastWords(words, native.fairness !== 'fifo')
    }
    const waitable = {
      slot: native.slot,
      takeGranted: () => semTakeGranted(fast),
      isClosed: () => semClosed(fast),
      // Eventual fairness: a ring may be a nudge to serve the permits parked for newcomers.
      serve: native instanceof NativeSemaphore && native.fairness !== 'fifo' ? () => semServe(fast) : undefined,
    }
    this.#queue = {
      doorbell: new Doorbell(waitable, bells instanceof SharedArrayBuffer ? new Int32Array(bells) : bells, this),
      withdraw: (token) => native.cancel(token),
    }
    return native
  }

  /**
   * The native semaphore, moving the state there first if it is still local:
   * the permits this thread holds stay held by it, and its queued waits are
   * queued there in the same order under their tokens, then registered with
   * the doorbell, which delivers their grants from then on. The metrics
   * counts this thread made go to its native slot.
   */
  #shared(): SemaphoreNative {
    if (this.#native !== undefined) return this.#native
    const local = this.#local!
    const { capacity, maxWaiters, available, owed, held, reserved, fairness, waits } = local.takeState()
    // Tokens are given at the move: a local wait needs none (`key` held its priority).
    const triples: number[] = []
    for (const wait of waits) {
      const token = nextToken()
      triples.push(token, wait.weight, wait.key)
      wait.key = token
    }
    const native = NativeSemaphore.adopt(capacity, maxWaiters, available, owed, held, reserved, triples, fairness)
    if (local.closed) native.close() // nothing queued: it withdraws nobody
    this.#attach(native, newDoorbells())
    this.#metrics = this.#countedNow().moveTo(native.slot)
    this.#local = undefined
    const { doorbell } = this.#queue!
    for (const wait of waits as SemaphoreWait<unknown>[]) doorbell.wait(wait.key, wait)
    return native
  }

  /**
   * The semaphore that `handle` describes, attached to this thread.
   *
   * @throws {TypeError} if `handle` is not a semaphore handle
   * @throws {InvalidHandleError} if its semaphore no longer exists
   */
  static from(handle: SemaphoreHandle): Semaphore {
    const named = validateOptions<NamedSemaphoreHandle>(handle, 'handle')
    if (named.kind === 'sluice:NamedSemaphore') return openSemaphore(named.name, named, 'Semaphore.from')
    const { kind, id, doorbells, metrics, fairness } = validateOptions<LocalSemaphoreHandle>(handle, 'handle')
    if (fairness !== undefined) validateFairness(fairness, 'handle.fairness')
    if (
      kind !== 'sluice:Semaphore' ||
      typeof id !== 'number' ||
      !(doorbells instanceof SharedArrayBuffer) ||
      doorbells.byteLength !== DOORBELL_SLOTS * Int32Array.BYTES_PER_ELEMENT ||
      (metrics !== undefined && !isMetricsBuffer(metrics, DOORBELL_SLOTS))
    ) {
      throw new TypeError(`handle must be a Semaphore handle (semaphore.handle), got ${show(handle)}`)
    }
    const native = attachById((id) => NativeSemaphore.fromId(id), id, 'semaphore')
    // A handle made by hand without `metrics` still attaches, with counters of this thread's own.
    return new Semaphore(kAttach, { native, bells: doorbells, metrics: metrics ?? newMetrics() })
  }

  /**
   * The semaphore every process of this machine (and every thread in it)
   * gets for `name`: the first opener creates it with `options.permits`; a
   * later one must ask for the same parameters. It lives while any process
   * has it open, and gives back what a process held when it exits, even
   * killed. See `docs/design/cross-process.md`.
   *
   * @throws {TypeError | RangeError} naming `name` or the option at fault
   * @throws {MismatchError} if `name` exists with other parameters
   * @throws {UnsupportedPlatformError} anywhere but Linux
   */
  static open(name: string, options: OpenSemaphoreOptions): Semaphore
  /**
   * The semaphore named `name` in `options.store` (`redis(client)` from
   * `sluice/redis`), shared by every process that opens it there.
   */
  static open<S>(name: string, options: SemaphoreOptions & { permits: number; store: Store<typeof kOpenSemaphore, S> }): S
  static open(name: string, options: OpenSemaphoreOptions | { store: unknown }): unknown {
    return openInStore(kOpenSemaphore, name, options) ?? openSemaphore(name, options, 'Semaphore.open')
  }

  /**
   * Closes the semaphore `name` for every process that has it open (their
   * waits reject with a `ClosedError`) and frees the name: the next `open`
   * creates a new one. Returns false if there was none.
   */
  static unlink(name: string, options?: Pick<OpenSemaphoreOptions, 'dir'>): boolean {
    return unlinkSemaphore(name, options)
  }

  /** Moves a semaphore still kept in JavaScript to native memory (once) so other threads can share it. */
  get handle(): SemaphoreHandle {
    if (this.#named !== undefined) return this.#named
    keepAliveInFlight(this)
    const { id } = this.#shared() as NativeSemaphore
    // Named ones returned above: a process-local primitive's counters are a SharedArrayBuffer.
    return {
      kind: 'sluice:Semaphore',
      id,
      doorbells: this.#bells as SharedArrayBuffer,
      metrics: this.#metrics.buffer as SharedArrayBuffer,
      fairness: (this.#native as NativeSemaphore).fairness as Fairness,
    }
  }

  /**
   * Counts of every thread that shares the semaphore: acquisitions
   * (`acquire`, `run`, `tryAcquire`), refusals (a full queue, a `tryAcquire`
   * that got nothing), timeouts and aborts, the waits queued and permits
   * held now, and the wait-time histogram.
   */
  metrics(): SemaphoreMetrics {
    try {
      // A named semaphore's `waiting` is its segment's wait table: reap the
      // waits of processes that died (a poll drives this only while this
      // thread has waits pending).
      this.#sweep?.()
    } catch {
      // Metrics never throw; a damaged segment is reported by the calls that use it.
    }
    const local = this.#local
    const capacity = this.capacity
    const value = local !== undefined ? local.value() : semValue(this.#fast!)
    // Free permits (available, or set aside for the head waiter) are not in use.
    const inUse = Math.min(capacity, Math.max(0, capacity - value))
    return { ...this.#countedNow().read(this.waiting), capacity, inUse }
  }

  /** The metrics, with the grants counted in `#acquiredHere` added to this thread's slot. */
  #countedNow(): SlottedMetrics {
    if (this.#acquiredHere !== 0) {
      this.#metrics.acquiredMany(this.#acquiredHere)
      this.#acquiredHere = 0
    }
    return this.#metrics
  }

  /** A grant made at once (see `#acquiredHere`). */
  #acquiredNow(local: LocalSemaphore | undefined): void {
    if (local !== undefined) this.#acquiredHere++
    else this.#metrics.acquired()
  }

  /** Permits in existence: created with, plus added, minus forgotten. */
  get capacity(): number {
    return this.#local !== undefined ? this.#local.capacity : this.#native!.capacity
  }

  /**
   * Adds `n` permits (in every thread), handing them to waiters first.
   */
  addPermits(n: number): void {
    validateInteger(n, 'n', 1, MAX_PERMITS)
    if (this.capacity + n > MAX_PERMITS) {
      throw new RangeError(`the capacity would exceed ${MAX_PERMITS} permits`)
    }
    const local = this.#local
    if (local !== undefined) {
      this.#capacity = local.capacity + n
      local.addPermits(n)
    } else this.#queue!.doorbell.deliver(this.#native!.addPermits(n))
  }

  /**
   * Removes up to `n` free permits for good (in every thread); returns how
   * many. Permits promised to queued waiters are not free.
   */
  forgetPermits(n: number): number {
    validateInteger(n, 'n', 1, MAX_PERMITS)
    if (this.#local !== undefined) return this.#local.forgetPermits(n)
    return this.#native!.forgetPermits(n)
  }

  /** Permits free right now, in all threads (0 while anyone waits). */
  get available(): number {
    return this.#local !== undefined ? this.#local.available : this.#native!.available
  }

  /** Waits queued right now, in all threads. */
  get waiting(): number {
    return this.#local !== undefined ? this.#local.waiting : this.#native!.waiting
  }

  /** Whether `close` has run, in any thread. */
  get closed(): boolean {
    return this.#local !== undefined ? this.#local.closed : semClosed(this.#fast!)
  }

  /**
   * Takes `weight` permits if they are free and nobody is queued ahead;
   * otherwise returns `null` at once.
   *
   * @throws {ClosedError} once the semaphore is closed
   */
  tryAcquire(weight = 1): Permit | null {
    // The common call (one permit, a semaphore kept in JavaScript, one free)
    // inline, the rest (and every error) out of line: V8 inlines a caller's
    // whole `tryAcquire().release()` only while the bytecode on the path
    // stays small, and only then does escape analysis remove the `Permit`.
    const local = this.#local
    if (weight === 1 && local !== undefined && local.takeFree(1)) {
      this.#acquiredHere++
      return new Permit(this, 1)
    }
    return this.#tryAcquireSlow(weight)
  }

  /** `tryAcquire` past the JavaScript fast path: any weight, a native semaphore, or refused. */
  #tryAcquireSlow(weight: number): Permit | null {
    // `Number.isInteger` first: it coerces nothing, so the comparisons never call a `valueOf`.
    if (!(Number.isInteger(weight) && weight >= 1 && weight <= this.#capacity)) this.#validateWeight(weight, 'weight')
    const local = this.#local
    const outcome =
      local !== undefined ? local.tryAcquire(weight) : this.#words?.take(weight) ? DONE : semTryAcquire(this.#fast!, weight)
    if (outcome !== DONE) return this.#tryRefused(outcome, weight)
    this.#acquiredNow(local)
    return new Permit(this, weight)
  }

  /** `tryAcquire` that got nothing: the error to throw, or null counted as a refusal. */
  #tryRefused(outcome: Outcome, weight: number): null {
    if (outcome === CLOSED) throw Errors.semaphoreClosed(this.#closeReason)
    if (outcome === TOO_HEAVY) throw Errors.overCapacity('weight', weight, this.#refreshCapacity())
    // Counted, not published: a `tryAcquire` loop would flood the channel.
    this.#metrics.refused()
    return null
  }

  /**
   * Closes the semaphore in every thread: each queued wait rejects with a
   * `ClosedError` (with `reason` as its `cause` in this thread), and so does
   * every later `acquire` or `tryAcquire`. Permits already held can still be
   * released. Closing again does nothing.
   */
  close(reason?: unknown): void {
    if (this.closed) return
    this.#closeReason = reason
    if (this.#local !== undefined) this.#local.close()
    else this.#queue!.doorbell.deliver(this.#native!.close())
    if (this.#published && semaphoreClose.hasSubscribers) semaphoreClose.publish({ semaphore: this, reason })
  }

  /**
   * Waits for `weight` permits. Resolves with a `Permit` to release; rejects
   * with `signal.reason` if the signal aborts first (at once if it already
   * has), or with a `TimeoutError` after `timeout` ms. A cancelled wait takes
   * nothing, and permits granted to it at the same moment are given back.
   */
  acquire(options?: AcquireOptions): Promise<Permit> {
    // The common call, small enough for V8 to inline: no options, a
    // semaphore kept in JavaScript with a permit free, nobody tracing. It
    // takes what `#acquire` would (a free permit is granted to priority 0 as
    // to `tryAcquire`); anything else goes the whole way.
    const local = this.#local
    if (options === undefined && local !== undefined && !(semaphoreAcquire.hasSubscribers && this.#published)) {
      if (local.takeFree(1)) {
        this.#acquiredHere++
        return Promise.resolve(new Permit(this, 1))
      }
    }
    return this.#acquire(options, undefined, undefined)
  }

  /** `acquire`, with the compat adapters' hooks (see `internal.acquire`). */
  #acquire(
    options: AcquireOptions | undefined,
    granted: ((permit: Permit) => void) | undefined,
    queued: ((cancel: Cancel) => void) | undefined,
  ): Promise<Permit> {
    let checked: CheckedOptions
    try {
      checked = this.#checkOptions(options)
    } catch (error) {
      return Promise.reject(error)
    }
    const { signal } = checked
    if (signal?.aborted) return Promise.reject(signal.reason)
    if (semaphoreAcquire.hasSubscribers && this.#published) {
      const context = { semaphore: this, weight: checked.weight, priority: checked.priority }
      return traceWait(semaphoreAcquire, context, this.#wait, this, checked, granted, queued)
    }
    return this.#wait(checked, granted, queued)
  }

  /** `acquire` past its checks: takes the permits now or queues for them. */
  #wait(
    { weight, signal, timeout, priority }: CheckedOptions,
    granted: ((permit: Permit) => void) | undefined,
    queued: ((cancel: Cancel) => void) | undefined,
  ): Promise<Permit> {
    const local = this.#local
    let token = 0
    let outcome: Outcome
    if (local !== undefined) outcome = local.acquire(weight, priority)
    else if (this.#words?.take(weight)) outcome = DONE
    else outcome = semAcquire(this.#fast!, weight, (token = nextToken()), priority)
    if (outcome === DONE) {
      this.#acquiredNow(local)
      const permit = new Permit(this, weight)
      granted?.(permit)
      return Promise.resolve(permit)
    }
    if (outcome !== QUEUED) return Promise.reject(this.#refusal(outcome, weight))
    const wait =
      granted === undefined ? new PendingAcquire(weight) : new HookedAcquire(weight, granted)
    return this.#enqueue(wait, token, priority, local, signal, timeout, queued)
  }

  /**
   * Registers `wait`, queued natively under `token`, or to be queued in
   * `local` (which answered QUEUED), and returns its promise. `queued`, if
   * given, receives the wait's `Cancel` (the compat adapters cancel without
   * an AbortSignal, whose listeners cost far more than the wait itself when
   * thousands are queued). An uncancellable wait allocates no cancel closure.
   */
  #enqueue<R>(
    wait: SemaphoreWait<R>,
    token: number,
    priority: number,
    local: LocalSemaphore | undefined,
    signal: AbortSignal | undefined,
    timeout: number | undefined,
    queued?: (cancel: Cancel) => void,
  ): Promise<R> {
    // Only `resolve` is kept: the reject function would cost a closure per
    // wait, and a rejection resolves with a rejected promise (`SemaphoreWait.fail`).
    // The executor is shared, not a closure: one allocation fewer per wait.
    const promise = new Promise<R>(captureResolve)
    wait.resolve = captured as (value: R | PromiseLike<R>) => void
    captured = notQueued
    const now = monotonicMs()
    if (this.#queuedHere++ === 0) this.#queueEpoch = now
    wait.queuedAt = Math.round((now - this.#queueEpoch) * 1000)
    if (local !== undefined) {
      // Linked before any callback runs: the queue is as `acquire` left it.
      wait.key = priority
      local.push(wait)
    } else wait.key = token
    if (signal !== undefined || timeout !== undefined || queued !== undefined) {
      const cancel = (reason: unknown, timedOut = false): void => this.#cancel(wait, reason, timedOut)
      connect(wait, onCancellation(signal, timeout, cancel))
      queued?.(cancel)
    }
    if (local === undefined) this.#queue!.doorbell.wait(token, wait)
    return promise
  }

  /**
   * Withdraws a queued wait (abort, timeout, a compat adapter's cancel),
   * whichever representation holds it now, counts it, and rejects it with
   * `reason`; does nothing once it has ended. Whatever was granted to it
   * meanwhile goes back, and may wake others.
   */
  #cancel<R>(wait: SemaphoreWait<R>, reason: unknown, timedOut: boolean, settle = true): void {
    const local = this.#local
    if (local !== undefined) {
      if (!local.remove(wait)) return
      disconnect(wait)
      this.#endWait(wait)
      this.#metrics.cancelled(timedOut)
      local.releaseLocked(0)
    } else {
      const { doorbell, withdraw } = this.#queue!
      if (!doorbell.forget(wait.key)) return
      disconnect(wait)
      this.#endWait(wait)
      this.#metrics.cancelled(timedOut)
      doorbell.deliver(withdraw(wait.key))
    }
    if (settle) wait.fail(reason)
  }

  /** `acquire`'s and `run`'s options, checked; throws what they reject with. */
  #checkOptions(options: AcquireOptions | undefined): CheckedOptions {
    // No options (the common call): the defaults need no checking, unless the
    // cached capacity is below 1, where `#validateWeight` decides the error.
    if (options === undefined && this.#capacity >= 1) return kDefaultOptions
    const opts = validateOptions<AcquireOptions>(options, 'options')
    const weight = this.#validateWeight(opts.weight ?? 1, 'options.weight')
    const { signal, timeout } = validateWaitOptions(opts)
    const priority =
      opts.priority === undefined ? 0 : validateInteger(opts.priority, 'options.priority', -(2 ** 31), 2 ** 31 - 1)
    return { weight, signal, timeout, priority }
  }

  /** The error for an acquire outcome other than DONE or QUEUED. */
  #refusal(outcome: number, weight: number): Error {
    if (outcome === CLOSED) return Errors.semaphoreClosed(this.#closeReason)
    if (outcome === TOO_HEAVY) return Errors.overCapacity('options.weight', weight, this.#refreshCapacity())
    this.#metrics.refused()
    if (this.#published && semaphoreRefused.hasSubscribers) semaphoreRefused.publish({ semaphore: this, weight, reason: 'queue-full' })
    return Errors.waitersFull(this.waiting)
  }

  /** Runs `fn` holding `weight` permits, releasing them however it ends. */
  run<T>(fn: () => T | PromiseLike<T>, options?: AcquireOptions): Promise<Awaited<T>> {
    // No async function and no Permit: one `RunWait` carries `fn` and holds
    // the permits (see `holding`). Same checks, in the same order, as `acquire`.
    if (typeof fn !== 'function') return Promise.reject(new TypeError(`fn must be a function, got ${show(fn)}`))
    let checked: CheckedOptions
    try {
      checked = this.#checkOptions(options)
    } catch (error) {
      return Promise.reject(error)
    }
    const { signal } = checked
    if (signal?.aborted) return Promise.reject(signal.reason)
    const wait: RunWait<T> = checked.weight === 1 ? new SinglePermitRun(fn) : new WeightedRun(checked.weight, fn)
    const gate = semaphoreAcquire.hasSubscribers && this.#published ? this.#tracedGate(wait, checked) : this.#gate(wait, checked)
    // `fn` runs from a reaction registered here, never synchronously in this
    // call nor in the releaser's: it keeps the caller's async context
    // (AsyncLocalStorage), as `await` did.
    return gate.then(this.#holding ?? this.#makeHolding())
  }

  /**
   * `#gate`, traced: the wait is, not `fn`, and the message's `result` is
   * not the internal RunWait. (A method of its own: its closures would
   * otherwise cost `run` a context allocation on every call.)
   */
  #tracedGate<T>(wait: RunWait<T>, checked: CheckedOptions): Promise<RunWait<T>> {
    const context = { semaphore: this, weight: checked.weight, priority: checked.priority }
    return traceWait(semaphoreAcquire, context, this.#gateReached, this, wait, checked).then(() => wait)
  }

  #gateReached<T>(wait: RunWait<T>, checked: CheckedOptions): Promise<void> {
    return (wait instanceof HookedRun ? this.#hookedGate(wait) : this.#gate(wait, checked)).then(nothing)
  }

  /** `run` of one permit for sluice/compat/p-limit (see `internal.run`). */
  #runHooked<T>(fn: () => T | PromiseLike<T>, hooks: RunHooks): Promise<Awaited<T>> {
    const wait = new HookedRun<T>(fn, hooks)
    const gate =
      semaphoreAcquire.hasSubscribers && this.#published ? this.#tracedGate(wait, kDefaultOptions) : this.#hookedGate(wait)
    return gate.then(this.#holding ?? this.#makeHolding())
  }

  /** `#gate` of one permit, unprioritised, uncancellable but by `#cancel`, telling `wait.hooks`. */
  #hookedGate<T>(wait: HookedRun<T>): Promise<RunWait<T>> {
    const local = this.#local
    let token = 0
    let outcome: Outcome
    if (local !== undefined) outcome = local.acquire(1, 0)
    else if (this.#words?.take(1)) outcome = DONE
    else outcome = semAcquire(this.#fast!, 1, (token = nextToken()), 0)
    if (outcome === DONE) {
      this.#acquiredNow(local)
      wait.hooks.granted(false)
      return Promise.resolve(wait)
    }
    if (outcome !== QUEUED) return Promise.reject(this.#refusal(outcome, 1))
    const gate = this.#enqueue(wait, token, 0, local, undefined, undefined)
    wait.hooks.queued()
    return gate
  }

  /** `run`'s wait for its permits: resolves with `wait` once it holds them. */
  #gate<T>(wait: RunWait<T>, { weight, signal, timeout, priority }: CheckedOptions): Promise<RunWait<T>> {
    const local = this.#local
    let token = 0
    let outcome: Outcome
    if (local !== undefined) outcome = local.acquire(weight, priority)
    else if (this.#words?.take(weight)) outcome = DONE
    else outcome = semAcquire(this.#fast!, weight, (token = nextToken()), priority)
    if (outcome === DONE) {
      this.#acquiredNow(local)
      return Promise.resolve(wait)
    }
    if (outcome !== QUEUED) return Promise.reject(this.#refusal(outcome, weight))
    return this.#enqueue(wait, token, priority, local, signal, timeout)
  }

  /** @internal gives back permits a `Permit` held */
  [kRelease](weight: number): void {
    const local = this.#local
    if (local !== undefined) local.release(weight)
    else if (!this.#words?.give(weight)) this.#queue!.doorbell.deliver(semRelease(this.#fast!, weight))
    // The message is built out of line: the hot path keeps its bytecode small (see `tryAcquire`).
    if (semaphoreRelease.hasSubscribers && this.#published) this.#publishRelease(weight)
  }

  #publishRelease(weight: number): void {
    semaphoreRelease.publish({ semaphore: this, weight })
  }

  /** @internal gives up held permits for good (`Permit.forget`) */
  [kForget](weight: number): void {
    // Waits now too heavy for the smaller capacity are refused (and rung for).
    const local = this.#local
    if (local !== undefined) local.forgetHeld(weight)
    else this.#queue!.doorbell.deliver(this.#native!.forgetHeld(weight))
  }

  /** @internal what the compat adapters and a queued wait reach (made on first use) */
  get [kInternals](): SemaphoreInternals {
    return (this.#internals ??= {
      metrics: () => this.#countedNow(),
      value: () => (this.#local !== undefined ? this.#local.value() : semValue(this.#fast!)),
      releaseUnowned: (n) => {
        if (this.#local !== undefined) this.#local.releaseUnowned(n)
        else this.#queue!.doorbell.deliver((this.#native as NativeSemaphore).releaseUnowned(n))
      },
      acquire: (options, granted, queued) => this.#acquire(options, granted, queued),
      withdrawWhere: (test, reason) => {
        const waits = this.#local !== undefined ? this.#local.queuedWaits() : this.#queue!.doorbell.waits()
        for (const wait of waits) {
          if (test(wait)) this.#cancel(wait as SemaphoreWait<unknown>, reason, false, reason !== undefined)
        }
      },
      closedError: () => Errors.semaphoreClosed(this.#closeReason),
      refusedError: (weight) => Errors.refusedOverCapacity(weight, this.#refreshCapacity()),
      unpublish: () => {
        this.#published = false
      },
    })
  }

  #internals: SemaphoreInternals | undefined
  /** The end reactions of this semaphore's runs of one permit (see `RunWait.ends`), made on first use. */
  #runEnds: RunEnds | undefined
  /**
   * The reaction that runs this semaphore's granted runs (see `holding`),
   * made on first use: one per semaphore, so a run's wait need not keep it.
   */
  #holding: Holding | undefined

  /**
   * What queued waits' times count from: a clock reading, and how many of
   * this object's waits are queued in this thread. A wait keeps its queue
   * time as whole microseconds after `#queueEpoch`, a small integer that V8
   * stores in the field itself (a double field costs a 16-byte box per
   * wait). The epoch moves only when no wait is queued, so no queued wait's
   * offset changes meaning; a backlog unbroken for 35 minutes gives offsets
   * past V8's small integers, which are then boxed: still exact.
   */
  #queueEpoch = 0
  #queuedHere = 0

  /**
   * Counts `wait` as no longer queued (once) and returns when it queued, as
   * `monotonicMs()` read then. Called as a queued wait ends, before any
   * callback of its ending runs: a callback that queues a new wait must not
   * move the epoch while waits ended in the same batch still read it.
   */
  #endWait(wait: { queuedAt: number }): number {
    const offset = wait.queuedAt
    if (offset >= 0) {
      wait.queuedAt = -1
      this.#queuedHere--
    }
    return this.#queueEpoch + offset / 1000
  }

  static {
    // For the waits of this file: a direct read, where `[kInternals].metrics()`
    // costs a getter and a closure call on every grant.
    metricsOf = (semaphore) => semaphore.#metrics
    endWait = (semaphore, wait) => semaphore.#endWait(wait)
    runHooked = (semaphore, fn, hooks) => semaphore.#runHooked(fn, hooks)
    runEndsOf = (semaphore) => (semaphore.#runEnds ??= releasingEnds(semaphore, () => semaphore[kRelease](1)))
  }

  #makeHolding(): Holding {
    return (this.#holding = (wait) => holding(this, wait))
  }

  /** Reads the capacity anew (it shrank or grew in some thread) and caches it. */
  #refreshCapacity(): number {
    return (this.#capacity = this.capacity)
  }

  #validateWeight(weight: unknown, name: string): number {
    // The cached capacity is exact unless permits were added or forgotten;
    // only then is the current one read.
    if (typeof weight === 'number' && weight > this.#capacity) this.#refreshCapacity()
    return validateInteger(weight, name, 1, this.#capacity)
  }
}

/** `AcquireOptions`, checked, with the defaults filled in. */
interface CheckedOptions {
  readonly weight: number
  readonly signal: AbortSignal | undefined
  readonly timeout: number | undefined
  readonly priority: number
}

const kDefaultOptions: CheckedOptions = Object.freeze({ weight: 1, signal: undefined, timeout: undefined, priority: 0 })

/** @internal What the compat adapters and a queued acquire reach of a semaphore. */
interface SemaphoreInternals {
  /** The counters, as this thread sees them now (a queued wait updates them as it ends). */
  metrics(): SharedMetrics
  /** Free permits (available and reserved for the head) minus those owed. */
  value(): number
  /** Frees `n` permits no thread holds. */
  releaseUnowned(n: number): void
  acquire(
    options: AcquireOptions | undefined,
    granted: ((permit: Permit) => void) | undefined,
    queued: ((cancel: Cancel) => void) | undefined,
  ): Promise<Permit>
  /** Withdraws, in queue order, every queued wait of this semaphore in this thread that passes `test`. */
  withdrawWhere(test: (wait: object) => boolean, reason: unknown): void
  closedError(): ClosedError
  refusedError(weight: number): RangeError
  /** Stops publishing on the diagnostics channels (see `internal.untraced`). */
  unpublish(): void
}

/**
 * What disconnects each cancellable wait (signal, timeout or compat cancel)
 * from its signal and timer, kept beside the wait rather than in it: most
 * waits have none, and a field would cost every wait. `cancellable` counts
 * the entries, so that an uncancellable wait's ending looks nothing up while
 * no wait has one.
 */
const disconnects = new WeakMap<object, () => void>()
let cancellable = 0

function connect(wait: object, disconnect: () => void): void {
  disconnects.set(wait, disconnect)
  cancellable++
}

/** Disconnects `wait` from its signal and timer, if it has any (once). */
function disconnect(wait: object): void {
  if (cancellable === 0) return
  const disconnectIt = disconnects.get(wait)
  if (disconnectIt === undefined) return
  disconnects.delete(wait)
  cancellable--
  disconnectIt()
}

/**
 * A queued wait for permits of a semaphore: how a close or a refusal ends it
 * (the same for `acquire` and `run`); subclasses say what a grant delivers.
 * One object per wait, and a small one: thousands may be pending. It keeps
 * its promise's `resolve` only (a rejection resolves with a rejected
 * promise), its signal and timer beside it (`disconnects`), one number that
 * is its priority while queued locally and its token once native, and not
 * its semaphore: the queue that ends it says which.
 */
abstract class SemaphoreWait<R> implements LocalWait, Wait {
  /** Settles the wait's promise; set by `#enqueue` (a rejected promise rejects it). */
  resolve: (value: R | PromiseLike<R>) => void = notQueued
  /**
   * Permits it asks for. A run of one permit (every p-limit call) answers
   * from its class, so that wait, of which thousands may be pending, is a
   * field (8 bytes) smaller.
   */
  abstract readonly weight: number
  /** Its priority while in a `LocalSemaphore` queue; its token once queued natively. */
  key = 0
  // Where it stands in a `LocalSemaphore` queue, while the semaphore is local.
  prev: LocalWait | undefined = undefined
  next: LocalWait | undefined = undefined
  /**
   * Set by `Doorbell.wait` once queued natively; never initialised here, so
   * a wait kept in JavaScript is a field (8 bytes) smaller.
   */
  declare doorbell: Doorbell | undefined
  /**
   * When it queued, in whole microseconds after its semaphore's queue epoch
   * (-1 while not queued): the one clock read of a wait, made only for waits
   * that queue.
   */
  queuedAt = -1

  /**
   * The wait was granted by `semaphore` (its queue hands it over: a wait
   * keeps no reference to it): what it resolves with (a throw rejects it).
   */
  protected abstract granted(semaphore: Semaphore): R

  /** Rejects the wait's promise with `reason` exactly (no reject function kept). */
  fail(reason: unknown): void {
    // The rejected promise gets its handler (the wait's promise following it)
    // in the same microtask checkpoint: never reported as unhandled itself.
    this.resolve(Promise.reject(reason))
  }

  onGrant(semaphore: Semaphore): void {
    disconnect(this)
    metricsOf(semaphore).granted(endWait(semaphore, this))
    let value: R
    try {
      value = this.granted(semaphore)
    } catch (error) {
      this.fail(error)
      return
    }
    this.resolve(value)
  }

  onWithdrawn(semaphore: Semaphore): void {
    disconnect(this)
    endWait(semaphore, this)
    this.fail(semaphore[kInternals].closedError())
  }

  onRefused(semaphore: Semaphore): void {
    disconnect(this)
    endWait(semaphore, this)
    metricsOf(semaphore).refused()
    this.fail(semaphore[kInternals].refusedError(this.weight))
  }
}

/** What a wait's `resolve` is before `#enqueue` sets it (a `run` granted at once never queues). */
function notQueued(): void {}

/** The `resolve` that `captureResolve` was just handed (a Promise runs its executor synchronously). */
let captured: (value: never) => void = notQueued
function captureResolve(resolve: (value: never) => void): void {
  captured = resolve
}

/** A queued `acquire`: resolves with a `Permit` made at grant time. */
class PendingAcquire extends SemaphoreWait<Permit> {
  readonly weight: number

  constructor(weight: number) {
    super()
    this.weight = weight
  }

  protected granted(semaphore: Semaphore): Permit {
    return new Permit(semaphore, this.weight)
  }
}

/** A queued `acquire` of a compat adapter, whose `onGranted` sees the permit first. */
class HookedAcquire extends PendingAcquire {
  readonly #onGranted: (permit: Permit) => void

  constructor(weight: number, onGranted: (permit: Permit) => void) {
    super(weight)
    this.#onGranted = onGranted
  }

  protected override granted(semaphore: Semaphore): Permit {
    const permit = super.granted(semaphore)
    this.#onGranted(permit)
    return permit
  }
}

/**
 * A queued or granted `run`: the wait and, once granted, the holder of its
 * permits, so a `run` costs no `Permit` and no async function frame. Once
 * granted it is handed to `holding` with its semaphore.
 */
abstract class RunWait<T> extends SemaphoreWait<RunWait<T>> {
  readonly fn: () => T | PromiseLike<T>

  constructor(fn: () => T | PromiseLike<T>) {
    super()
    this.fn = fn
  }

  /** Gives the permits back to `semaphore`; `holding` calls it exactly once. */
  release(semaphore: Semaphore): void {
    semaphore[kRelease](this.weight)
  }

  /** Reactions that `release` and pass an outcome on (see `holding`). */
  abstract ends(semaphore: Semaphore): RunEnds

  protected granted(): RunWait<T> {
    return this
  }
}

/**
 * A `run` of one permit. It shares its semaphore's end reactions, so when
 * its `fn` returns a promise it allocates no closures of its own.
 */
class SinglePermitRun<T> extends RunWait<T> {
  get weight(): number {
    return 1
  }

  ends(semaphore: Semaphore): RunEnds {
    return runEndsOf(semaphore)
  }
}

/** A `run` of more than one permit: end reactions of its own. */
class WeightedRun<T> extends RunWait<T> {
  readonly weight: number

  constructor(weight: number, fn: () => T | PromiseLike<T>) {
    super(fn)
    this.weight = weight
  }

  ends(semaphore: Semaphore): RunEnds {
    return releasingEnds(semaphore, () => this.release(semaphore))
  }
}

/**
 * @internal What sluice/compat/p-limit learns of its calls (one object per
 * limiter, so a call costs no closures). It counts them; it keeps no call:
 * `internal.withdrawRuns` finds its queued ones in the semaphore's queue.
 */
export interface RunHooks {
  /**
   * The call holds its permit now: synchronously, in `run` (`queued` false)
   * or in the release that grants it (`queued` true: `queued` ran before).
   */
  granted(queued: boolean): void
  /** The call is queued (after `run` returned nothing yet); `internal.withdrawRuns` can take it back. */
  queued(): void
  /** The call's function settled: true to give its permit up for good instead of releasing it. */
  finished(): boolean
  /** Set by the semaphore: the reactions that end these hooks' runs on it (see `RunWait.ends`). */
  ends?: RunEnds
}

/** A `run` of the compat p-limit: tells its hooks when it is granted and asks them how to end. */
class HookedRun<T> extends SinglePermitRun<T> {
  readonly hooks: RunHooks

  constructor(fn: () => T | PromiseLike<T>, hooks: RunHooks) {
    super(fn)
    this.hooks = hooks
  }

  override release(semaphore: Semaphore): void {
    endHooked(semaphore, this.hooks)
  }

  override ends(semaphore: Semaphore): RunEnds {
    const hooks = this.hooks
    const cached = hooks.ends
    if (cached?.semaphore === semaphore) return cached
    return (hooks.ends = releasingEnds(semaphore, () => endHooked(semaphore, hooks)))
  }

  protected override granted(): RunWait<T> {
    this.hooks.granted(true)
    return this
  }
}

/** A compat p-limit run's end: its permit is released, or forgotten if the hooks say so. */
function endHooked(semaphore: Semaphore, hooks: RunHooks): void {
  if (hooks.finished()) semaphore[kForget](1)
  else semaphore[kRelease](1)
}

function nothing(): void {}

/** @internal The reactions that end a run of `semaphore`: release, then pass the outcome on. */
export interface RunEnds {
  readonly semaphore: Semaphore
  value<V>(value: V): V
  error(error: unknown): never
}

function releasingEnds(semaphore: Semaphore, release: () => void): RunEnds {
  return {
    semaphore,
    value: (value) => {
      release()
      return value
    },
    error: (error) => {
      release()
      throw error
    },
  }
}

/** `holding`, of one semaphore: what `run` registers on a wait's promise. */
type Holding = <T>(wait: RunWait<T>) => Awaited<T> | Promise<Awaited<T>>

/**
 * Runs a granted `run`'s `fn` and releases its permits however it ends: at
 * once if it throws or returns a plain value, else when what it returned
 * settles (as `try { return await fn() } finally { release }`).
 */
function holding<T>(semaphore: Semaphore, wait: RunWait<T>): Awaited<T> | Promise<Awaited<T>> {
  let result: T | PromiseLike<T>
  // Called as `fn()`, with no `this` (not the internal wait), as the
  // `try { return await fn() }` it stands for would.
  const fn = wait.fn
  try {
    result = fn()
  } catch (error) {
    wait.release(semaphore)
    throw error
  }
  if (result === null || (typeof result !== 'object' && typeof result !== 'function')) {
    wait.release(semaphore)
    return result as Awaited<T>
  }
  const ends = wait.ends(semaphore)
  return Promise.resolve(result).then(ends.value, ends.error) as Promise<Awaited<T>>
}

/**
 * @internal Hooks for the compat adapters (p-limit, and async-mutex, whose
 * semaphore is a counter that `release` may raise without limit): not part
 * of the public API.
 */
export const internal = {
  /**
   * A semaphore of MAX_PERMITS of which `value` are free; the rest are held
   * by nobody. A negative `value` frees none and owes `-value`: the first
   * `-value` permits released pay that debt before anyone is served.
   */
  create(value: number): Semaphore {
    return new Semaphore(kLocal, new LocalSemaphore(MAX_PERMITS, undefined, Math.max(value, 0), Math.max(-value, 0)))
  },
  /** async-mutex's value: free permits (available and reserved for the head) minus those owed. */
  value: (semaphore: Semaphore): number => semaphore[kInternals].value(),
  /** Makes `semaphore` publish nothing on the diagnostics channels: it is part of another primitive. */
  untraced(semaphore: Semaphore): void {
    semaphore[kInternals].unpublish()
  },
  /** Frees `n` permits no thread holds. */
  releaseUnowned(semaphore: Semaphore, n: number): void {
    semaphore[kInternals].releaseUnowned(n)
  },
  /**
   * `acquire`, with `granted` run synchronously by the call that grants it,
   * and, if it has to wait, `queued` handed a function that withdraws it:
   * cancellation without an AbortSignal, whose listeners cost far more than
   * the wait itself when thousands are queued.
   */
  /**
   * `semaphore.run(fn)` of one permit, FIFO, telling `hooks` when it is
   * granted and queued and asking them, when `fn` settles, whether to forget
   * the permit. Withdraw the queued ones with `withdrawRuns`.
   */
  run: <T>(semaphore: Semaphore, fn: () => T | PromiseLike<T>, hooks: RunHooks): Promise<Awaited<T>> =>
    runHooked(semaphore, fn, hooks),
  /**
   * Takes back every call that `run` queued with `hooks` and that still
   * waits in this thread: each promise rejects with `reason`, or never
   * settles if `reason` is undefined.
   */
  withdrawRuns(semaphore: Semaphore, hooks: RunHooks, reason: unknown): void {
    semaphore[kInternals].withdrawWhere((wait) => wait instanceof HookedRun && wait.hooks === hooks, reason)
  },
  acquire: (
    semaphore: Semaphore,
    options: AcquireOptions | undefined,
    granted?: (permit: Permit) => void,
    queued?: (cancel: Cancel) => void,
  ): Promise<Permit> => semaphore[kInternals].acquire(options, granted, queued),
}
