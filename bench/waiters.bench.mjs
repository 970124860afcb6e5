// Scenarios with many pending waiters: memory per pending waiter (heap bytes,
// measured with --expose-gc when available, else after a best-effort wait),
// and event-loop delay (p99, perf_hooks.monitorEventLoopDelay) while 10,000
// waiters drain through a limit of 4, each task waiting one loop turn.
import { Semaphore as AsyncMutexSemaphore } from 'async-mutex'
import { monitorEventLoopDelay } from 'node:perf_hooks'
import pLimit from 'p-limit'
import { Semaphore } from 'sluice'
import { RingSemaphore } from './baselines/semaphore.mjs'

const gc = globalThis.gc ?? (() => {})

/** Ways to leave `n` waiters pending on a limit of 1 whose permit is held; returns a release-all. */
const contenders = {
  'pure-JS baseline': (n) => {
    const sem = new RingSemaphore(1)
    sem.tryAcquire()
    const waits = Array.from({ length: n }, () => sem.acquire().then(() => sem.release()))
    return async () => {
      sem.release()
      await Promise.all(waits)
    }
  },
  'p-limit': (n) => {
    const limit = pLimit(1)
    let open
    const gate = new Promise((resolve) => (open = resolve))
    const waits = [limit(() => gate), ...Array.from({ length: n }, () => limit(() => undefined))]
    return async () => {
      open()
      await Promise.all(waits)
    }
  },
  'async-mutex': (n) => {
    const sem = new AsyncMutexSemaphore(1)
    let release
    const first = sem.acquire().then(([, r]) => (release = r))
    const waits = Array.from({ length: n }, () => sem.runExclusive(() => undefined))
    return async () => {
      await first
      release()
      await Promise.all(waits)
    }
  },
  sluice: (n) => {
    const sem = new Semaphore(1)
    const held = sem.tryAcquire()
    const waits = Array.from({ length: n }, () => sem.run(() => undefined))
    return async () => {
      held.release()
      await Promise.all(waits)
    }
  },
}

async function bytesPerWaiter(make, n) {
  gc()
  const before = process.memoryUsage().heapUsed
  const releaseAll = make(n)
  gc()
  const during = process.memoryUsage().heapUsed
  await releaseAll()
  return (during - before) / n
}

/** Ways to run `n` tasks under a limit of 4, each waiting a turn of the event loop. */
const runners = {
  'pure-JS baseline': (n, task) => {
    const sem = new RingSemaphore(4)
    return Promise.all(Array.from({ length: n }, async () => {
      await sem.acquire()
      try {
        await task()
      } finally {
        sem.release()
      }
    }))
  },
  'p-limit': (n, task) => {
    const limit = pLimit(4)
    return Promise.all(Array.from({ length: n }, () => limit(task)))
  },
  'async-mutex': (n, task) => {
    const sem = new AsyncMutexSemaphore(4)
    return Promise.all(Array.from({ length: n }, () => sem.runExclusive(task)))
  },
  sluice: (n, task) => {
    const sem = new Semaphore(4)
    return Promise.all(Array.from({ length: n }, () => sem.run(task)))
  },
}

/** p99 event-loop delay (ms) while `n` waiters drain through a limit of 4. */
async function loopDelayP99(run, n) {
  const histogram = monitorEventLoopDelay({ resolution: 1 })
  histogram.enable()
  await run(n, () => new Promise((resolve) => setImmediate(resolve)))
  histogram.disable()
  return histogram.percentile(99) / 1e6
}

export function suites({ quick }) {
  const n = quick ? 2_000 : 10_000
  return [
    {
      name: `memory per pending waiter (heap bytes, ${n.toLocaleString('en-US')} waiters${globalThis.gc ? '' : ', no --expose-gc: approximate'})`,
      baseline: 'pure-JS baseline',
      unit: 'bytes',
      lowerIsBetter: true,
      async run() {
        const rows = []
        for (const [name, make] of Object.entries(contenders)) {
          await bytesPerWaiter(make, n) // warm up
          rows.push({ name, value: await bytesPerWaiter(make, n) })
        }
        return rows
      },
    },
    {
      name: `event-loop delay p99 while ${n.toLocaleString('en-US')} waiters are served (ms)`,
      baseline: 'pure-JS baseline',
      unit: 'ms',
      lowerIsBetter: true,
      async run() {
        const rows = []
        for (const [name, run] of Object.entries(runners)) {
          await loopDelayP99(run, n)
          rows.push({ name, value: await loopDelayP99(run, n) })
        }
        return rows
      },
    },
  ]
}
