/**
 * `sluice/compat/p-limit`: the API of p-limit 7 (`pLimit`, `activeCount`,
 * `pendingCount`, settable `concurrency`, `clearQueue`, `map`,
 * `limitFunction`, `rejectOnClear`), backed by a sluice Semaphore. Swap the
 * import and code keeps working; pass `{ semaphore: Semaphore.from(handle) }`
 * and the limit holds across threads.
 */
import { internal, MAX_PERMITS, Semaphore, type RunHooks } from '../semaphore.js'

export interface Options {
  /** Most promises running at once (an integer >= 1, or Infinity). */
  readonly concurrency?: number
  /** Reject the promises `clearQueue` discards (with an AbortError) instead of leaving them pending. */
  readonly rejectOnClear?: boolean
  /**
   * sluice extension: the semaphore that bounds concurrency, e.g. one shared
   * with other threads (`Semaphore.from(handle)`). `concurrency` defaults to
   * its capacity; setting `concurrency` changes it for every thread.
   */
  readonly semaphore?: Semaphore
}

export interface LimitFunction {
  <Arguments extends unknown[], ReturnType>(
    fn: (...arguments_: Arguments) => PromiseLike<ReturnType> | ReturnType,
    ...arguments_: Arguments
  ): Promise<ReturnType>
  /** Promises running now (in this limiter). */
  readonly activeCount: number
  /** Promises waiting to run (in this limiter). */
  readonly pendingCount: number
  /** The limit; setting it takes effect at once. */
  concurrency: number
  /** Discards the promises waiting to run (running ones continue). */
  clearQueue(): void
  /** Runs `fn(value, index)` over `iterable` under the limit; results in order. */
  map<Input, ReturnType>(
    iterable: Iterable<Input>,
    fn: (value: Input, index: number) => PromiseLike<ReturnType> | ReturnType,
  ): Promise<ReturnType[]>
}

/**
 * The semaphore's capacity for a concurrency: `Infinity` is as many permits
 * as a semaphore can have, so every running function holds a permit whatever
 * the limit was when it started, and lowering the limit from `Infinity`
 * counts those already running as lowering it from any number does.
 */
const permitsFor = (concurrency: number): number => (concurrency === Number.POSITIVE_INFINITY ? MAX_PERMITS : concurrency)

function validateConcurrency(concurrency: unknown): asserts concurrency is number {
  if (!((Number.isInteger(concurrency) || concurrency === Number.POSITIVE_INFINITY) && (concurrency as number) > 0)) {
    throw new TypeError('Expected `concurrency` to be a number from 1 and up')
  }
}

export default function pLimit(options: number | Options): LimitFunction {
  let concurrency: number
  let rejectOnClear = false
  let semaphore: Semaphore | undefined
  if (typeof options === 'object' && options !== null) {
    ;({ rejectOnClear = false, semaphore } = options)
    if (semaphore !== undefined && !(semaphore instanceof Semaphore)) {
      throw new TypeError('Expected `semaphore` to be a sluice Semaphore')
    }
    concurrency = options.concurrency ?? semaphore?.capacity ?? Number.NaN
  } else {
    concurrency = options
  }
  validateConcurrency(concurrency)
  if (typeof rejectOnClear !== 'boolean') throw new TypeError('Expected `rejectOnClear` to be a boolean')
  if (semaphore !== undefined && concurrency !== semaphore.capacity) {
    throw new TypeError('Expected `concurrency` to equal the capacity of `semaphore`')
  }
  const limiter = semaphore ?? new Semaphore(permitsFor(concurrency))

  let activeCount = 0
  /** Permits to give up as running tasks finish, after `concurrency` was lowered. */
  let debt = 0
  /** Calls queued in this limiter (the semaphore's queue keeps them, in order). */
  let pendingCount = 0
  // One hooks object per limiter: a call costs the semaphore's `run` and no closure of its own.
  const hooks: RunHooks = {
    // Counted active when the permit is granted, synchronously (within the
    // call, or within the release that hands it over), as p-limit counts a
    // call active when it dequeues it; fn itself runs a microtask later.
    granted(queued) {
      if (queued) pendingCount--
      activeCount++
    },
    queued() {
      pendingCount++
    },
    finished() {
      activeCount--
      if (debt === 0) return false
      debt--
      return true
    },
  }

  /** The limit the semaphore's capacity stands for (behind `concurrency` for a microtask after raising it). */
  let applied = concurrency
  /** Brings the semaphore's capacity to `concurrency`. */
  const applyConcurrency = (): void => {
    const from = permitsFor(applied)
    const to = permitsFor(concurrency)
    applied = concurrency
    if (to > from) {
      let add = to - from
      const repaid = Math.min(debt, add)
      debt -= repaid
      // Another thread sharing the semaphore may have raised it already.
      add = Math.min(add - repaid, MAX_PERMITS - limiter.capacity)
      if (add > 0) limiter.addPermits(add)
    } else if (to < from) {
      const remove = from - to
      debt += remove - limiter.forgetPermits(remove)
    }
  }

  // As p-limit: the call's promise follows the function's (its rejection
  // reaches the caller), and the call counts as done when that settles.
  const generator = <Arguments extends unknown[], R>(
    fn: (...arguments_: Arguments) => PromiseLike<R> | R,
    ...arguments_: Arguments
  ): Promise<R> =>
    // Without arguments `fn` itself is run (called with no `this`, as here):
    // no closure per call, and no context either (the closure is made in
    // a function of its own, so this one captures nothing per call).
    internal.run(limiter, arguments_.length === 0 ? (fn as () => PromiseLike<R> | R) : applying(fn, arguments_), hooks) as Promise<R>

  Object.defineProperties(generator, {
    activeCount: { get: () => activeCount },
    pendingCount: { get: () => pendingCount },
    clearQueue: {
      value(): void {
        // Without `rejectOnClear` the discarded calls' promises never settle, as p-limit's.
        const reason = rejectOnClear ? AbortSignal.abort().reason : undefined
        pendingCount = 0
        internal.withdrawRuns(limiter, hooks, reason)
      },
    },
    concurrency: {
      get: () => concurrency,
      set(next: number) {
        validateConcurrency(next)
        concurrency = next
        // As p-limit: a lower limit holds at once, a higher one starts the
        // waiting calls a microtask later (they stay pending until then).
        if (permitsFor(next) < permitsFor(applied)) applyConcurrency()
        else if (permitsFor(next) > permitsFor(applied)) queueMicrotask(applyConcurrency)
      },
    },
    map: {
      async value<Input, R>(iterable: Iterable<Input>, fn: (value: Input, index: number) => PromiseLike<R> | R) {
        const promises: Promise<R>[] = []
        try {
          Array.from(iterable, (value, index) => {
            const promise = generator(fn, value, index)
            promises.push(promise)
            return promise
          })
        } catch (error) {
          for (const promise of promises) promise.catch(() => {})
          throw error
        }
        return Promise.all(promises)
      },
    },
  })
  return generator as LimitFunction
}

/** `fn` called with `arguments_`, as a function of no arguments. */
function applying<Arguments extends unknown[], R>(fn: (...arguments_: Arguments) => R, arguments_: Arguments): () => R {
  return () => fn(...arguments_)
}

/** `fn` wrapped so that calls run under a limit of their own (p-limit's `limitFunction`). */
export function limitFunction<Arguments extends unknown[], ReturnType>(
  fn: (...arguments_: Arguments) => PromiseLike<ReturnType> | ReturnType,
  options: Options,
): ((...arguments_: Arguments) => Promise<ReturnType>) & { clearQueue(): void } {
  const limit = pLimit(options)
  const limited = (...arguments_: Arguments): Promise<ReturnType> => limit(() => fn(...arguments_))
  return Object.defineProperty(limited, 'clearQueue', { value: limit.clearQueue }) as typeof limited & {
    clearQueue(): void
  }
}
