// The file piscina runs in each pool thread: loads the user's task function
// (once) and runs single tasks and `map` batches with it. Importing
// `./worker.js` first attaches the shared primitives.
import { pathToFileURL } from 'node:url'
import { workerData } from 'node:worker_threads'
import { attachError, kPoolData, type PoolWorkerData } from './worker.js'

type TaskFunction = (task: unknown) => unknown

/** What the pool posts: one task, or a batch of `map` items. */
export type PoolMessage = { task: unknown } | { batch: unknown[] }

const { filename, name } = (workerData as Record<string, PoolWorkerData>)[kPoolData]!
let loaded: Promise<TaskFunction> | undefined

function load(): Promise<TaskFunction> {
  const url = filename.startsWith('file:') ? filename : pathToFileURL(filename).href
  loaded ??= import(url).then((module: Record<string, unknown>) => {
    const fn = name === undefined ? (module.default ?? module) : module[name]
    if (typeof fn !== 'function') throw new TypeError(`${filename} exports no function ${name ?? 'default'}`)
    return fn as TaskFunction
  })
  return loaded
}

export default async function dispatch(message: PoolMessage): Promise<unknown> {
  if (attachError !== undefined) throw attachError
  const fn = await load()
  if ('batch' in message) {
    const results = new Array(message.batch.length)
    // One item after another: a batch is one dispatch, not more parallelism.
    for (let i = 0; i < message.batch.length; i++) results[i] = await fn(message.batch[i])
    return results
  }
  return fn(message.task)
}
