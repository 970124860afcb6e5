// A cluster worker of bench/named.bench.mjs: `cycles` acquire/hold/release
// cycles on a limit shared by every worker process, through one of:
//   sluice    Semaphore.open(name, { permits, fairness, dir }) (fairness
//             'fifo', 'eventual' or 'eventual-head')
//   ipc       a coordinator in the primary over process.send
//   lockfile  proper-lockfile on a file (a mutex; permits must be 1)
// It holds across a microtask, records [asked, acquired, released] in
// process.hrtime nanoseconds (CLOCK_MONOTONIC: comparable across processes),
// and sends them to the primary when done.
import { setTimeout as sleep } from 'node:timers/promises'
import lockfile from 'proper-lockfile'
import { Semaphore } from 'sluice'

const { mode, name, dir, permits, cycles, lockPath, fairness } = JSON.parse(process.env.SLUICE_BENCH_NAMED)

let acquire
if (mode === 'sluice') {
  const semaphore = Semaphore.open(name, { permits, fairness, dir })
  acquire = async () => {
    const permit = await semaphore.acquire()
    return () => permit.release()
  }
} else if (mode === 'ipc') {
  let granted
  process.on('message', (message) => message === 'grant' && granted())
  acquire = async () => {
    await new Promise((resolve) => {
      granted = resolve
      process.send('acquire')
    })
    return () => process.send('release')
  }
} else if (mode === 'lockfile') {
  // Its own retry loop polls the lock file; 1-5 ms between tries is as
  // eager as its options allow without spinning. (Its retry schedule is an
  // array of every delay: 10,000 tries, up to ~50 s, not "forever".)
  const retries = { retries: 10_000, minTimeout: 1, maxTimeout: 5, factor: 1.2 }
  acquire = async () => lockfile.lock(lockPath, { retries, realpath: false, stale: 10_000 })
} else {
  throw new Error(`unknown mode ${mode}`)
}

// Start together: wait for the primary's 'go', asked for with 'ready' once
// the listener is on (a message with no listener is dropped).
await new Promise((resolve) => {
  process.on('message', (message) => message === 'go' && resolve())
  process.send('ready')
})
const times = new Float64Array(cycles * 3)
for (let i = 0; i < cycles; i++) {
  times[3 * i] = Number(process.hrtime.bigint())
  const release = await acquire()
  times[3 * i + 1] = Number(process.hrtime.bigint())
  await Promise.resolve()
  times[3 * i + 2] = Number(process.hrtime.bigint())
  await release()
}
process.send({ done: Array.from(times) }, () => {
  // Let the channel flush, then leave.
  void sleep(10).then(() => process.disconnect())
})
