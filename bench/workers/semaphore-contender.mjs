// Benchmark worker: `cycles` times acquire a permit, hold it across one
// microtask, release it; through a sluice Semaphore, the SAB baseline, or a
// postMessage coordinator in the main thread. Starts when the main thread says
// 'go' and sends its wait times at the end.
import { once } from 'node:events'
import { parentPort, workerData } from 'node:worker_threads'
import { Semaphore } from 'sluice'
import { SabSemaphore, SabTicketLock } from '../baselines/sab-semaphore.mjs'

const { mode, cycles, handle, buffer } = workerData
// Milliseconds from asking for the permit to holding it, per acquisition.
const waits = new Float64Array(cycles)

// Attached before saying 'ready', so the main thread's semaphore is shared by then.
const sluiceSemaphore = handle ? Semaphore.from(handle) : undefined

async function viaSluice() {
  const sem = sluiceSemaphore
  for (let i = 0; i < cycles; i++) {
    const asked = performance.now()
    const permit = sem.tryAcquire() ?? (await sem.acquire())
    waits[i] = performance.now() - asked
    await undefined
    permit.release()
  }
}

async function viaSab(fair) {
  const sem = fair ? new SabTicketLock(buffer) : new SabSemaphore(buffer)
  for (let i = 0; i < cycles; i++) {
    const asked = performance.now()
    await sem.acquire()
    waits[i] = performance.now() - asked
    await undefined
    sem.release()
  }
}

async function viaCoordinator() {
  for (let i = 0; i < cycles; i++) {
    const asked = performance.now()
    const granted = once(parentPort, 'message')
    parentPort.postMessage('acquire')
    await granted
    waits[i] = performance.now() - asked
    await undefined
    parentPort.postMessage('release')
  }
}

// A pending Atomics.waitAsync does not keep a thread alive (sluice keeps one
// alive itself while it waits); without this, a waiting SAB worker would exit.
const keepAlive = setInterval(() => {}, 2 ** 30)
parentPort.postMessage('ready')
await once(parentPort, 'message')
await { sluice: viaSluice, 'sluice-eventual': viaSluice, 'sluice-eventual-head': viaSluice, sab: () => viaSab(false), 'sab-fair': () => viaSab(true), port: viaCoordinator }[mode]()
parentPort.postMessage({ done: true, waits }, [waits.buffer])
clearInterval(keepAlive)
