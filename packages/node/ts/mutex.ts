import type { OpenSemaphoreOptions } from './named.js'
import { Permit, Semaphore, type AcquireOptions, type SemaphoreHandle, type SemaphoreMetrics } from './semaphore.js'
import { openInStore, type Store } from './open.js'
import { kOpenMutex } from './symbols.js'
import { show, validateOptions, type Fairness } from './validate.js'

export type LockOptions = Omit<AcquireOptions, 'weight'>

/** `Mutex.open`'s options: a named semaphore's, with one permit. */
export type OpenMutexOptions = Omit<OpenSemaphoreOptions, 'permits'>

/** A cloneable description of a mutex, for `Mutex.from` in another thread. */
export interface MutexHandle {
  readonly kind: 'sluice:Mutex'
  readonly semaphore: SemaphoreHandle
}

/**
 * A mutual-exclusion lock shared across threads: a semaphore of one permit,
 * with the vocabulary of locks. Waiters are served higher `priority` first,
 * in arrival order within a priority.
 */
export class Mutex {
  readonly #semaphore: Semaphore

  constructor(semaphore: Semaphore = new Semaphore(1)) {
    if (!(semaphore instanceof Semaphore)) {
      throw new TypeError(`semaphore must be a Semaphore, got ${show(semaphore)}`)
    }
    if (semaphore.capacity !== 1) {
      throw new RangeError(`a Mutex needs a semaphore of 1 permit, got ${semaphore.capacity}`)
    }
    this.#semaphore = semaphore
  }

  /** The mutex that `handle` describes, attached to this thread. */
  static from(handle: MutexHandle): Mutex {
    const { kind, semaphore } = validateOptions<MutexHandle>(handle, 'handle')
    if (kind !== 'sluice:Mutex' || semaphore === undefined) {
      throw new TypeError(`handle must be a Mutex handle (mutex.handle), got ${show(handle)}`)
    }
    return new Mutex(Semaphore.from(semaphore))
  }

  /**
   * The mutex every process of this machine gets for `name`: a named
   * semaphore of one permit (`Semaphore.open(name, { permits: 1 })` opens
   * the same lock). See `Semaphore.open`.
   */
  static open(name: string, options?: OpenMutexOptions): Mutex
  /** The mutex named `name` in `options.store` (`redis(client)` from `sluice/redis`). */
  static open<S>(name: string, options: { fairness?: Fairness; store: Store<typeof kOpenMutex, S> }): S
  static open(name: string, options?: OpenMutexOptions | { store: unknown }): unknown {
    const stored = openInStore(kOpenMutex, name, options)
    if (stored !== undefined) return stored
    const opts = validateOptions<OpenMutexOptions>(options, 'options')
    return new Mutex(Semaphore.open(name, { ...opts, permits: 1 }))
  }

  /** Frees the name of a named mutex (see `Semaphore.unlink`). */
  static unlink(name: string, options?: Pick<OpenMutexOptions, 'dir'>): boolean {
    return Semaphore.unlink(name, options)
  }

  get handle(): MutexHandle {
    return { kind: 'sluice:Mutex', semaphore: this.#semaphore.handle }
  }

  /** Whether some thread holds the lock (or is queued for it). */
  get isLocked(): boolean {
    return this.#semaphore.available === 0
  }

  /** Waits for the lock; the returned guard unlocks on `release()` or disposal. */
  lock(options?: LockOptions): Promise<Permit> {
    // Not an async function: the semaphore's promise is returned as it is,
    // without a frame and a promise more, and a call without options takes
    // the semaphore's inlinable path. Bad options still reject, never throw.
    if (options === undefined) return this.#semaphore.acquire()
    let checked: Partial<LockOptions>
    try {
      checked = validateOptions<LockOptions>(options, 'options')
    } catch (error) {
      return Promise.reject(error)
    }
    const { signal, timeout, priority } = checked
    return this.#semaphore.acquire({ signal, timeout, priority })
  }

  /** Its semaphore's `metrics()`: `inUse` is 1 while some thread holds the lock. */
  metrics(): SemaphoreMetrics {
    return this.#semaphore.metrics()
  }

  /** Takes the lock if it is free and nobody is queued; otherwise `null`. */
  tryLock(): Permit | null {
    return this.#semaphore.tryAcquire(1)
  }

  /** Runs `fn` holding the lock, unlocking however it ends. */
  runExclusive<T>(fn: () => T | PromiseLike<T>, options?: LockOptions): Promise<Awaited<T>> {
    // Not async, as `lock`: `run` already rejects rather than throws.
    if (options === undefined) return this.#semaphore.run(fn)
    let checked: Partial<LockOptions>
    try {
      checked = validateOptions<LockOptions>(options, 'options')
    } catch (error) {
      return Promise.reject(error)
    }
    const { signal, timeout, priority } = checked
    return this.#semaphore.run(fn, { signal, timeout, priority })
  }
}
