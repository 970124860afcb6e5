// Scenarios with many pending waiters: memory per pending waiter (heap bytes,
// measured with --expose-gc when available, else after a best-effort wait),
// and event-loop lag (p99, perf_hooks.monitorEventLoopDelay) while 10,000
// waiters stay pending and permits of a limit of 16 circulate.
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

/** Ways to run a task under a limit of 16, as `limited(task)`. */
const limiters = {
  'pure-JS baseline': () => {
    const sem = new RingSemaphore(16)
    return async (task) => {
      await sem.acquire()
      try {
        return await task()
      } finally {
        sem.release()
      }
    }
  },
  'p-limit': () => pLimit(16),
  'async-mutex': () => {
    const sem = new AsyncMutexSemaphore(16)
    return (task) => sem.runExclusive(task)
  },
  sluice: () => {
    const sem = new Semaphore(16)
    return (task) => sem.run(task)
  },
}

const holds = {
  '1 ms': () => new Promise((resolve) => setTimeout(resolve, 1)),
  'one loop turn': () => new Promise((resolve) => setImmediate(resolve)),
}

/**
 * p99 event-loop lag (ms) while `n` clients loop through a limit of 16, each
 * holding its permit for `hold` and queueing again at once: ~n waiters stay
 * pending while permits circulate. Lag is the delay of a 1 ms timer beyond
 * its 1 ms (monitorEventLoopDelay reports the whole interval). Measured for
 * `ms` after the clients are queued, so their creation is not in it.
 */
async function lagP99(makeLimited, hold, n, ms) {
  let running = true
  const limited = makeLimited?.()
  const clients = limited
    ? Array.from({ length: n }, async () => {
        while (running) await limited(hold)
      })
    : []
  await new Promise((resolve) => setTimeout(resolve, 50))
  const histogram = monitorEventLoopDelay({ resolution: 1 })
  histogram.enable()
  await new Promise((resolve) => setTimeout(resolve, ms))
  histogram.disable()
  running = false
  await Promise.all(clients)
  return Math.max(0, histogram.percentile(99) / 1e6 - 1)
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
        // The median of 5 measures after a warm-up: one measure of heapUsed
        // moved by +-15 bytes per waiter between runs on the same code.
        const rows = []
        for (const [name, make] of Object.entries(contenders)) {
          await bytesPerWaiter(make, n) // warm up
          const measures = []
          for (let i = 0; i < 5; i++) measures.push(await bytesPerWaiter(make, n))
          rows.push({ name, value: measures.sort((a, b) => a - b)[2] })
        }
        return rows
      },
    },
    ...Object.entries(holds).map(([holdName, hold]) => ({
      name: `event-loop lag p99, ${n.toLocaleString('en-US')} waiters pending, permits of a limit of 16 held ${holdName} and circulating (ms)`,
      baseline: 'pure-JS baseline',
      unit: 'ms',
      lowerIsBetter: true,
      async run() {
        const ms = quick ? 300 : 2000
        // An idle loop's own lag, for reference: the floor on this machine.
        const rows = [{ name: 'idle loop (reference)', reference: true, value: await lagP99(undefined, hold, n, ms) }]
        for (const [name, make] of Object.entries(limiters)) rows.push({ name, value: await lagP99(make, hold, n, ms) })
        return rows
      },
    })),
  ]
}
