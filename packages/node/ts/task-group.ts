import { onAbort } from './abort.js'
import { Semaphore } from './semaphore.js'
import { show, validateInteger, validateOptions, validateSignal } from './validate.js'

export interface TaskGroupOptions {
  /** Cancels every task of the group when it aborts. */
  signal?: AbortSignal
  /** Most tasks running at once; the rest wait their turn (default: unbounded). */
  concurrency?: number
}

export interface JoinOptions {
  /** `'failFast'` (default): reject with the first error. `'allSettled'`: resolve with every outcome. */
  mode?: 'failFast' | 'allSettled'
}

/**
 * Structured concurrency: every task spawned in a group is finished by the
 * time `join()` (or `await using` disposal) returns. The first failure aborts
 * the group's `signal`, which every task receives, so siblings stop early.
 *
 *     await using group = new TaskGroup({ signal })
 *     group.spawn((signal) => fetchA(signal))
 *     group.spawn((signal) => fetchB(signal))
 *     await group.join()
 */
export class TaskGroup implements AsyncDisposable {
  readonly #controller = new AbortController()
  readonly #tasks: Promise<unknown>[] = []
  readonly #errors: unknown[] = []
  readonly #limit: Semaphore | undefined
  readonly #detach: () => void
  #joined = false

  constructor(options?: TaskGroupOptions) {
    const opts = validateOptions<TaskGroupOptions>(options, 'options')
    const outer = validateSignal(opts.signal, 'options.signal')
    if (opts.concurrency !== undefined) {
      this.#limit = new Semaphore(validateInteger(opts.concurrency, 'options.concurrency', 1, 2 ** 31 - 1))
    }
    if (outer?.aborted) this.#controller.abort(outer.reason)
    // One listener on the outer signal however many groups share it.
    this.#detach = outer === undefined ? () => {} : onAbort(outer, () => this.#controller.abort(outer.reason))
  }

  /** Aborted on the first failure, on the outer signal, or by `abort()`. */
  get signal(): AbortSignal {
    return this.#controller.signal
  }

  /**
   * Starts `fn(signal)` in the group and returns its promise. Its failure
   * fails the group; the returned promise is marked handled, so ignoring it
   * cannot crash the process (the error surfaces from `join`).
   *
   * @throws {TypeError} after `join` (the group is closed to new tasks)
   */
  spawn<T>(fn: (signal: AbortSignal) => T | PromiseLike<T>): Promise<Awaited<T>> {
    if (typeof fn !== 'function') throw new TypeError(`fn must be a function, got ${show(fn)}`)
    if (this.#joined) throw new TypeError('cannot spawn into a TaskGroup after join()')
    const signal = this.#controller.signal
    const task = (async (): Promise<Awaited<T>> => {
      const permit = this.#limit === undefined ? undefined : await this.#limit.acquire({ signal })
      try {
        signal.throwIfAborted()
        return await fn(signal)
      } finally {
        permit?.release()
      }
    })()
    task.catch((error: unknown) => {
      this.#errors.push(error)
      this.#controller.abort(error)
    })
    this.#tasks.push(task)
    return task
  }

  /** Cancels every task (their signal aborts with `reason`). */
  abort(reason?: unknown): void {
    this.#controller.abort(reason)
  }

  /**
   * Waits for every task, including ones spawned while waiting. Rejects with
   * the first error (the others are on `error.errors` when there are several:
   * an `AggregateError` whose `cause` is the first), or with
   * `{ mode: 'allSettled' }` resolves with every outcome.
   */
  async join(options?: JoinOptions): Promise<PromiseSettledResult<unknown>[]> {
    const { mode = 'failFast' } = validateOptions<JoinOptions>(options, 'options')
    if (mode !== 'failFast' && mode !== 'allSettled') {
      throw new TypeError(`options.mode must be 'failFast' or 'allSettled', got ${show(mode)}`)
    }
    let settled: PromiseSettledResult<unknown>[] = []
    // Tasks may spawn tasks: wait until a pass finds nothing new.
    for (let seen = -1; seen !== this.#tasks.length; ) {
      seen = this.#tasks.length
      settled = await Promise.allSettled(this.#tasks)
    }
    this.#joined = true
    this.#detach()
    if (mode === 'allSettled' || this.#errors.length === 0) return settled
    const [first] = this.#errors
    if (this.#errors.length === 1) throw first
    throw new AggregateError(this.#errors, `${this.#errors.length} tasks failed`, { cause: first })
  }

  /** `await using`: joins (failing fast) unless `join` already ran. */
  async [Symbol.asyncDispose](): Promise<void> {
    if (!this.#joined) await this.join()
  }
}
