/**
 * `sluice/compat/async-mutex`: the API of async-mutex 0.5 (`Mutex`,
 * `Semaphore`, `withTimeout`, `tryAcquire`, `E_TIMEOUT`, `E_ALREADY_LOCKED`,
 * `E_CANCELED`) with its documented semantics: weights, priorities (higher
 * first, FIFO within a priority; a request that would stand first is served
 * at once when the value allows), `cancel`, `waitForUnlock`, a value that
 * `release` and `setValue` may raise beyond the initial one, an initial
 * value below zero (that many permits are owed: released ones pay the debt
 * before anyone acquires, in every thread). Backed by a
 * native sluice semaphore, so `Semaphore.from(semaphore.handle)` (or
 * `Mutex.from`) in a worker gives the same lock, served in one queue across
 * threads.
 *
 * Where it differs (each a RangeError, never a silent change):
 * - values and weights are integers; only the initial value may be below
 *   0 (async-mutex accepts any number, e.g. `setValue(-1)`);
 * - priorities are integers in [-2^30, 2^30);
 * - `cancel()` rejects the waits queued through this object in this thread,
 *   not those of other threads.
 * Across threads (a sluice extension, so nothing to differ from): the queue
 * that `waitForUnlock` looks at is this object's in this thread, and another
 * thread's release wakes it once no acquire is queued anywhere.
 * The value in `acquire`'s `[value, release]` is exact when the permits
 * were free; for a wait that was queued it is the value when its grant is
 * collected, plus its weight.
 */
import { kAttach } from '../symbols.js'
import { internal, MAX_PERMITS, Permit, Semaphore as NativeBackedSemaphore, type Cancel, type SemaphoreHandle } from '../semaphore.js'
import { show, validateInteger } from '../validate.js'

export const E_TIMEOUT = new Error('timeout while waiting for mutex to become available')
export const E_ALREADY_LOCKED = new Error('mutex already locked')
export const E_CANCELED = new Error('request for lock canceled')

export type MutexInterface = {
  acquire(priority?: number): Promise<MutexInterface.Releaser>
  runExclusive<T>(callback: MutexInterface.Worker<T>, priority?: number): Promise<T>
  waitForUnlock(priority?: number): Promise<void>
  isLocked(): boolean
  release(): void
  cancel(): void
}

// Namespaces, as in async-mutex's own typings: code that names
// `MutexInterface.Releaser` must keep compiling after swapping the import.
// eslint-disable-next-line @typescript-eslint/no-namespace
export namespace MutexInterface {
  export type Releaser = () => void
  export type Worker<T> = () => Promise<T> | T
}

export type SemaphoreInterface = {
  acquire(weight?: number, priority?: number): Promise<[number, SemaphoreInterface.Releaser]>
  runExclusive<T>(callback: SemaphoreInterface.Worker<T>, weight?: number, priority?: number): Promise<T>
  waitForUnlock(weight?: number, priority?: number): Promise<void>
  isLocked(): boolean
  getValue(): number
  setValue(value: number): void
  release(weight?: number): void
  cancel(): void
}

// eslint-disable-next-line @typescript-eslint/no-namespace
export namespace SemaphoreInterface {
  export type Releaser = () => void
  export type Worker<T> = (value: number) => Promise<T> | T
}

const MAX_PRIORITY = 2 ** 30

/**
 * Native priorities: acquires keep theirs (within [-2^30, 2^30)); below them
 * all stands the watch that wakes `waitForUnlock` (see `#arm`), above them
 * all the request by which `setValue` takes back permits set aside for a
 * queued head.
 */
const WATCH_PRIORITY = -(2 ** 31)
const RECLAIM_PRIORITY = 2 ** 31 - 1

function validateWeight(weight: unknown): number {
  if (typeof weight === 'number' && weight <= 0) throw new RangeError(`invalid weight ${weight}: must be positive`)
  return validateInteger(weight, 'weight', 1, MAX_PERMITS)
}

function validatePriority(priority: unknown): number {
  return validateInteger(priority, 'priority', -MAX_PRIORITY, MAX_PRIORITY - 1)
}

/** An acquire queued through this object in this thread. */
interface QueuedAcquire {
  readonly weight: number
  readonly priority: number
  cancel: Cancel | undefined
}

/**
 * This object's queued acquires, in the native queue's order (higher
 * priority first, FIFO within one). Grants take entries from the front, so
 * the front is an index into the array, not a `shift()`: with 100,000 acquires
 * queued, an array shift per grant made every grant O(n) (100,000 tasks under
 * a limit ran 18x slower than before this queue existed).
 */
class AcquireQueue {
  #entries: QueuedAcquire[] = []
  #start = 0

  get length(): number {
    return this.#entries.length - this.#start
  }

  /** The `i`-th entry from the front. */
  at(i: number): QueuedAcquire | undefined {
    return this.#entries[this.#start + i]
  }

  /** Inserts after every entry of `entry.priority` or higher (O(1) when priorities are equal). */
  insert(entry: QueuedAcquire): void {
    this.#entries.splice(insertionIndex(this.#entries, entry.priority, this.#start), 0, entry)
  }

  /** Removes `entry` if queued: O(1) at the front (a grant), O(n) elsewhere (a cancel). */
  remove(entry: QueuedAcquire): void {
    if (this.#entries[this.#start] === entry) {
      this.#entries[this.#start++] = undefined as never
      if (this.#start === this.#entries.length) this.clear()
      else if (this.#start > 1024 && this.#start * 2 > this.#entries.length) {
        this.#entries = this.#entries.slice(this.#start)
        this.#start = 0
      }
      return
    }
    const i = this.#entries.indexOf(entry, this.#start)
    if (i !== -1) this.#entries.splice(i, 1)
  }

  /** Takes every entry out, front first. */
  takeAll(): QueuedAcquire[] {
    const all = this.#entries.slice(this.#start)
    this.clear()
    return all
  }

  clear(): void {
    this.#entries = []
    this.#start = 0
  }
}

/** A `waitForUnlock` not yet resolved. */
interface UnlockWaiter {
  readonly priority: number
  readonly resolve: () => void
}

/**
 * async-mutex's `findIndexFromEnd`: where an entry of `priority` goes in
 * `entries` (from `start` on), after every entry of its priority or higher.
 */
function insertionIndex(entries: readonly { readonly priority: number }[], priority: number, start = 0): number {
  let i = entries.length
  while (i > start && priority > entries[i - 1]!.priority) i--
  return i
}

export class Semaphore implements SemaphoreInterface {
  readonly #semaphore: NativeBackedSemaphore
  readonly #cancelError: Error
  /**
   * This object's queued acquires in this thread, in the native queue's
   * order (higher priority first, FIFO within one): async-mutex's `_queue`,
   * for `cancel` and for deciding which `waitForUnlock`s a change releases.
   */
  readonly #queue = new AcquireQueue()
  /** Permits acquired through this object in this thread, oldest first, for `release(weight)`. */
  readonly #held = new Set<Permit>()
  /**
   * Pending `waitForUnlock`s by weight, each list highest priority first:
   * async-mutex's `_weightedWaiters`. They are not in the native queue (there
   * a weighted head would hold back every smaller request behind it).
   */
  readonly #unlockWaiters = new Map<number, UnlockWaiter[]>()
  /** The native wait standing in for the unlock waiters, so other threads' releases wake them. */
  #watch: { weight: number; cancel: Cancel | undefined } | undefined
  /** Set while `cancel` runs: async-mutex releases no unlock waiter then. */
  #cancelling = false

  constructor(value: number, cancelError?: Error)
  /** @internal adopts a sluice semaphore (see `from`) */
  constructor(attach: typeof kAttach, cancelError: Error, semaphore: NativeBackedSemaphore)
  constructor(value: number | typeof kAttach, cancelError: Error = E_CANCELED, semaphore?: NativeBackedSemaphore) {
    if (value === kAttach) {
      this.#semaphore = semaphore!
    } else {
      validateInteger(value, 'value', -MAX_PERMITS, MAX_PERMITS)
      this.#semaphore = internal.create(value)
    }
    this.#cancelError = cancelError
  }

  /** The same semaphore in another thread (sluice extension). */
  static from(handle: SemaphoreHandle, cancelError: Error = E_CANCELED): Semaphore {
    return new Semaphore(kAttach, cancelError, NativeBackedSemaphore.from(handle))
  }

  /** A cloneable handle for `Semaphore.from` in another thread (sluice extension). */
  get handle(): SemaphoreHandle {
    return this.#semaphore.handle
  }

  acquire(weight = 1, priority = 0): Promise<[number, SemaphoreInterface.Releaser]> {
    validateWeight(weight)
    validatePriority(priority)
    const immediate = this.#semaphore.tryAcquire(weight)
    if (immediate !== null) {
      this.#held.add(immediate)
      return Promise.resolve([this.#semaphore.available + weight, this.#releaser(immediate)])
    }
    let value = 0
    const entry: QueuedAcquire = { weight, priority, cancel: undefined }
    const dequeue = () => this.#queue.remove(entry)
    const granted = (permit: Permit) => {
      dequeue()
      this.#held.add(permit)
      value = this.getValue() + weight
    }
    const queued = (withdraw: Cancel) => {
      entry.cancel = withdraw
      this.#queue.insert(entry)
    }
    return internal.acquire(this.#semaphore, { weight, priority }, granted, queued).then(
      (permit) => [value, this.#releaser(permit)],
      (error: unknown) => {
        dequeue()
        throw error
      },
    )
  }

  async runExclusive<T>(callback: SemaphoreInterface.Worker<T>, weight = 1, priority = 0): Promise<T> {
    if (typeof callback !== 'function') throw new TypeError(`callback must be a function, got ${show(callback)}`)
    const [value, release] = await this.acquire(weight, priority)
    try {
      return await callback(value)
    } finally {
      release()
    }
  }

  /**
   * Resolves once `weight` could be acquired at `priority` without waiting,
   * without acquiring it, as async-mutex decides it: when the value is raised
   * (`release`, a releaser, `setValue`) to at least `weight` with no acquire
   * of `priority` or higher queued through this object. `cancel` does not
   * reject it.
   */
  waitForUnlock(weight = 1, priority = 0): Promise<void> {
    validateWeight(weight)
    validatePriority(priority)
    const head = this.#queue.at(0)
    if ((head === undefined || head.priority < priority) && weight <= this.getValue()) return Promise.resolve()
    return new Promise((resolve) => {
      let waiters = this.#unlockWaiters.get(weight)
      if (waiters === undefined) this.#unlockWaiters.set(weight, (waiters = []))
      waiters.splice(insertionIndex(waiters, priority), 0, { priority, resolve })
      this.#arm()
    })
  }

  isLocked(): boolean {
    return this.getValue() <= 0
  }

  /**
   * Free permits, in every thread: those set aside for a waiting weighted
   * request included, those still owed (an initial value below 0) deducted.
   */
  getValue(): number {
    return internal.value(this.#semaphore)
  }

  setValue(value: number): void {
    validateInteger(value, 'value', 0, MAX_PERMITS)
    const current = this.getValue()
    this.#changeValue(value, () => {
      if (value > current) internal.releaseUnowned(this.#semaphore, value - current)
      else if (value < current) this.#lower(current - value)
    })
  }

  /**
   * Raises the value by `weight`, serving waiters. Permits this object
   * acquired in this thread are given back first (so a worker that dies
   * later does not return them twice), the rest are added; their releasers
   * still raise the value when called, as in async-mutex.
   */
  release(weight = 1): void {
    validateWeight(weight)
    this.#changeValue(this.getValue() + weight, () => {
      let rest = weight
      for (const permit of this.#held) {
        if (permit.weight > rest) continue
        this.#held.delete(permit)
        permit.release()
        rest -= permit.weight
        if (rest === 0) return
      }
      internal.releaseUnowned(this.#semaphore, rest)
    })
  }

  /** Rejects every acquire this object has queued in this thread with the cancel error. */
  cancel(): void {
    // Last first: withdrawing a head gives back the permits set aside for
    // it, which must not reach a wait of ours that is about to be withdrawn.
    const queued = this.#queue.takeAll().reverse()
    this.#cancelling = true
    try {
      for (const entry of queued) entry.cancel?.(this.#cancelError)
    } finally {
      this.#cancelling = false
    }
  }

  #releaser(permit: Permit): SemaphoreInterface.Releaser {
    let called = false
    return () => {
      if (called) return
      called = true
      this.#changeValue(this.getValue() + permit.weight, () => {
        // `release(weight)` may have given this permit back already.
        if (this.#held.delete(permit)) permit.release()
        else internal.releaseUnowned(this.#semaphore, permit.weight)
      })
    }
  }

  /**
   * Takes `n` free permits out for good, those set aside for a queued head
   * included (async-mutex's value counts them): what `forgetPermits` leaves
   * is taken by a request that overtakes every wait, then forgotten.
   */
  #lower(n: number): void {
    const rest = n - this.#semaphore.forgetPermits(n)
    if (rest === 0) return
    const options = { weight: rest, priority: RECLAIM_PRIORITY }
    internal.acquire(this.#semaphore, options, (permit) => permit.forget()).catch(() => {})
  }

  /**
   * Runs `change`, which takes the value to `value`, releasing the unlock
   * waiters that async-mutex's `_dispatchQueue` would: it drains them before
   * serving the queue and after each acquire it serves. Replayed on our own
   * queue first (the native release serves it all at once), then once more on
   * what the native semaphore reports after, for other threads' waits.
   */
  #changeValue(value: number, change: () => void): void {
    if (this.#unlockWaiters.size === 0) {
      // Nothing to replay (the common case): no unlock waiter to release.
      change()
      this.#arm()
      return
    }
    let rest = value
    this.#drainUnlockWaiters(rest, this.#queue.at(0))
    for (let i = 0; i < this.#queue.length && this.#queue.at(i)!.weight <= rest; i++) {
      rest -= this.#queue.at(i)!.weight
      this.#drainUnlockWaiters(rest, this.#queue.at(i + 1))
    }
    change()
    this.#drainUnlockWaiters(this.getValue(), this.#queue.at(0))
    this.#arm()
  }

  /** async-mutex's `_drainUnlockWaiters`, heaviest first, without counting down from the value. */
  #drainUnlockWaiters(value: number, head: QueuedAcquire | undefined): void {
    // The common case, on every grant and release: nobody waits for unlock.
    if (this.#unlockWaiters.size === 0) return
    const weights = [...this.#unlockWaiters.keys()].filter((weight) => weight <= value).sort((a, b) => b - a)
    for (const weight of weights) {
      const waiters = this.#unlockWaiters.get(weight)!
      const i = head === undefined ? waiters.length : insertionIndex(waiters, head.priority + 0.5)
      for (const waiter of waiters.splice(0, i)) waiter.resolve()
      if (waiters.length === 0) this.#unlockWaiters.delete(weight)
    }
  }

  /**
   * Keeps one native wait, below every acquire, for the lightest unlock
   * waiter's weight but more than the value now: it is granted (and given
   * back at once) when the value rises that far with nothing queued, in
   * whichever thread, and then drains the unlock waiters here.
   */
  #arm(): void {
    if (this.#unlockWaiters.size === 0 && this.#watch === undefined) return
    const value = this.getValue()
    let lightest = Number.POSITIVE_INFINITY
    for (const w of this.#unlockWaiters.keys()) lightest = Math.min(lightest, w)
    const weight = Math.min(Math.max(lightest, value + 1), this.#semaphore.capacity)
    // None wanted when nobody waits for unlock, or when no rise can reach it.
    const want = lightest !== Number.POSITIVE_INFINITY && weight > value
    if (want && this.#watch?.weight === weight) return
    this.#watch?.cancel?.(undefined)
    this.#watch = undefined
    if (!want) return
    const watch: { weight: number; cancel: Cancel | undefined } = { weight, cancel: undefined }
    this.#watch = watch
    const granted = (permit: Permit) => {
      permit.release()
      if (this.#watch !== watch) return
      this.#watch = undefined
      if (!this.#cancelling) this.#drainUnlockWaiters(this.getValue(), this.#queue.at(0))
      this.#arm()
    }
    const queued = (cancel: Cancel) => (watch.cancel = cancel)
    internal.acquire(this.#semaphore, { weight, priority: WATCH_PRIORITY }, granted, queued).catch(() => {})
  }
}

export class Mutex implements MutexInterface {
  readonly #semaphore: Semaphore

  constructor(cancelError: Error = E_CANCELED, semaphore?: Semaphore) {
    this.#semaphore = semaphore ?? new Semaphore(1, cancelError)
  }

  /** The same mutex in another thread (sluice extension). */
  static from(handle: SemaphoreHandle, cancelError: Error = E_CANCELED): Mutex {
    return new Mutex(cancelError, Semaphore.from(handle, cancelError))
  }

  /** A cloneable handle for `Mutex.from` in another thread (sluice extension). */
  get handle(): SemaphoreHandle {
    return this.#semaphore.handle
  }

  async acquire(priority = 0): Promise<MutexInterface.Releaser> {
    const [, releaser] = await this.#semaphore.acquire(1, priority)
    return releaser
  }

  runExclusive<T>(callback: MutexInterface.Worker<T>, priority = 0): Promise<T> {
    if (typeof callback !== 'function') return Promise.reject(new TypeError(`callback must be a function, got ${show(callback)}`))
    return this.#semaphore.runExclusive(() => callback(), 1, priority)
  }

  isLocked(): boolean {
    return this.#semaphore.isLocked()
  }

  waitForUnlock(priority = 0): Promise<void> {
    return this.#semaphore.waitForUnlock(1, priority)
  }

  /** Unlocks if locked; unlike a semaphore's, never raises the value above 1. */
  release(): void {
    if (this.#semaphore.isLocked()) this.#semaphore.release()
  }

  cancel(): void {
    this.#semaphore.cancel()
  }
}

type Sync = MutexInterface | SemaphoreInterface

const isSemaphore = (sync: Sync): sync is SemaphoreInterface => 'getValue' in sync

/**
 * Decorates a mutex or semaphore so that `acquire` and `waitForUnlock`
 * reject with `timeoutError` after `timeout` ms. As in async-mutex, an
 * acquire that times out keeps its place and releases at once when granted.
 */
export function withTimeout(mutex: MutexInterface, timeout: number, timeoutError?: Error): MutexInterface
export function withTimeout(semaphore: SemaphoreInterface, timeout: number, timeoutError?: Error): SemaphoreInterface
export function withTimeout(sync: Sync, timeout: number, timeoutError: Error = E_TIMEOUT): Sync {
  if (typeof sync !== 'object' || sync === null || typeof sync.acquire !== 'function') {
    throw new TypeError(`sync must be a Mutex or a Semaphore, got ${show(sync)}`)
  }
  if (typeof timeout !== 'number' || Number.isNaN(timeout)) throw new TypeError(`timeout must be a number, got ${show(timeout)}`)
  const semaphore = isSemaphore(sync)
  const acquire = (weightOrPriority?: number, priority?: number): Promise<unknown> => {
    const weight = semaphore ? weightOrPriority : undefined
    if (weight !== undefined && weight <= 0) throw new RangeError(`invalid weight ${weight}: must be positive`)
    return new Promise((resolve, reject) => {
      let timedOut = false
      const timer = setTimeout(() => {
        timedOut = true
        reject(timeoutError)
      }, timeout)
      const ticket = semaphore ? sync.acquire(weight, priority) : (sync as MutexInterface).acquire(weightOrPriority)
      ticket.then(
        (granted: unknown) => {
          if (timedOut) {
            const release = Array.isArray(granted) ? (granted[1] as () => void) : (granted as () => void)
            release()
          } else {
            clearTimeout(timer)
            resolve(granted)
          }
        },
        (error: unknown) => {
          if (timedOut) return
          clearTimeout(timer)
          reject(error)
        },
      )
    })
  }
  const decorated = {
    acquire,
    async runExclusive(callback: (value?: number) => unknown, weight?: number, priority?: number) {
      const ticket = await acquire(weight, priority)
      if (Array.isArray(ticket)) {
        try {
          return await callback(ticket[0] as number)
        } finally {
          ;(ticket[1] as () => void)()
        }
      }
      try {
        return await callback()
      } finally {
        ;(ticket as () => void)()
      }
    },
    release(weight?: number) {
      sync.release(weight)
    },
    cancel() {
      sync.cancel()
    },
    waitForUnlock(weightOrPriority?: number, priority?: number): Promise<void> {
      const weight = semaphore ? weightOrPriority : undefined
      if (weight !== undefined && weight <= 0) throw new RangeError(`invalid weight ${weight}: must be positive`)
      return new Promise((resolve, reject) => {
        const timer = setTimeout(() => reject(timeoutError), timeout)
        const unlocked = semaphore ? sync.waitForUnlock(weight, priority) : (sync as MutexInterface).waitForUnlock(weightOrPriority)
        void unlocked.then(() => {
          clearTimeout(timer)
          resolve()
        })
      })
    },
    isLocked: () => sync.isLocked(),
    getValue: () => (sync as SemaphoreInterface).getValue(),
    setValue: (value: number) => (sync as SemaphoreInterface).setValue(value),
  }
  return decorated as unknown as Sync
}

/**
 * Decorates a mutex or semaphore so that `acquire` rejects with
 * `alreadyAcquiredError` unless it can be granted at once.
 */
export function tryAcquire(mutex: MutexInterface, alreadyAcquiredError?: Error): MutexInterface
export function tryAcquire(semaphore: SemaphoreInterface, alreadyAcquiredError?: Error): SemaphoreInterface
export function tryAcquire(sync: Sync, alreadyAcquiredError: Error = E_ALREADY_LOCKED): Sync {
  return withTimeout(sync as SemaphoreInterface, 0, alreadyAcquiredError)
}
