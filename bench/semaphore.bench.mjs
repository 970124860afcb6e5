// Single-thread Semaphore costs: sluice against the pure-JS baseline and
// async-mutex, measured in the same run. Exports a list of tinybench suites
// for bench/run.mjs.
import { Semaphore as AsyncMutexSemaphore } from 'async-mutex'
import pLimit from 'p-limit'
import { Semaphore } from 'sluice'
import { Bench } from 'tinybench'
import { RingSemaphore } from './baselines/semaphore.mjs'

export function suites({ time }) {
  const sluice = new Semaphore(16)
  const ring = new RingSemaphore(16)
  const asyncMutex = new AsyncMutexSemaphore(16)

  // 1,000 pairs per timed call: one pair is ~40-130 ns, comparable to the
  // harness's own overhead, which would otherwise compress the ratios.
  const uncontendedSync = new Bench({ name: 'tryAcquire + release (uncontended, sync)', time })
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

  const uncontendedAsync = new Bench({ name: 'await acquire + release (uncontended)', time })
    .add('pure-JS baseline', async () => {
      await ring.acquire()
      ring.release()
    })
    .add('async-mutex', async () => {
      const [, release] = await asyncMutex.acquire()
      release()
    })
    .add('sluice', async () => {
      ;(await sluice.acquire()).release()
    })

  // 1,000 tasks per iteration through a limit of 16, each awaiting a microtask:
  // most of them queue, so this measures the waiting path.
  const tasks = 1000
  const task = () => Promise.resolve()
  const limit = pLimit(16)
  const limited = new Bench({ name: `${tasks} async tasks under a limit of 16`, time, iterations: 20 })
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
    })
    .add('p-limit', async () => {
      await Promise.all(Array.from({ length: tasks }, () => limit(task)))
    })
    .add('async-mutex', async () => {
      await Promise.all(Array.from({ length: tasks }, () => asyncMutex.runExclusive(task)))
    })
    .add('sluice', async () => {
      await Promise.all(Array.from({ length: tasks }, () => sluice.run(task)))
    })

  return [uncontendedSync, uncontendedAsync, limited]
}
