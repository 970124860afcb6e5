// Named semaphores across real processes: unrelated `node` commands, a
// process killed with SIGKILL, process.exit and an uncaught throw, unlink.
import { readFileSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { Worker } from 'node:worker_threads'
import { ClosedError, MismatchError, Mutex, Semaphore } from 'sluice'
import { afterAll, afterEach, describe, expect, it } from 'vitest'
import { eventually } from './helpers.js'
import { child, killChildren, segmentDir } from './named-support.js'

const { dir, remove } = segmentDir()
afterEach(killChildren)
afterAll(remove)

let count = 0
/** A name no other test of this file uses. */
const fresh = (): string => `t${process.pid}-${++count}`

/** A worker thread that opens `name` (permits 2, in `dir`) as `s`, then runs `body` (CommonJS, `parentPort` in scope). */
function openerThread(name: string, body: string): Worker {
  const code = `
    const { workerData, parentPort } = require('node:worker_threads')
    const { Semaphore } = require('sluice')
    const s = Semaphore.open(workerData.name, { permits: 2, dir: workerData.dir })
    ${body}
  `
  return new Worker(code, { eval: true, workerData: { name, dir } })
}

describe('Semaphore.open: the same semaphore for every process', () => {
  it('a second open in the same thread returns the same object', () => {
    const name = fresh()
    const a = Semaphore.open(name, { permits: 2, dir })
    expect(Semaphore.open(name, { permits: 2, dir })).toBe(a)
    expect(a.capacity).toBe(2)
    expect(a.available).toBe(2)
  })

  it('a later opener with other parameters gets an error naming both values', () => {
    const name = fresh()
    Semaphore.open(name, { permits: 3, dir })
    expect(() => Semaphore.open(name, { permits: 4, dir })).toThrow(MismatchError)
    expect(() => Semaphore.open(name, { permits: 4, dir })).toThrow(/permits is 4 here.*permits 3/)
  })

  it('fairness is a parameter like permits: another value is refused naming both, here and in another process', async () => {
    const name = fresh()
    const eventual = Semaphore.open(name, { permits: 1, fairness: 'eventual', dir })
    expect(Semaphore.open(name, { permits: 1, fairness: 'eventual', dir })).toBe(eventual)
    expect(eventual.handle).toMatchObject({ fairness: 'eventual' })
    expect(() => Semaphore.open(name, { permits: 1, dir })).toThrow(MismatchError)
    expect(() => Semaphore.open(name, { permits: 1, dir })).toThrow(/fairness is 'fifo' here.*fairness 'eventual'/)
    // Another process asks the segment itself (the native comparison).
    const other = child('wait', dir, name, 1, undefined, 'fifo')
    expect(await other.exited).toBe(1)
    await eventually(() => /MismatchError/.test(other.stderr()))
    expect(other.stderr()).toMatch(/fairness is 'fifo' here.*fairness 'eventual'/)
    // 'eventual-head' is a third value: refused against 'eventual', by name, here and in the segment.
    const head = fresh()
    Semaphore.open(head, { permits: 1, fairness: 'eventual-head', dir })
    expect(() => Semaphore.open(head, { permits: 1, fairness: 'eventual', dir })).toThrow(
      /fairness is 'eventual' here.*fairness 'eventual-head'/,
    )
    const another = child('wait', dir, head, 1, undefined, 'eventual')
    expect(await another.exited).toBe(1)
    await eventually(() => /MismatchError/.test(another.stderr()))
    expect(another.stderr()).toMatch(/fairness is 'eventual' here.*fairness 'eventual-head'/)
    expect(() => Semaphore.open(fresh(), { permits: 1, fairness: 'fair' as never, dir })).toThrow(RangeError)
    expect(() => Semaphore.open(fresh(), { permits: 1, fairness: 1 as never, dir })).toThrow(/^options\.fairness must be/)
  })

  // In 'eventual' the release leaves the permit free and nudges the waiter, which then collects it.
  it.each(['fifo', 'eventual', 'eventual-head'] as const)(
    'an unrelated process sees what this one holds, and gets the permit when it is released (fairness %s)',
    async (fairness) => {
      const name = fresh()
      const semaphore = Semaphore.open(name, { permits: 1, fairness, dir })
      const permit = semaphore.tryAcquire()!
      expect(permit).not.toBeNull()
      const waiter = child('wait', dir, name, 1, undefined, fairness)
      await waiter.line('queued')
      await eventually(() => semaphore.waiting === 1)
      permit.release()
      await waiter.line('granted')
      expect(await waiter.exited).toBe(0)
      expect(semaphore.available).toBe(1)
      expect(semaphore.waiting).toBe(0)
    },
  )

  it('a waiter here is woken by a release in another process, without polling', async () => {
    const name = fresh()
    const semaphore = Semaphore.open(name, { permits: 1, dir })
    const holder = child('exit-holding', dir, name, 1, 1)
    // The holder takes the permit and exits at once, giving it back natively.
    await holder.line('held').catch(() => undefined)
    const permit = await semaphore.acquire({ timeout: 5_000 })
    permit.release()
    expect(await holder.exited).toBe(0)
  })

  it('a process killed with SIGKILL while holding gives its permits back, and a waiter here gets them', async () => {
    const name = fresh()
    const semaphore = Semaphore.open(name, { permits: 1, dir })
    const holder = child('hold', dir, name, 1)
    await holder.line('held')
    expect(semaphore.available).toBe(0)
    const waited = semaphore.acquire({ timeout: 10_000 })
    const killedAt = performance.now()
    holder.process.kill('SIGKILL')
    const permit = await waited
    const latency = performance.now() - killedAt
    // The bound: the kernel's teardown of the victim plus one 50 ms sweep.
    // Asserted loosely (the machine is shared); the figure is in the bench.
    expect(latency).toBeLessThan(5_000)
    permit.release()
    expect(semaphore.available).toBe(1)
  })

  it('process.exit and an uncaught throw give back what the process held', async () => {
    const name = fresh()
    const semaphore = Semaphore.open(name, { permits: 3, dir })
    const exiting = child('exit-holding', dir, name, 3, 2)
    expect(await exiting.exited).toBe(0)
    await eventually(() => semaphore.available === 3, 5_000)
    const throwing = child('throw-holding', dir, name, 3, 3)
    expect(await throwing.exited).toBe(1)
    await eventually(() => semaphore.available === 3, 5_000)
  })

  it('a waiter in a killed process leaves no wait behind', async () => {
    const name = fresh()
    const semaphore = Semaphore.open(name, { permits: 1, dir })
    const permit = semaphore.tryAcquire()!
    const waiter = child('wait', dir, name, 1)
    await waiter.line('queued')
    await eventually(() => semaphore.waiting === 1)
    waiter.process.kill('SIGKILL')
    await waiter.exited
    // Swept on the next poll or try: the dead wait must not take the permit.
    await eventually(() => {
      semaphore.tryAcquire()?.release()
      return semaphore.waiting === 0
    }, 5_000)
    permit.release()
    expect(semaphore.available).toBe(1)
  })

  it('when every process that had it open is gone, the next open starts clean', async () => {
    const name = fresh()
    const holder = child('hold', dir, name, 2)
    await holder.line('held')
    holder.process.kill('SIGKILL')
    await holder.exited
    const reader = child('available', dir, name, 2)
    expect(await reader.line('available')).toBe('2 waiting 0')
  })

  it('cancelling a wait (abort, timeout) takes nothing, and a cancelled grant is given back', async () => {
    const name = fresh()
    const semaphore = Semaphore.open(name, { permits: 1, dir })
    const permit = semaphore.tryAcquire()!
    const controller = new AbortController()
    const aborted = semaphore.acquire({ signal: controller.signal })
    const timedOut = semaphore.acquire({ timeout: 20 })
    controller.abort()
    await expect(aborted).rejects.toThrow(/abort/i)
    await expect(timedOut).rejects.toMatchObject({ code: 'ERR_SLUICE_TIMEOUT' })
    expect(semaphore.waiting).toBe(0)
    permit.release()
    expect(semaphore.available).toBe(1)
  })

  it('a wait granted by another process and cancelled here before it was collected gives its permit back', async () => {
    const name = fresh()
    const semaphore = Semaphore.open(name, { permits: 1, dir })
    const holder = child('release-after', dir, name, 1, 200)
    await holder.line('held')
    const controller = new AbortController()
    const waited = semaphore.acquire({ signal: controller.signal })
    // Block this thread past the other process's release: the grant is made
    // natively while no JS here can collect it. Then cancel before collecting.
    Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, 1_000)
    controller.abort()
    await expect(waited).rejects.toThrow(/abort/i)
    await holder.line('released')
    await eventually(() => semaphore.available === 1, 2_000)
    expect(semaphore.waiting).toBe(0)
  })

  it('threads of another process share it with this one', async () => {
    const name = fresh()
    const semaphore = Semaphore.open(name, { permits: 2, dir })
    const workers = [0, 1].map(() =>
      openerThread(
        name,
        `;(async () => {
          for (let i = 0; i < 200; i++) { const p = await s.acquire(); await new Promise((r) => setImmediate(r)); p.release() }
          parentPort.postMessage('done')
        })()`,
      ),
    )
    const holdersSeen: number[] = []
    for (let i = 0; i < 200; i++) {
      const permit = await semaphore.acquire()
      holdersSeen.push(semaphore.available)
      await new Promise((resolve) => setImmediate(resolve))
      permit.release()
    }
    await Promise.all(workers.map((worker) => new Promise((resolve) => worker.once('message', resolve))))
    await Promise.all(workers.map((worker) => worker.terminate()))
    // While this thread held one of the 2 permits, at most one was free.
    expect(Math.min(...holdersSeen)).toBeGreaterThanOrEqual(0)
    expect(Math.max(...holdersSeen)).toBeLessThanOrEqual(1)
    expect(semaphore.available).toBe(2)
    expect(semaphore.waiting).toBe(0)
  })

  it('a worker thread terminated while holding and waiting gives everything back', async () => {
    const name = fresh()
    const semaphore = Semaphore.open(name, { permits: 2, dir })
    const worker = openerThread(name, `s.acquire({ weight: 2 }).then(() => { s.acquire(); parentPort.postMessage('holding') })`)
    await new Promise((resolve) => worker.once('message', resolve))
    expect(semaphore.available).toBe(0)
    await eventually(() => semaphore.waiting === 1)
    await worker.terminate()
    await eventually(() => semaphore.available === 2 && semaphore.waiting === 0)
  })
})

describe('Semaphore.unlink', () => {
  it('closes the semaphore for every process and frees the name', async () => {
    const name = fresh()
    const semaphore = Semaphore.open(name, { permits: 1, dir })
    const permit = semaphore.tryAcquire()!
    const waiter = child('wait', dir, name, 1)
    await waiter.line('queued')
    await eventually(() => semaphore.waiting === 1)
    const mine = semaphore.acquire()
    expect(Semaphore.unlink(name, { dir })).toBe(true)
    await expect(mine).rejects.toThrow(ClosedError)
    // The other process's wait rejects too (its fixture exits non-zero).
    expect(await waiter.exited).not.toBe(0)
    expect(() => semaphore.tryAcquire()).toThrow(ClosedError)
    permit.release()
    const again = Semaphore.open(name, { permits: 5, dir })
    expect(again).not.toBe(semaphore)
    expect(again.available).toBe(5)
    expect(Semaphore.unlink(fresh(), { dir })).toBe(false)
  })
})

describe('Mutex.open', () => {
  it('is a named semaphore of one permit', async () => {
    const name = fresh()
    const mutex = Mutex.open(name, { dir })
    const guard = mutex.tryLock()!
    expect(guard).not.toBeNull()
    expect(mutex.tryLock()).toBeNull()
    const waiter = child('wait', dir, name, 1)
    await waiter.line('queued')
    guard.release()
    expect(await waiter.exited).toBe(0)
    expect(() => Mutex.open(name, { dir, maxWaiters: 7 })).toThrow(MismatchError)
    expect(() => Mutex.open(name, { dir, fairness: 'eventual' })).toThrow(/fairness is 'eventual' here.*fairness 'fifo'/)
    // 'eventual-head' travels in the mutex's handle and is a parameter like the others.
    const headName = fresh()
    const headMutex = Mutex.open(headName, { dir, fairness: 'eventual-head' })
    expect(headMutex.handle.semaphore).toMatchObject({ fairness: 'eventual-head' })
    expect(Mutex.from(headMutex.handle).handle.semaphore).toMatchObject({ fairness: 'eventual-head' })
    expect(() => Mutex.open(headName, { dir, fairness: 'eventual' })).toThrow(/fairness is 'eventual' here.*fairness 'eventual-head'/)
    expect(() => Semaphore.open(headName, { permits: 1, dir })).toThrow(/fairness is 'fifo' here.*fairness 'eventual-head'/)
  })
})

describe('bad input and bad segments', () => {
  it('names and options are checked, naming the field', () => {
    expect(() => Semaphore.open(42 as never, { permits: 1, dir })).toThrow(TypeError)
    expect(() => Semaphore.open(42 as never, { permits: 1, dir })).toThrow(/^name must be a string/)
    for (const bad of ['', 'a/b', '.hidden', 'a.b', '-x', 'x'.repeat(65), 'é']) {
      expect(() => Semaphore.open(bad, { permits: 1, dir })).toThrow(RangeError)
      expect(() => Semaphore.open(bad, { permits: 1, dir })).toThrow(/^name must be 1 to 64 characters/)
    }
    expect(() => Semaphore.open('ok', { permits: 0, dir })).toThrow(/options\.permits/)
    expect(() => Semaphore.open('ok', {} as never)).toThrow(/options\.permits/)
    expect(() => Semaphore.open('ok', { permits: 1, maxWaiters: 0, dir })).toThrow(/options\.maxWaiters/)
    expect(() => Semaphore.open('ok', { permits: 1, dir: 7 as never })).toThrow(/options\.dir/)
  })

  it('a segment whose header bytes were damaged is refused with a SegmentError, never a crash', () => {
    const name = fresh()
    const opener = child('available', dir, name, 1)
    return opener.exited.then(() => {
      const path = join(dir, name)
      const bytes = readFileSync(path)
      for (let i = 0; i < 64; i++) bytes[8 + Math.floor(Math.random() * 240)] = Math.floor(Math.random() * 256)
      writeFileSync(path, bytes)
      expect(() => Semaphore.open(name, { permits: 1, dir })).toThrow(expect.objectContaining({ code: 'ERR_SLUICE_SEGMENT' }))
      expect(() => Semaphore.open(name, { permits: 1, dir })).toThrow(/unlink/)
    })
  })

  it("another user's segment directory is refused", () => {
    expect(() => Semaphore.open('x', { permits: 1, dir: '/tmp' })).toThrow(expect.objectContaining({ code: 'ERR_SLUICE_SEGMENT' }))
  })
})
