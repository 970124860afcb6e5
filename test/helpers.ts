import { once } from 'node:events'
import { Worker } from 'node:worker_threads'

export const fixture = (name: string): URL => new URL(`./fixtures/${name}`, import.meta.url)

/** Starts a worker on a fixture and resolves with its exit code. */
export function runWorker(name: string, workerData: unknown): { worker: Worker; exited: Promise<number> } {
  const worker = new Worker(fixture(name), { workerData })
  const errored = once(worker, 'error').then(([error]) => Promise.reject(error))
  const exited = Promise.race([once(worker, 'exit').then(([code]) => code as number), errored])
  return { worker, exited }
}

/**
 * Starts a worker on `code` (evaluated as CommonJS) and resolves with its exit
 * code. Its exit is listened for from the start, as `runWorker`'s is, and must
 * be: when this thread handles a worker's exit before its last messages, Node
 * delivers those messages and then emits 'exit' in the same tick and drops
 * every listener (Worker's `kOnExit`), so an `await once(worker, 'exit')`
 * written after awaiting the last message starts listening too late and waits
 * forever. The busier the machine, the likelier the worker is gone by then.
 */
export function evalWorker(code: string, workerData?: unknown): { worker: Worker; exited: Promise<number> } {
  const worker = new Worker(code, { eval: true, workerData })
  const errored = once(worker, 'error').then(([error]) => Promise.reject(error))
  const exited = Promise.race([once(worker, 'exit').then(([code]) => code as number), errored])
  return { worker, exited }
}

/** The next message a worker posts. */
export async function nextMessage<T = unknown>(worker: Worker): Promise<T> {
  const [message] = await once(worker, 'message')
  return message as T
}

/** Resolves when `predicate` holds, polling; fails after `ms`. */
export async function eventually(predicate: () => boolean, ms = 5_000): Promise<void> {
  const deadline = Date.now() + ms
  while (!predicate()) {
    if (Date.now() > deadline) throw new Error(`condition not met within ${ms} ms`)
    await new Promise((resolve) => setTimeout(resolve, 5))
  }
}

/** Settles-or-not check without waiting on timers: true if `promise` settled. */
export async function isSettled(promise: Promise<unknown>): Promise<boolean> {
  let settled = false
  promise.then(
    () => (settled = true),
    () => (settled = true),
  )
  await new Promise((resolve) => setImmediate(resolve))
  return settled
}
