import { onCancellation } from './abort.js'
import { Doorbell, nextToken, type Wait } from './doorbell.js'
import { ClosedError, QueueFullError } from './errors.js'
import {
  attachById,
  CLOSED,
  DONE,
  DOORBELL_SLOTS,
  NativeSemaphore,
  QUEUE_FULL,
  TOO_HEAVY,
  semAcquire,
  semRelease,
  semTakeGranted,
  semTryAcquire,
  type FastHandle,
} from './native.js'
import { show, validateInteger, validateOptions, validateSignal, validateTimeout } from './validate.js'

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
 * the same semaphore. The semaphore must stay alive (some thread holding a
 * `Semaphore` for it) while its handle is in flight.
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
    releasePermits(semaphore, this.weight)
  }

  /**
   * Gives the permits up for good instead of releasing them: the semaphore's
   * capacity shrinks by `weight` (as tokio's `SemaphorePermit::forget`).
   */
  forget(): void {
    const semaphore = this.#semaphore
    if (semaphore === undefined) return
    this.#semaphore = undefined
    forgetPermits(semaphore, this.weight)
  }

  [Symbol.dispose](): void {
    this.release()
  }
}

let releasePermits: (semaphore: Semaphore, weight: number) => void
let forgetPermits: (semaphore: Semaphore, weight: number) => void

/** Withdraws a queued wait, rejecting it with `reason`; does nothing once it has ended. */
export type Cancel = (reason: unknown) => void

/**
 * @internal Hooks for the compat adapters (p-limit, and async-mutex, whose
 * semaphore is a counter that `release` may raise without limit): not part
 * of the public API.
 */
export const internal = {} as {
  /**
   * A semaphore of MAX_PERMITS of which `value` are free; the rest are held
   * by nobody. A negative `value` frees none and owes `-value`: the first
   * `-value` permits released pay that debt before anyone is served.
   */
  create(value: number): Semaphore
  /** Permits owed (see `create`), in every thread. */
  owed(semaphore: Semaphore): number
  /** Frees `n` permits no thread holds. */
  releaseUnowned(semaphore: Semaphore, n: number): void
  /** Free permits set aside for a weighted head (not in `available`). */
  reserved(semaphore: Semaphore): number
  /**
   * `acquire`, with `granted` run synchronously by the call that grants it,
   * and, if it has to wait, `queued` handed a function that withdraws it:
   * cancellation without an AbortSignal, whose listeners cost far more than
   * the wait itself when thousands are queued.
   */
  acquire(
    semaphore: Semaphore,
    options: AcquireOptions | undefined,
    granted?: (permit: Permit) => void,
    queued?: (cancel: Cancel) => void,
  ): Promise<Permit>
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
  readonly #doorbell: Doorbell
  readonly #bells: SharedArrayBuffer
  /** Only in the thread that closed it: the reason given to `close`. */
  #closeReason: unknown

  static {
    releasePermits = (semaphore, weight) => semaphore.#release(weight)
    // Settled: waits too heavy for the smaller capacity are refused (and rung for).
    forgetPermits = (semaphore, weight) => semaphore.#doorbell.settle(semaphore.#native.forgetHeld(weight))
    internal.create = (value) => {
      Semaphore.#attaching = {
        native: new NativeSemaphore(MAX_PERMITS, undefined, Math.max(value, 0), value < 0 ? -value : undefined),
        bells: new SharedArrayBuffer(DOORBELL_SLOTS * Int32Array.BYTES_PER_ELEMENT),
      }
      return new Semaphore(MAX_PERMITS)
    }
    internal.releaseUnowned = (semaphore, n) => semaphore.#doorbell.settle(semaphore.#native.releaseUnowned(n))
    internal.reserved = (semaphore) => semaphore.#native.reserved
    internal.owed = (semaphore) => semaphore.#native.owed
    internal.acquire = (semaphore, options, granted, queued) => semaphore.#acquire(options, granted, queued)
  }

  /** Set by `from` (and `internal.create`) for the constructor to adopt instead of creating. */
  static #attaching: { native: NativeSemaphore; bells: SharedArrayBuffer } | undefined

  /**
   * @param permits how many permits exist (a positive integer); all start free.
   */
  constructor(permits: number, options?: SemaphoreOptions) {
    const attaching = Semaphore.#attaching
    Semaphore.#attaching = undefined
    if (attaching === undefined) {
      validateInteger(permits, 'permits', 1, MAX_PERMITS)
      const { maxWaiters } = validateOptions<SemaphoreOptions>(options, 'options')
      if (maxWaiters !== undefined) validateInteger(maxWaiters, 'options.maxWaiters', 0, 2 ** 32 - 1)
      this.#native = new NativeSemaphore(permits, maxWaiters)
      this.#bells = new SharedArrayBuffer(DOORBELL_SLOTS * Int32Array.BYTES_PER_ELEMENT)
    } else {
      this.#native = attaching.native
      this.#bells = attaching.bells
    }
    this.#fast = this.#native.fastHandle() as FastHandle
    this.#capacity = this.#native.capacity
    const fast = this.#fast
    const native = this.#native
    const waitable = { slot: native.slot, takeGranted: () => semTakeGranted(fast), isClosed: () => native.closed }
    this.#doorbell = new Doorbell(waitable, new Int32Array(this.#bells))
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
    Semaphore.#attaching = { native, bells: doorbells }
    return new Semaphore(native.capacity)
  }

  get handle(): SemaphoreHandle {
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
    this.#doorbell.settle(this.#native.addPermits(n))
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
    if (outcome === CLOSED) throw this.#closedError()
    if (outcome === TOO_HEAVY) throw this.#tooHeavy(weight, 'weight')
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
    this.#doorbell.settle(this.#native.close())
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

  #acquire(
    options: AcquireOptions | undefined,
    granted: ((permit: Permit) => void) | undefined,
    queued: ((cancel: Cancel) => void) | undefined,
  ): Promise<Permit> {
    let weight: number, signal: AbortSignal | undefined, timeout: number | undefined, priority: number
    try {
      const opts = validateOptions<AcquireOptions>(options, 'options')
      weight = this.#validateWeight(opts.weight ?? 1, 'options.weight')
      signal = validateSignal(opts.signal, 'options.signal')
      timeout = validateTimeout(opts.timeout, 'options.timeout')
      priority = opts.priority === undefined ? 0 : validateInteger(opts.priority, 'options.priority', -(2 ** 31), 2 ** 31 - 1)
    } catch (error) {
      return Promise.reject(error)
    }
    if (signal?.aborted) return Promise.reject(signal.reason)
    const token = nextToken()
    const outcome = semAcquire(this.#fast, weight, token, priority)
    if (outcome === DONE) {
      const permit = new Permit(this, weight)
      granted?.(permit)
      return Promise.resolve(permit)
    }
    if (outcome === CLOSED) return Promise.reject(this.#closedError())
    if (outcome === TOO_HEAVY) return Promise.reject(this.#tooHeavy(weight, 'options.weight'))
    if (outcome === QUEUE_FULL) return Promise.reject(QueueFullError.waiters(this.#native.waiting))
    const wait = new PendingAcquire(this, weight, granted)
    const promise = new Promise<Permit>((resolve, reject) => {
      wait.resolve = resolve
      wait.reject = reject
    })
    if (signal !== undefined || timeout !== undefined || queued !== undefined) {
      const cancel: Cancel = (reason) => {
        if (!this.#doorbell.forget(token)) return
        wait.disconnect()
        // Gives back whatever was granted meanwhile; that may wake others.
        this.#doorbell.settle(this.#native.cancel(token))
        wait.reject(reason)
      }
      wait.disconnect = onCancellation(signal, timeout, cancel)
      queued?.(cancel)
    }
    this.#doorbell.wait(token, wait)
    return promise
  }

  /** Runs `fn` holding `weight` permits, releasing them however it ends. */
  async run<T>(fn: () => T | PromiseLike<T>, options?: AcquireOptions): Promise<Awaited<T>> {
    if (typeof fn !== 'function') throw new TypeError(`fn must be a function, got ${show(fn)}`)
    const permit = await this.acquire(options)
    try {
      return await fn()
    } finally {
      permit.release()
    }
  }

  #release(weight: number): void {
    this.#doorbell.settle(semRelease(this.#fast, weight))
  }

  /** @internal */
  static closedError(semaphore: Semaphore): ClosedError {
    return semaphore.#closedError()
  }

  #closedError(): ClosedError {
    const options = this.#closeReason === undefined ? undefined : { cause: this.#closeReason }
    return new ClosedError('semaphore closed', options)
  }

  /** @internal A queued wait refused natively: the capacity fell below its weight. */
  static refusedError(semaphore: Semaphore, weight: number): RangeError {
    const capacity = (semaphore.#capacity = semaphore.#native.capacity)
    return new RangeError(`options.weight ${weight} exceeds the capacity, which fell to ${capacity} while the wait was queued`)
  }

  /** `#validateWeight`'s RangeError, for a capacity that shrank since it was cached. */
  #tooHeavy(weight: number, name: string): RangeError {
    this.#capacity = this.#native.capacity
    return new RangeError(`${name} must be an integer between 1 and ${this.#capacity}, got ${weight}`)
  }

  #validateWeight(weight: unknown, name: string): number {
    // The cached capacity is exact unless permits were added or forgotten;
    // only then is the native one read.
    if (typeof weight === 'number' && weight > this.#capacity) this.#capacity = this.#native.capacity
    return validateInteger(weight, name, 1, this.#capacity)
  }
}

/** A queued `acquire`: one object per wait, settled by the doorbell. */
class PendingAcquire implements Wait {
  resolve!: (permit: Permit) => void
  reject!: (reason: unknown) => void
  /** Replaced when the wait has a signal or timeout to disconnect from. */
  disconnect: () => void = noCancellation
  doorbell?: Doorbell = undefined
  readonly #semaphore: Semaphore
  readonly #weight: number
  readonly #granted: ((permit: Permit) => void) | undefined

  constructor(semaphore: Semaphore, weight: number, granted: ((permit: Permit) => void) | undefined) {
    this.#semaphore = semaphore
    this.#weight = weight
    this.#granted = granted
  }

  onGrant(): void {
    this.disconnect()
    const permit = new Permit(this.#semaphore, this.#weight)
    this.#granted?.(permit)
    this.resolve(permit)
  }

  onWithdrawn(): void {
    this.disconnect()
    this.reject(Semaphore.closedError(this.#semaphore))
  }

  onRefused(): void {
    this.disconnect()
    this.reject(Semaphore.refusedError(this.#semaphore, this.#weight))
  }
}

/** What an uncancellable wait disconnects: nothing. */
function noCancellation(): void {}
