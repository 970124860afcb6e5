/**
 * `sluice/worker`: inside a WorkerPool worker, the primitives the pool was
 * given as `share`, attached to this thread:
 *
 *     import { shared } from 'sluice/worker'
 *     await shared.db.run(() => query())   // the pool's own Semaphore
 */
import { workerData } from 'node:worker_threads'
import { fromHandles, type ShareableHandle } from './share.js'

/** Where WorkerPool puts its data in `workerData`. */
export const kPoolData = 'sluice:pool'

export interface PoolWorkerData {
  filename: string
  name: string | undefined
  share: Record<string, ShareableHandle>
}

const data = (workerData as Record<string, PoolWorkerData> | null | undefined)?.[kPoolData]

/**
 * @internal Why this pool thread could not attach the shared primitives
 * (undefined if it could). The pool rejects every task of such a thread with
 * it: a throw here would kill the thread at start-up, and piscina reports
 * that as an 'error' event, not as failed tasks.
 */
export let attachError: Error | undefined

function attach(handles: Record<string, ShareableHandle>): Record<string, unknown> {
  try {
    return fromHandles(handles)
  } catch (error) {
    attachError = error as Error
    return {}
  }
}

/**
 * The shared primitives by the names given in `WorkerPool({ share })`; empty
 * outside a pool worker. Typed loosely: cast to what you shared.
 */
// eslint-disable-next-line @typescript-eslint/no-explicit-any -- the names and kinds are the caller's
export const shared: Record<string, any> = data === undefined ? {} : attach(data.share)
