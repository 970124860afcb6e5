import { fileURLToPath } from 'node:url'
import type { MessagePort } from 'node:worker_threads'
import { Piscina } from 'piscina'
import { onAbort } from './abort.js'
import type { PoolMessage } from './pool-worker.js'
import { Semaphore } from './semaphore.js'
import { handlesOf } from './share.js'
import { show, validateInteger, validateOptions, validateSignal } from './validate.js'
import { kPoolData, type PoolWorkerData } from './worker.js'

export interface WorkerPoolOptions {
  /** The module whose default export (or `name`d export) runs each task. */
  filename: string | URL
  /** Named export to use instead of the default. */
  name?: string
  minThreads?: number
  maxThreads?: number
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

export interface Percentiles {
  mean: number
  p50: number
  p90: number
  p99: number
  max: number
}

/**
 * A pool of worker threads for CPU-bound work, on piscina. Adds what piscina
 * leaves to the caller: `submit` waits for room instead of rejecting when the
 * queue is full, `map` batches small items per dispatch and fails fast, and
 * `share` hands sluice primitives to every worker, so one limit holds across
 * the pool and the main thread.
 */
export class WorkerPool<Task = unknown, Result = unknown> implements AsyncDisposable {
  readonly #piscina: Piscina
  /** Room for running + queued tasks, which `submit` waits on. */
  readonly #room: Semaphore
  readonly #maxThreads: number

  constructor(options: WorkerPoolOptions) {
    const opts = validateOptions<WorkerPoolOptions>(options, 'options')
    const filename = opts.filename instanceof URL ? fileURLToPath(opts.filename) : opts.filename
    if (typeof filename !== 'string' || filename === '') {
      throw new TypeError(`options.filename must be a path or file URL, got ${show(opts.filename)}`)
    }
    if (opts.name !== undefined && typeof opts.name !== 'string') {
      throw new TypeError(`options.name must be a string, got ${show(opts.name)}`)
    }
    const maxThreads = validateInteger(opts.maxThreads ?? 4, 'options.maxThreads', 1, 1024)
    const minThreads = validateInteger(opts.minThreads ?? Math.min(maxThreads, 1), 'options.minThreads', 0, maxThreads)
    const maxQueue = validateInteger(opts.maxQueue ?? maxThreads ** 2, 'options.maxQueue', 0, 2 ** 31 - 1)
    if (opts.idleTimeout !== undefined) validateInteger(opts.idleTimeout, 'options.idleTimeout', 0, 2 ** 31 - 1)
    const share = handlesOf(validateOptions<Record<string, unknown>>(opts.share, 'options.share'))
    const poolData: PoolWorkerData = { filename, name: opts.name, share }
    this.#piscina = new Piscina({
      filename: require.resolve('./pool-worker.js'),
      minThreads,
      maxThreads,
      maxQueue,
      ...(opts.idleTimeout === undefined ? {} : { idleTimeout: opts.idleTimeout }),
      workerData: { [kPoolData]: poolData },
    })
    this.#maxThreads = maxThreads
    this.#room = new Semaphore(maxThreads + Math.max(maxQueue, 0) || 1)
  }

  /**
   * Runs `task` on a thread. Rejects at once if the queue is full (see
   * `submit`), with `signal.reason`-like AbortError if aborted.
   */
  run(task: Task, options?: RunOptions): Promise<Result> {
    let signal: AbortSignal | undefined, transferList: RunOptions['transferList']
    try {
      ;({ signal, transferList } = validateRunOptions(options))
    } catch (error) {
      return Promise.reject(error)
    }
    return this.#run({ task }, signal, transferList) as Promise<Result>
  }

  /**
   * Queues `task`, first waiting for room if the queue is full
   * (backpressure). Resolves once the task is queued, with its result promise.
   */
  async submit(task: Task, options?: RunOptions): Promise<{ result: Promise<Result> }> {
    const { signal, transferList } = validateRunOptions(options)
    const permit = await this.#room.acquire({ signal })
    const result = this.#run({ task } satisfies PoolMessage, signal, transferList).finally(() => permit.release())
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
        const out = (await this.#run({ batch }, cancel, undefined)) as Result[]
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
    this.#room.close()
  }

  /** Stops now: queued tasks are rejected, running ones are stopped. */
  async destroy(): Promise<void> {
    await this.#piscina.destroy()
    this.#room.close()
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

  /**
   * Hands a task to piscina. piscina adds an 'abort' listener per task to
   * the signal it is given, and Node scans a signal's listeners on every add
   * and remove: 20,000 tasks sharing one signal ran 3x slower and warned.
   * So each task gets a signal of its own, fed by our one listener per
   * shared signal (`onAbort`).
   */
  #run(message: PoolMessage, signal: AbortSignal | undefined, transferList: RunOptions['transferList']): Promise<unknown> {
    if (signal === undefined || signal.aborted) {
      return this.#piscina.run(message, { signal: signal ?? null, transferList: transferList as never })
    }
    const own = new AbortController()
    const detach = onAbort(signal, () => own.abort(signal.reason))
    return this.#piscina.run(message, { signal: own.signal, transferList: transferList as never }).finally(detach)
  }
}

function validateRunOptions(options: unknown): { signal?: AbortSignal; transferList?: RunOptions['transferList'] } {
  const opts = validateOptions<RunOptions>(options, 'options')
  if (opts.transferList !== undefined && !Array.isArray(opts.transferList)) {
    throw new TypeError(`options.transferList must be an array, got ${show(opts.transferList)}`)
  }
  return { signal: validateSignal(opts.signal, 'options.signal'), transferList: opts.transferList }
}
