import { validateOptions, type Fairness } from '../validate.js'
import type { LockOptions } from '../mutex.js'
import type { RedisSemaphoreMetrics } from './metrics.js'
import type { RedisPermit } from './permit.js'
import { RedisSemaphore } from './semaphore.js'
import type { RedisStore } from './store.js'

export interface RedisMutexOptions {
  /** As the Redis semaphore's: accepted, served FIFO (see `RedisSemaphoreOptions.fairness`). */
  fairness?: Fairness
  store: RedisStore
}

/**
 * A mutual-exclusion lock in Redis: a semaphore of one permit, shared by
 * every process that opens its name on the same server. `Mutex`'s methods;
 * `tryLock` and `isLocked` need a round trip (promises). The guard's
 * `signal` aborts if the lock's lease is lost while held.
 */
export class RedisMutex {
  readonly #semaphore: RedisSemaphore

  /** @internal use `Mutex.open(name, { store })` */
  constructor(store: RedisStore, name: string, options: RedisMutexOptions) {
    const { fairness } = validateOptions<RedisMutexOptions>(options, 'options')
    this.#semaphore = new RedisSemaphore(store, name, { permits: 1, fairness, store }, 'mutex')
  }

  get name(): string {
    return this.#semaphore.name
  }

  /** Resolves once the server is reached (for symmetry with the other primitives). */
  ready(): Promise<void> {
    return this.#semaphore.ready()
  }

  /** Whether some process holds the lock (or waits for it): a round trip. */
  get isLocked(): Promise<boolean> {
    return this.#semaphore.available.then((free) => free === 0)
  }

  /** Its semaphore's `metrics()` (counts of every process; `inUse` is 1 while some process holds the lock). */
  metrics(): Promise<RedisSemaphoreMetrics> {
    return this.#semaphore.metrics()
  }

  /** Waits for the lock; the guard unlocks on `release()` or disposal. */
  async lock(options?: LockOptions): Promise<RedisPermit> {
    const { signal, timeout, priority } = validateOptions<LockOptions>(options, 'options')
    return this.#semaphore.acquire({ signal, timeout, priority })
  }

  /** Takes the lock if it is free and nobody waits; otherwise `null`. A round trip. */
  tryLock(): Promise<RedisPermit | null> {
    return this.#semaphore.tryAcquire(1)
  }

  /** Runs `fn` holding the lock (its argument: the lease's signal), unlocking however it ends. */
  async runExclusive<T>(fn: (signal: AbortSignal) => T | PromiseLike<T>, options?: LockOptions): Promise<Awaited<T>> {
    const { signal, timeout, priority } = validateOptions<LockOptions>(options, 'options')
    return this.#semaphore.run(fn, { signal, timeout, priority })
  }
}
