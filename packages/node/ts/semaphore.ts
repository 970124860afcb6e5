import { keepAliveInFlight } from './in-flight.js'
import { Doorbell, nextToken } from './doorbell.js'
import { Errors, type ClosedError } from './errors.js'
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
  semTakeGranted,
  semTryAcquire,
  semValue,
  type FastHandle,
  type WakeList,
} from './native.js'
import { kAttach, kForget, kInternals, kRelease } from './symbols.js'
import { show, validateInteger, validateOptions } from './validate.js'
import { enqueue, QueuedWait, validateWaitOptions, type Cancel, type Queue } from './wait.js'

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
export interface SemaphoreHandle {
  readonly kind: 'sluice:Semaphore'
  readonly id: number
  readonly doorbells: SharedArrayBuffer
}

/**
 * Permits taken from a semaphore. Release it once, explicitly or with
 * `using permit = ...`; releasing again does nothing.
 */
export class Permit implements Disposable {
  readonly weight: number
  #semaphore: Semaphore | undefined

  /** @internal made by `Semaphore` only */
  constructor(semaphore: Semaphore, weight: number) {
    this.#semaphore = semaphore
    this.weight = weight
  }

  /** Whether `release` has run. */
  get released(): boolean {
    return this.#semaphore === undefined
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

/** A native semaphore attached to this thread, for the constructor to adopt. */
interface Attached {
  native: NativeSemaphore
  bells: SharedArrayBuffer
}

function newDoorbells(): SharedArrayBuffer {
  return new SharedArrayBuffer(DOORBELL_SLOTS * Int32Array.BYTES_PER_ELEMENT)
}

/**
 * A counting semaphore whose state lives in native memory, shared by every
 * thread that has its handle. Waiters are served first come, first served
 * across all threads; a waiter needing many permits is not overtaken by
 * smaller requests that arrive after it.
 */
export class Semaphore {
  readonly #native: NativeSemaphore
  /** For the hot calls, which skip napi-rs's per-call costs. */
  readonly #fast: FastHandle
  /** Cached: reading it from native costs a call (refreshed when it matters). */
  #capacity: number
  readonly #bells: SharedArrayBuffer
  /** What `enqueue` needs: this thread's doorbell and the native withdraw. */
  readonly #queue: Queue
  /** Only in the thread that closed it: the reason given to `close`. */
  #closeReason: unknown

  /**
   * @param permits how many permits exist (a positive integer); all start free.
   */
  constructor(permits: number, options?: SemaphoreOptions)
  /** @internal adopts a native semaphore already attached to this thread */
  constructor(attach: typeof kAttach, attached: Attached)
  constructor(permits: number | typeof kAttach, options?: SemaphoreOptions | Attached) {
    if (permits === kAttach) {
      ;({ native: this.#native, bells: this.#bells } = options as Attached)
    } else {
      validateInteger(permits, 'permits', 1, MAX_PERMITS)
      const { maxWaiters } = validateOptions<SemaphoreOptions>(options, 'options')
      if (maxWaiters !== undefined) validateInteger(maxWaiters, 'options.maxWaiters', 0, 2 ** 32 - 1)
      this.#native = new NativeSemaphore(permits, maxWaiters)
      this.#bells = newDoorbells()
    }
    const native = this.#native
    const fast = (this.#fast = native.fastHandle() as FastHandle)
    this.#capacity = native.capacity
    const waitable = { slot: native.slot, takeGranted: () => semTakeGranted(fast), isClosed: () => native.closed }
    this.#queue = {
      doorbell: new Doorbell(waitable, new Int32Array(this.#bells)),
      withdraw: (token) => native.cancel(token),
    }
  }

  /**
   * The semaphore that `handle` describes, attached to this thread.
   *
   * @throws {TypeError} if `handle` is not a semaphore handle
   * @throws {InvalidHandleError} if its semaphore no longer exists
   */
  static from(handle: SemaphoreHandle): Semaphore {
    const { kind, id, doorbells } = validateOptions<SemaphoreHandle>(handle, 'handle')
    if (
      kind !== 'sluice:Semaphore' ||
      typeof id !== 'number' ||
      !(doorbells instanceof SharedArrayBuffer) ||
      doorbells.byteLength !== DOORBELL_SLOTS * Int32Array.BYTES_PER_ELEMENT
    ) {
      throw new TypeError(`handle must be a Semaphore handle (semaphore.handle), got ${show(handle)}`)
    }
    const native = attachById((id) => NativeSemaphore.fromId(id), id, 'semaphore')
    return new Semaphore(kAttach, { native, bells: doorbells })
  }

  get handle(): SemaphoreHandle {
    keepAliveInFlight(this)
    return { kind: 'sluice:Semaphore', id: this.#native.id, doorbells: this.#bells }
  }

  /** Permits in existence: created with, plus added, minus forgotten. */
  get capacity(): number {
    return this.#native.capacity
  }

  /**
   * Adds `n` permits (in every thread), handing them to waiters first.
   */
  addPermits(n: number): void {
    validateInteger(n, 'n', 1, MAX_PERMITS)
    if (this.#native.capacity + n > MAX_PERMITS) {
      throw new RangeError(`the capacity would exceed ${MAX_PERMITS} permits`)
    }
    this.#queue.doorbell.deliver(this.#native.addPermits(n))
  }

  /**
   * Removes up to `n` free permits for good (in every thread); returns how
   * many. Permits promised to queued waiters are not free.
   */
  forgetPermits(n: number): number {
    validateInteger(n, 'n', 1, MAX_PERMITS)
    return this.#native.forgetPermits(n)
  }

  /** Permits free right now, in all threads (0 while anyone waits). */
  get available(): number {
    return this.#native.available
  }

  /** Waits queued right now, in all threads. */
  get waiting(): number {
    return this.#native.waiting
  }

  /** Whether `close` has run, in any thread. */
  get closed(): boolean {
    return this.#native.closed
  }

  /**
   * Takes `weight` permits if they are free and nobody is queued ahead;
   * otherwise returns `null` at once.
   *
   * @throws {ClosedError} once the semaphore is closed
   */
  tryAcquire(weight = 1): Permit | null {
    this.#validateWeight(weight, 'weight')
    const outcome = semTryAcquire(this.#fast, weight)
    if (outcome === DONE) return new Permit(this, weight)
    if (outcome === CLOSED) throw Errors.semaphoreClosed(this.#closeReason)
    if (outcome === TOO_HEAVY) throw Errors.overCapacity('weight', weight, this.#refreshCapacity())
    return null
  }

  /**
   * Closes the semaphore in every thread: each queued wait rejects with a
   * `ClosedError` (with `reason` as its `cause` in this thread), and so does
   * every later `acquire` or `tryAcquire`. Permits already held can still be
   * released. Closing again does nothing.
   */
  close(reason?: unknown): void {
    if (this.#native.closed) return
    this.#closeReason = reason
    this.#queue.doorbell.deliver(this.#native.close())
  }

  /**
   * Waits for `weight` permits. Resolves with a `Permit` to release; rejects
   * with `signal.reason` if the signal aborts first (at once if it already
   * has), or with a `TimeoutError` after `timeout` ms. A cancelled wait takes
   * nothing, and permits granted to it at the same moment are given back.
   */
  acquire(options?: AcquireOptions): Promise<Permit> {
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
    const { weight, signal, timeout, priority } = checked
    if (signal?.aborted) return Promise.reject(signal.reason)
    const token = nextToken()
    const outcome = semAcquire(this.#fast, weight, token, priority)
    if (outcome === DONE) {
      const permit = new Permit(this, weight)
      granted?.(permit)
      return Promise.resolve(permit)
    }
    if (outcome !== QUEUED) return Promise.reject(this.#refusal(outcome, weight))
    return enqueue(this.#queue, token, new PendingAcquire(this, weight, granted), signal, timeout, queued)
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

  /** The error for a `semAcquire` outcome other than DONE or QUEUED. */
  #refusal(outcome: number, weight: number): Error {
    if (outcome === CLOSED) return Errors.semaphoreClosed(this.#closeReason)
    if (outcome === TOO_HEAVY) return Errors.overCapacity('options.weight', weight, this.#refreshCapacity())
    return Errors.waitersFull(this.#native.waiting)
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
    const { weight, signal, timeout, priority } = checked
    if (signal?.aborted) return Promise.reject(signal.reason)
    const wait = new RunWait<T>(this, weight, fn)
    const token = nextToken()
    const outcome = semAcquire(this.#fast, weight, token, priority)
    let gate: Promise<RunWait<T>>
    if (outcome === DONE) gate = Promise.resolve(wait)
    else if (outcome === QUEUED) gate = enqueue(this.#queue, token, wait, signal, timeout)
    else return Promise.reject(this.#refusal(outcome, weight))
    // `fn` runs from a reaction registered here, never synchronously in this
    // call nor in the releaser's: it keeps the caller's async context
    // (AsyncLocalStorage), as `await` did.
    return gate.then(holding)
  }

  /** @internal gives back permits a `Permit` held */
  [kRelease](weight: number): void {
    this.#queue.doorbell.deliver(semRelease(this.#fast, weight))
  }

  /** @internal gives up held permits for good (`Permit.forget`) */
  [kForget](weight: number): void {
    // Waits now too heavy for the smaller capacity are refused (and rung for).
    this.#queue.doorbell.deliver(this.#native.forgetHeld(weight))
  }

  /** @internal what the compat adapters and a queued wait reach (made on first use) */
  get [kInternals](): SemaphoreInternals {
    return (this.#internals ??= {
      native: this.#native,
      value: () => semValue(this.#fast),
      deliver: (wakeList) => this.#queue.doorbell.deliver(wakeList),
      acquire: (options, granted, queued) => this.#acquire(options, granted, queued),
      closedError: () => Errors.semaphoreClosed(this.#closeReason),
      refusedError: (weight) => Errors.refusedOverCapacity(weight, this.#refreshCapacity()),
    })
  }

  #internals: SemaphoreInternals | undefined

  /** Reads the capacity anew (it shrank or grew in some thread) and caches it. */
  #refreshCapacity(): number {
    return (this.#capacity = this.#native.capacity)
  }

  #validateWeight(weight: unknown, name: string): number {
    // The cached capacity is exact unless permits were added or forgotten;
    // only then is the native one read.
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
  readonly native: NativeSemaphore
  /** Free permits (available and reserved for the head) minus those owed, in one native call. */
  value(): number
  /** Acts on what a native call granted (see `Doorbell.deliver`). */
  deliver(wakeList: WakeList | number): void
  acquire(
    options: AcquireOptions | undefined,
    granted: ((permit: Permit) => void) | undefined,
    queued: ((cancel: Cancel) => void) | undefined,
  ): Promise<Permit>
  closedError(): ClosedError
  refusedError(weight: number): RangeError
}

/**
 * A queued wait for permits of `semaphore`: how a close or a refusal ends it
 * (the same for `acquire` and `run`); subclasses say what a grant delivers.
 */
abstract class SemaphoreWait<R> extends QueuedWait<R> {
  protected readonly semaphore: Semaphore
  protected readonly weight: number

  constructor(semaphore: Semaphore, weight: number) {
    super()
    this.semaphore = semaphore
    this.weight = weight
  }

  protected withdrawn(): never {
    throw this.semaphore[kInternals].closedError()
  }

  protected override refused(): never {
    throw this.semaphore[kInternals].refusedError(this.weight)
  }
}

/** A queued `acquire`: one object per wait, settled by the doorbell. */
class PendingAcquire extends SemaphoreWait<Permit> {
  readonly #onGranted: ((permit: Permit) => void) | undefined

  constructor(semaphore: Semaphore, weight: number, onGranted: ((permit: Permit) => void) | undefined) {
    super(semaphore, weight)
    this.#onGranted = onGranted
  }

  protected granted(): Permit {
    const permit = new Permit(this.semaphore, this.weight)
    this.#onGranted?.(permit)
    return permit
  }
}

/**
 * A queued or granted `run`: the wait and, once granted, the holder of its
 * permits, so a `run` costs no `Permit` and no async function frame.
 */
class RunWait<T> extends SemaphoreWait<RunWait<T>> {
  readonly fn: () => T | PromiseLike<T>

  constructor(semaphore: Semaphore, weight: number, fn: () => T | PromiseLike<T>) {
    super(semaphore, weight)
    this.fn = fn
  }

  /** Gives the permits back; `holding` calls it exactly once. */
  release(): void {
    this.semaphore[kRelease](this.weight)
  }

  protected granted(): RunWait<T> {
    return this
  }
}

/**
 * Runs a granted `run`'s `fn` and releases its permits however it ends: at
 * once if it throws or returns a plain value, else when what it returned
 * settles (as `try { return await fn() } finally { release }`).
 */
function holding<T>(wait: RunWait<T>): Awaited<T> | Promise<Awaited<T>> {
  let result: T | PromiseLike<T>
  try {
    result = wait.fn()
  } catch (error) {
    wait.release()
    throw error
  }
  if (result === null || (typeof result !== 'object' && typeof result !== 'function')) {
    wait.release()
    return result as Awaited<T>
  }
  return Promise.resolve(result).then(
    (value) => {
      wait.release()
      return value
    },
    (error: unknown) => {
      wait.release()
      throw error
    },
  )
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
    const native = new NativeSemaphore(MAX_PERMITS, undefined, Math.max(value, 0), value < 0 ? -value : undefined)
    return new Semaphore(kAttach, { native, bells: newDoorbells() })
  },
  /** async-mutex's value: free permits (available and reserved for the head) minus those owed. */
  value: (semaphore: Semaphore): number => semaphore[kInternals].value(),
  /** Frees `n` permits no thread holds. */
  releaseUnowned(semaphore: Semaphore, n: number): void {
    const internals = semaphore[kInternals]
    internals.deliver(internals.native.releaseUnowned(n))
  },
  /**
   * `acquire`, with `granted` run synchronously by the call that grants it,
   * and, if it has to wait, `queued` handed a function that withdraws it:
   * cancellation without an AbortSignal, whose listeners cost far more than
   * the wait itself when thousands are queued.
   */
  acquire: (
    semaphore: Semaphore,
    options: AcquireOptions | undefined,
    granted?: (permit: Permit) => void,
    queued?: (cancel: Cancel) => void,
  ): Promise<Permit> => semaphore[kInternals].acquire(options, granted, queued),
}
