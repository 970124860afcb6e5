// Single-thread Semaphore costs: sluice against the pure-JS baseline and
// async-mutex, measured in the same run. Exports a list of tinybench suites
// for bench/run.mjs.
import { Semaphore as AsyncMutexSemaphore, tryAcquire as asyncMutexTryAcquire } from 'async-mutex'
import pLimit from 'p-limit'
import PQueue from 'p-queue'
import { Semaphore } from 'sluice'
import { Semaphore as CompatAsyncMutexSemaphore } from 'sluice/compat/async-mutex'
import compatPLimit from 'sluice/compat/p-limit'
import { Bench } from 'tinybench'
import { RingSemaphore } from './baselines/semaphore.mjs'

export function suites({ time, quick }) {
  const sluice = new Semaphore(16)
  const ring = new RingSemaphore(16)
  const asyncMutex = new AsyncMutexSemaphore(16)

  // 1,000 pairs per timed call: one pair is ~40-130 ns, comparable to the
  // harness's own overhead, which would otherwise compress the ratios.
  const uncontendedSync = new Bench({ retainSamples: true, name: 'tryAcquire + release (uncontended, sync)', time })
    .add('pure-JS baseline', () => {
      for (let i = 0; i < 1000; i++) {
        ring.tryAcquire()
        ring.release()
      }
    })
    .add('sluice', () => {
      for (let i = 0; i < 1000; i++) sluice.tryAcquire().release()
    })
  uncontendedSync.opsPerIteration = 1000

  // Every contender of the two suites below starts from a collected heap
  // (with --expose-gc), so none pays for the previous one's garbage.
  const collected = { beforeAll: () => globalThis.gc?.() }

  // One pair per timed call, as an awaiting caller makes them. async-mutex's
  // try-acquire runs last: each of its calls leaves a 0 ms timer behind for
  // whoever runs next.
  const uncontendedAsync = new Bench({ retainSamples: true, name: 'await acquire + release (uncontended)', time })
    .add('pure-JS baseline', async () => {
      await ring.acquire()
      ring.release()
    }, collected)
    .add('async-mutex', async () => {
      const [, release] = await asyncMutex.acquire()
      release()
    }, collected)
    .add('sluice', async () => {
      ;(await sluice.acquire()).release()
    }, collected)
    // async-mutex's own try-acquire: a decorator that races a 0 ms timer.
    .add('async-mutex tryAcquire()', async () => {
      const [, release] = await asyncMutexTryAcquire(asyncMutex).acquire()
      release()
    }, collected)

  // 100,000 tasks per iteration (1,000 in a quick run) through a limit of 16,
  // each awaiting a microtask: nearly all of them queue, so this measures the
  // waiting path. Rows are tasks per second.
  const tasks = quick ? 1000 : 100_000
  const task = () => Promise.resolve()
  const limit = pLimit(16)
  const queue = new PQueue({ concurrency: 16 })
  const compatLimit = compatPLimit(16)
  const compatAsyncMutex = new CompatAsyncMutexSemaphore(16)
  // A few whole iterations, warm-up included: with 100,000 queued, peers
  // whose queue is an array they shift() from take seconds per iteration
  // (V8 moves the rest of a large array on each shift), and tinybench's
  // default 16 warm-up iterations would take minutes.
  const limited = new Bench({
    retainSamples: true,
    name: `${tasks.toLocaleString('en-US')} async tasks under a limit of 16`,
    time: 0,
    iterations: 5,
    warmupTime: 0,
    warmupIterations: quick ? 2 : 1,
  })
    .add('pure-JS baseline', async () => {
      await Promise.all(
        Array.from({ length: tasks }, async () => {
          await ring.acquire()
          try {
            await task()
          } finally {
            ring.release()
          }
        }),
      )
    }, collected)
    .add('p-limit', async () => {
      await Promise.all(Array.from({ length: tasks }, () => limit(task)))
    }, collected)
    .add('p-queue', async () => {
      await Promise.all(Array.from({ length: tasks }, () => queue.add(task)))
    }, collected)
    .add('sluice', async () => {
      await Promise.all(Array.from({ length: tasks }, () => sluice.run(task)))
    }, collected)
    // The drop-in adapters: the same native semaphore behind p-limit's and
    // async-mutex's APIs.
    .add('sluice compat/p-limit', async () => {
      await Promise.all(Array.from({ length: tasks }, () => compatLimit(task)))
    }, collected)
    .add('sluice compat/async-mutex', async () => {
      await Promise.all(Array.from({ length: tasks }, () => compatAsyncMutex.runExclusive(task)))
    }, collected)
    // Last: its quadratic queue leaves the heap large for whoever comes next.
    .add('async-mutex', async () => {
      await Promise.all(Array.from({ length: tasks }, () => asyncMutex.runExclusive(task)))
    }, collected)

  limited.opsPerIteration = tasks
  return [uncontendedSync, uncontendedAsync, limited]
}
