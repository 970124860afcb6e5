import { EventEmitter } from 'node:events'
import { fileURLToPath } from 'node:url'
import type { MessagePort } from 'node:worker_threads'
import { Piscina } from 'piscina'
import { onAbort } from './abort.js'
import { Errors } from './errors.js'
import { DOORBELL_SLOTS } from './native.js'
import type { PoolMessage } from './pool-worker.js'
import { poolRun, traceTask } from './diagnostics.js'
import type { Percentiles } from './metrics.js'
import { internal, Semaphore, type Permit } from './semaphore.js'
import { handlesOf, type Shareable } from './share.js'
import { show, validateInteger, validateOptions, validateSignal } from './validate.js'
import { kPoolData, type PoolWorkerData } from './worker.js'

/**
 * Most threads a pool with `share` may have: every primitive has
 * DOORBELL_SLOTS slots, one per attached thread, and the thread that made
 * the pool holds one.
 */
export const MAX_SHARING_THREADS = DOORBELL_SLOTS - 1

export interface WorkerPoolOptions {
  /** The module whose default export (or `name`d export) runs each task. */
  filename: string | URL
  /** Named export to use instead of the default. */
  name?: string
  minThreads?: number
  maxThreads?: number
  /**
   * Tasks one thread runs at once (default 1). Above 1, a thread starts its
   * next task while the last one awaits I/O (piscina's option of that name).
   */
  concurrentTasksPerWorker?: number
  /** Tasks that may wait for a thread (default: maxThreads squared). */
  maxQueue?: number
  /** Milliseconds an idle thread lives (beyond minThreads). */
  idleTimeout?: number
  /** Primitives every worker gets, by name, from `import { shared } from 'sluice/worker'`. */
  share?: Record<string, unknown>
}

export interface RunOptions {
  /** Aborting removes a queued task; a running one is stopped (its thread is replaced). */
  signal?: AbortSignal
  transferList?: readonly (ArrayBuffer | MessagePort)[]
}

export interface MapOptions {
  /** Batches in flight at once (default: 2 per thread). */
  concurrency?: number
  /** Items per dispatch (default: enough for ~4 batches per thread, at most 256). */
  batchSize?: number
  signal?: AbortSignal
}

export interface PoolMetrics {
  /** Tasks waiting for a thread. */
  queueSize: number
  /** Fraction of the pool's capacity used since it started (piscina's measure). */
  utilization: number
  completed: number
  threads: number
  /** Milliseconds, per task: time running, and time waiting for a thread. */
  runTime: Percentiles
  waitTime: Percentiles
}

export type { Percentiles } from './metrics.js'

/**
 * A pool of worker threads for CPU-bound work, on piscina. Adds what piscina
 * leaves to the caller: `submit` waits for room instead of rejecting when the
 * queue is full, `map` batches small items per dispatch and fails fast, and
 * `share` hands sluice primitives to every worker, so one limit holds across
 * the pool and the main thread.
 *
 * Emits `'error'` when a thread crashes outside any task (an exception
 * thrown from a timer its task left behind, say); the pool replaces the
 * thread. Without an `'error'` listener the crash is reported as a process
 * warning instead of ending the process.
 */
export class WorkerPool<Task = unknown, Result = unknown> extends EventEmitter implements AsyncDisposable {
  readonly #piscina: Piscina
  /**
   * Room for running + queued tasks: every task holds a permit from before it
   * is handed to piscina until it settles, so this is the pool's one bound
   * (piscina's own queue is unbounded). `run` takes room or rejects, `submit`
   * waits for it.
   */
  readonly #room: Semaphore
  readonly #maxQueue: number
  readonly #maxThreads: number
  /**
   * The shared primitives, kept alive while the pool lives: threads attach
   * by handle, and a handle to a collected primitive attaches to nothing.
   */
  // eslint-disable-next-line no-unused-private-class-members -- never read: holding it is the point
  #shared: Shareable[] | undefined

  constructor(options: WorkerPoolOptions) {
    const opts = validateOptions<WorkerPoolOptions>(options, 'options')
    const filename = opts.filename instanceof URL ? fileURLToPath(opts.filename) : opts.filename
    if (typeof filename !== 'string' || filename === '') {
      throw new TypeError(`options.filename must be a path or file URL, got ${show(opts.filename)}`)
    }
    if (opts.name !== undefined && typeof opts.name !== 'string') {
      throw new TypeError(`options.name must be a string, got ${show(opts.name)}`)
    }
    const shareOption = validateOptions<Record<string, unknown>>(opts.share, 'options.share')
    const sharing = Object.keys(shareOption).length > 0
    const maxThreads = validateInteger(opts.maxThreads ?? 4, 'options.maxThreads', 1, 1024)
    if (sharing && maxThreads > MAX_SHARING_THREADS) {
      throw new RangeError(
        `options.maxThreads must be at most ${MAX_SHARING_THREADS} when options.share is given (a shared primitive admits ${DOORBELL_SLOTS} threads, this one included), got ${maxThreads}`,
      )
    }
    const minThreads = validateInteger(opts.minThreads ?? Math.min(maxThreads, 1), 'options.minThreads', 0, maxThreads)
    const perThread = validateInteger(opts.concurrentTasksPerWorker ?? 1, 'options.concurrentTasksPerWorker', 1, 1024)
    const maxQueue = validateInteger(opts.maxQueue ?? maxThreads ** 2, 'options.maxQueue', 0, 2 ** 31 - 1)
    if (opts.idleTimeout !== undefined) validateInteger(opts.idleTimeout, 'options.idleTimeout', 0, 2 ** 31 - 1)
    const share = handlesOf(shareOption)
    const poolData: PoolWorkerData = { filename, name: opts.name, share }
    const room = maxThreads * perThread + maxQueue
    if (room > 2 ** 31 - 1) throw new RangeError(`options.maxQueue plus the threads' capacity must be below 2 ** 31, got ${room}`)
    super()
    this.#piscina = new Piscina({
      filename: require.resolve('./pool-worker.js'),
      minThreads,
      maxThreads,
      concurrentTasksPerWorker: perThread,
      // The bound is #room; piscina's queue only holds tasks that have room.
      maxQueue: Number.POSITIVE_INFINITY,
      // 'sync' (piscina's default) parks an idle thread in a blocking
      // Atomics.wait, and a wait a finished task left queued on a shared
      // primitive could then be granted but never collected: the permit
      // stranded while every other thread waits. 'async' keeps the idle
      // thread's event loop running.
      atomics: 'async',
      ...(opts.idleTimeout === undefined ? {} : { idleTimeout: opts.idleTimeout }),
      workerData: { [kPoolData]: poolData },
    })
    this.#piscina.on('error', (error: unknown) => this.#onThreadError(error))
    this.#shared = sharing ? (Object.values(shareOption) as Shareable[]) : undefined
    this.#maxThreads = maxThreads
    this.#maxQueue = maxQueue
    this.#room = new Semaphore(room)
    // The room is the pool's business: tasks are traced on `sluice.pool.run`, not as a semaphore.
    internal.untraced(this.#room)
  }

  /**
   * Runs `task` on a thread. Rejects at once with a `QueueFullError` if the
   * queue is full (see `submit`), with an AbortError if aborted.
   */
  run(task: Task, options?: RunOptions): Promise<Result> {
    let signal: AbortSignal | undefined, transferList: RunOptions['transferList']
    try {
      ;({ signal, transferList } = validateRunOptions(options))
    } catch (error) {
      return Promise.reject(error)
    }
    return this.#runWithRoom({ task }, signal, transferList) as Promise<Result>
  }

  /**
   * Queues `task`, first waiting for room if the queue is full
   * (backpressure), whichever calls filled it. Resolves once the task is
   * queued, with its result promise.
   */
  async submit(task: Task, options?: RunOptions): Promise<{ result: Promise<Result> }> {
    const { signal, transferList } = validateRunOptions(options)
    if (this.#room.closed) throw Errors.poolClosed()
    const permit = await this.#room.acquire({ signal })
    const result = this.#run({ task } satisfies PoolMessage, signal, transferList, permit)
    // The caller may never look at the result; its rejection must not crash the process.
    result.catch(() => {})
    return { result: result as Promise<Result> }
  }

  /**
   * Runs the task function over `items` and resolves with the results in
   * input order. Items go to the threads in batches (one dispatch each), so
   * small items cost far less than one `run` each. Fails fast: the first
   * error rejects, and batches still queued are cancelled.
   */
  async map(items: Iterable<Task>, options?: MapOptions): Promise<Result[]> {
    if (items === null || items === undefined || typeof (items as Iterable<Task>)[Symbol.iterator] !== 'function') {
      throw new TypeError(`items must be iterable, got ${show(items)}`)
    }
    const list = Array.from(items)
    const opts = validateOptions<MapOptions>(options, 'options')
    const signal = validateSignal(opts.signal, 'options.signal')
    const concurrency = validateInteger(opts.concurrency ?? this.#maxThreads * 2, 'options.concurrency', 1, 2 ** 31 - 1)
    const batchSize = validateInteger(
      opts.batchSize ?? Math.min(256, Math.max(1, Math.ceil(list.length / (this.#maxThreads * 4)))),
      'options.batchSize',
      1,
      2 ** 31 - 1,
    )
    signal?.throwIfAborted()
    const failed = new AbortController()
    const cancel = signal === undefined ? failed.signal : AbortSignal.any([signal, failed.signal])
    const results: Result[] = new Array(list.length)
    let next = 0
    const worker = async (): Promise<void> => {
      while (next < list.length && !cancel.aborted) {
        const start = next
        next += batchSize
        const batch = list.slice(start, start + batchSize)
        // Batches wait for room as `submit` does: `map` is backpressure too.
        const permit = await this.#room.acquire({ signal: cancel })
        const out = (await this.#run({ batch }, cancel, undefined, permit)) as Result[]
        for (let i = 0; i < out.length; i++) results[start + i] = out[i]!
      }
    }
    try {
      await Promise.all(
        Array.from({ length: Math.min(concurrency, Math.ceil(list.length / batchSize)) }, () =>
          worker().catch((error: unknown) => {
            failed.abort(error)
            throw error
          }),
        ),
      )
    } catch (error) {
      // The first failure wins; the rest are cancellations it caused.
      throw failed.signal.aborted ? failed.signal.reason : error
    }
    return results
  }

  /** Waits for queued and running tasks to finish, then stops the threads. */
  async close(): Promise<void> {
    await this.#piscina.close()
    this.#stopped()
  }

  /** Stops now: queued tasks are rejected, running ones are stopped. */
  async destroy(): Promise<void> {
    await this.#piscina.destroy()
    this.#stopped()
  }

  #stopped(): void {
    this.#room.close()
    this.#shared = undefined
  }

  [Symbol.asyncDispose](): Promise<void> {
    return this.close()
  }

  get queueSize(): number {
    return this.#piscina.queueSize
  }

  get metrics(): PoolMetrics {
    const { runTime, waitTime } = this.#piscina.histogram
    const pick = (h: typeof runTime): Percentiles => ({ mean: h.mean, p50: h.p50, p90: h.p90, p99: h.p99, max: h.max })
    return {
      queueSize: this.#piscina.queueSize,
      utilization: this.#piscina.utilization,
      completed: this.#piscina.completed,
      threads: this.#piscina.threads.length,
      runTime: pick(runTime),
      waitTime: pick(waitTime),
    }
  }

  #onThreadError(error: unknown): void {
    if (this.listenerCount('error') > 0) this.emit('error', error)
    else process.emitWarning(error instanceof Error ? error : String(error), { code: 'SLUICE_POOL_THREAD_ERROR' })
  }

  /** `#run` if there is room for one more task; a QueueFullError otherwise. */
  #runWithRoom(message: PoolMessage, signal: AbortSignal | undefined, transferList: RunOptions['transferList']): Promise<unknown> {
    if (signal?.aborted) return Promise.reject(signal.reason)
    if (this.#room.closed) return Promise.reject(Errors.poolClosed())
    const permit = this.#room.tryAcquire()
    if (permit === null) return Promise.reject(Errors.poolQueueFull(this.#maxQueue))
    return this.#run(message, signal, transferList, permit)
  }

  /**
   * Hands a task holding `permit` (its room) to piscina; the room is given
   * back when the task settles. piscina adds an 'abort' listener per task to
   * the signal it is given, and Node scans a signal's listeners on every add
   * and remove: 20,000 tasks sharing one signal ran 3x slower and warned.
   * So each task gets a signal of its own, fed by our one listener per
   * shared signal (`onAbort`).
   */
  #run(message: PoolMessage, signal: AbortSignal | undefined, transferList: RunOptions['transferList'], permit: Permit): Promise<unknown> {
    if (poolRun.hasSubscribers) {
      const context = { pool: this, ...message }
      return traceTask(poolRun, context, this.#dispatch, this, message, signal, transferList, permit)
    }
    return this.#dispatch(message, signal, transferList, permit)
  }

  #dispatch(message: PoolMessage, signal: AbortSignal | undefined, transferList: RunOptions['transferList'], permit: Permit): Promise<unknown> {
    let taskSignal: AbortSignal | null = signal ?? null
    let detach: (() => void) | undefined
    if (signal !== undefined && !signal.aborted) {
      const own = new AbortController()
      detach = onAbort(signal, () => own.abort(signal.reason))
      taskSignal = own.signal
    }
    return this.#piscina.run(message, { signal: taskSignal, transferList: transferList as never }).finally(() => {
      detach?.()
      permit.release()
    })
  }
}

function validateRunOptions(options: unknown): { signal?: AbortSignal; transferList?: RunOptions['transferList'] } {
  const opts = validateOptions<RunOptions>(options, 'options')
  if (opts.transferList !== undefined && !Array.isArray(opts.transferList)) {
    throw new TypeError(`options.transferList must be an array, got ${show(opts.transferList)}`)
  }
  return { signal: validateSignal(opts.signal, 'options.signal'), transferList: opts.transferList }
}
