// Eventual fairness (`fairness: 'eventual'`, issue 13) across threads: what
// the cross-thread suites run in every mode does not show. The fairness clock
// is frozen from Rust (`setFairnessClockForTest`), so whether a queue head is
// due is decided here, not by timing.
import { createRequire } from 'node:module'
import { afterEach, describe, expect, it } from 'vitest'
import { Semaphore, TimeoutError, type SemaphoreHandle } from 'sluice'
import { FIRST, HELD, MOST, countersFor, holdCycles } from './fixtures/hold-cycles.mjs'
import { eventually, isSettled, nextMessage, runWorker } from './helpers.js'

const binding = createRequire(import.meta.url)('../packages/node/binding.js') as {
  setFairnessClockForTest(nanos?: number): void
}
/** A millisecond: past the 0.5 ms a head may be barged past (core `FAIR_AFTER_NANOS`). */
const DUE = 1_000_000

const fairnessOf = (handle: SemaphoreHandle): unknown => (handle as { fairness?: unknown }).fairness

/** Spins this thread (so no doorbell runs) until `done` or 5 s. */
function spinUntil(done: () => boolean): void {
  const deadline = Date.now() + 5_000
  while (!done() && Date.now() < deadline) {
    // Busy on purpose: a nudge must find this thread unable to serve.
  }
}

afterEach(() => binding.setFairnessClockForTest())

describe('Semaphore fairness option', () => {
  it('rejects a fairness that is not a string with a TypeError naming options.fairness', () => {
    expect(() => new Semaphore(1, { fairness: 1 as never })).toThrow(TypeError)
    expect(() => new Semaphore(1, { fairness: 1 as never })).toThrow(/options\.fairness/)
  })

  it('rejects an unknown fairness with a RangeError naming options.fairness', () => {
    expect(() => new Semaphore(1, { fairness: 'fair' as never })).toThrow(RangeError)
    expect(() => new Semaphore(1, { fairness: 'fair' as never })).toThrow(/options\.fairness/)
  })

  it('rejects a handle whose fairness is not a mode, naming handle.fairness', () => {
    const handle = new Semaphore(1, { fairness: 'eventual' }).handle
    expect(() => Semaphore.from({ ...handle, fairness: 'unfair' } as never)).toThrow(/handle\.fairness/)
  })

  it('carries the mode in the handle, to every semaphore made from it', () => {
    const eventual = new Semaphore(2, { fairness: 'eventual' })
    expect(fairnessOf(eventual.handle)).toBe('eventual')
    expect(fairnessOf(Semaphore.from(eventual.handle).handle)).toBe('eventual')
    expect(fairnessOf(new Semaphore(2).handle)).toBe('fifo')
    expect(fairnessOf(new Semaphore(2, { fairness: 'fifo' }).handle)).toBe('fifo')
    const head = new Semaphore(2, { fairness: 'eventual-head' })
    expect(fairnessOf(Semaphore.from(head.handle).handle)).toBe('eventual-head')
  })
})

describe('Semaphore with eventual fairness across threads', () => {
  /**
   * A semaphore of 1 in `fairness`, its permit held here, and a worker
   * queued for it that blocks its thread once granted (until `finish`).
   */
  async function heldWithWorkerQueued(fairness: 'eventual' | 'eventual-head') {
    const sem = new Semaphore(1, { fairness })
    const permit = sem.tryAcquire()!
    const gate = new Int32Array(new SharedArrayBuffer(4))
    const { worker, exited } = runWorker('acquire-then-block.mjs', { handle: sem.handle, gate: gate.buffer })
    expect(await nextMessage(worker)).toBe('waiting')
    await eventually(() => sem.waiting === 1)
    /** Lets the worker go once it holds the permit, and checks it came back. */
    const finish = async () => {
      Atomics.store(gate, 0, 1)
      Atomics.notify(gate, 0)
      expect(await nextMessage(worker)).toBe('acquired')
      expect(await exited).toBe(0)
      expect(sem.available).toBe(1)
    }
    return { sem, permit, finish }
  }

  it('lets a newcomer take a young head’s permit, and hands the next release to a due head', async () => {
    binding.setFairnessClockForTest(0)
    const { sem, permit: held, finish } = await heldWithWorkerQueued('eventual')
    // The head is young (the clock stands still): the release leaves the
    // permit free, and this thread takes it back past the blocked worker.
    held.release()
    let permit = sem.tryAcquire()!
    expect(permit).not.toBeNull()
    expect(sem.waiting).toBe(1)
    permit.release()
    // Its time is up: what was freed before may still be taken...
    binding.setFairnessClockForTest(DUE)
    permit = sem.tryAcquire()!
    expect(permit).not.toBeNull()
    // ...but the next release goes to the head, as in FIFO mode.
    permit.release()
    expect(sem.tryAcquire()).toBeNull()
    expect(sem.available).toBe(0)
    expect(sem.waiting).toBe(0)
    await finish()
  })

  it('counting from the head: a wait queued long ago is young at the first release that finds it first', async () => {
    binding.setFairnessClockForTest(0)
    const { sem, permit: held, finish } = await heldWithWorkerQueued('eventual-head')
    expect(fairnessOf(sem.handle)).toBe('eventual-head')
    // Queued long ago ('eventual' would hand off now), but no release has
    // found it first in line yet: its count starts at this one.
    binding.setFairnessClockForTest(DUE)
    held.release()
    const permit = sem.tryAcquire()!
    expect(permit).not.toBeNull()
    expect(sem.waiting).toBe(1)
    // First in line for a millisecond now: the next release is its.
    binding.setFairnessClockForTest(2 * DUE)
    permit.release()
    expect(sem.tryAcquire()).toBeNull()
    expect(sem.available).toBe(0)
    expect(sem.waiting).toBe(0)
    await finish()
  })

  it('counting from queueing: a wait queued long ago gets the first release', async () => {
    binding.setFairnessClockForTest(0)
    const { sem, permit, finish } = await heldWithWorkerQueued('eventual')
    binding.setFairnessClockForTest(DUE)
    permit.release()
    expect(sem.tryAcquire()).toBeNull()
    expect(sem.waiting).toBe(0)
    await finish()
  })

  it('hands a release to the next thread in line instead of parking it for a nudged worker that is blocked', async () => {
    // Review finding: with the worker nudged but blocked, the second release
    // parked its permit too; this thread's wait, next in line, then waited on
    // the worker's thread (or the 50 ms poll), not on its FIFO turn.
    binding.setFairnessClockForTest(0)
    const sem = new Semaphore(2, { fairness: 'eventual' })
    const first = sem.tryAcquire()!
    const second = sem.tryAcquire()!
    const gate = new Int32Array(new SharedArrayBuffer(4))
    const { worker, exited } = runWorker('acquire-then-block.mjs', { handle: sem.handle, gate: gate.buffer })
    expect(await nextMessage(worker)).toBe('waiting')
    await eventually(() => sem.waiting === 1)
    const mine = sem.acquire() // next in line, behind the blocked worker
    first.release() // the worker's head is young: parked, the worker nudged
    expect(sem.available).toBe(1)
    second.release() // would reach this thread's wait: handed off, both granted
    // Synchronously: no poll or doorbell has had a turn.
    expect(sem.waiting).toBe(0)
    expect(sem.available).toBe(0)
    expect(await isSettled(mine)).toBe(true)
    ;(await mine).release()
    Atomics.store(gate, 0, 1)
    Atomics.notify(gate, 0)
    expect(await nextMessage(worker)).toBe('acquired')
    expect(await exited).toBe(0)
    expect(sem.available).toBe(2)
  })

  it('serves the permits a nudged worker left parked when it is terminated before serving them', async () => {
    binding.setFairnessClockForTest(0)
    const sem = new Semaphore(1, { fairness: 'eventual' })
    const permit = sem.tryAcquire()!
    const gate = new Int32Array(new SharedArrayBuffer(4))
    const { worker } = runWorker('acquire-then-block.mjs', { handle: sem.handle, gate: gate.buffer })
    expect(await nextMessage(worker)).toBe('waiting')
    await eventually(() => sem.waiting === 1)
    const mine = sem.acquire() // queued behind the worker
    expect(sem.waiting).toBe(2)
    permit.release() // the worker is nudged, but blocked: the permit stays parked
    expect(sem.available).toBe(1)
    await worker.terminate()
    // Its exit handed the parked permit to the next in line (collected by the poll).
    const next = await mine
    expect(sem.waiting).toBe(0)
    expect(sem.available).toBe(0)
    next.release()
    expect(sem.available).toBe(1)
  })

  it('gives back the parked permit when a nudged wait is aborted before it is served', async () => {
    binding.setFairnessClockForTest(0)
    const sem = new Semaphore(1, { fairness: 'eventual' })
    // `stay`: the worker's exit would serve the parked permit (it gives back
    // its slot), which made this test fail most runs (review finding).
    const { worker, exited } = runWorker('hold-until-told.mjs', { handle: sem.handle, stay: true })
    expect(await nextMessage(worker)).toBe('holding')
    const controller = new AbortController()
    const waiting = sem.acquire({ signal: controller.signal })
    worker.postMessage('release')
    const released = nextMessage(worker) // listened for before any await lets it pass
    // This thread is the nudged head, kept busy until the worker's release parked the permit.
    spinUntil(() => sem.available === 1)
    expect(sem.available).toBe(1)
    controller.abort(new Error('changed my mind'))
    await expect(waiting).rejects.toThrow('changed my mind')
    expect(await released).toBe('released')
    worker.postMessage('exit')
    expect(await exited).toBe(0)
    expect(sem.waiting).toBe(0)
    expect(sem.available).toBe(1)
    expect(sem.tryAcquire()).not.toBeNull()
  })

  it('keeps every permit when a nudged wait times out before it is served', async () => {
    binding.setFairnessClockForTest(0)
    const sem = new Semaphore(1, { fairness: 'eventual' })
    const { worker, exited } = runWorker('hold-until-told.mjs', { handle: sem.handle, stay: true })
    expect(await nextMessage(worker)).toBe('holding')
    const waiting = sem.acquire({ timeout: 1 })
    worker.postMessage('release')
    const released = nextMessage(worker)
    spinUntil(() => sem.available === 1)
    expect(sem.available).toBe(1) // parked, the worker still alive
    const start = Date.now()
    spinUntil(() => Date.now() - start > 10) // the timer is due before the doorbell runs
    // Either ending is allowed (the doorbell and the timer race); permits must add up.
    const outcome = await waiting.then(
      (permit) => (permit.release(), 'granted'),
      (error: unknown) => (expect(error).toBeInstanceOf(TimeoutError), 'timed out'),
    )
    expect(['granted', 'timed out']).toContain(outcome)
    expect(await released).toBe('released')
    worker.postMessage('exit')
    expect(await exited).toBe(0)
    expect(sem.waiting).toBe(0)
    expect(sem.available).toBe(1)
  })

  it('moves queued waits to native memory in eventual mode and serves them all', async () => {
    binding.setFairnessClockForTest(0)
    const sem = new Semaphore(2, { fairness: 'eventual' })
    const all = sem.tryAcquire(2)!
    const first = sem.acquire()
    const heavy = sem.acquire({ weight: 2 })
    const last = sem.acquire()
    // The switch-over, with three waits queued and both permits held here.
    expect(fairnessOf(sem.handle)).toBe('eventual')
    expect(sem.waiting).toBe(3)
    const counters = countersFor(2)
    const workers = [0, 1].map((index) =>
      runWorker('hold-cycles.mjs', { task: 'hold-cycles', handle: sem.handle, counters: counters.buffer, index, cycles: 200 }),
    )
    all.release()
    // FIFO order is kept for the queued waits: heavy is not overtaken by last.
    const order: string[] = []
    await Promise.all(
      [
        ['first', first],
        ['heavy', heavy],
        ['last', last],
      ].map(async ([name, wait]) => {
        const permit = await (wait as Promise<{ release(): void }>)
        order.push(name as string)
        await new Promise((resolve) => setTimeout(resolve, 1))
        permit.release()
      }),
    )
    expect(order.indexOf('heavy')).toBeLessThan(order.indexOf('last'))
    expect(await Promise.all(workers.map((w) => w.exited))).toEqual([0, 0])
    expect(counters[MOST]).toBeLessThanOrEqual(2)
    expect(counters[HELD]).toBe(0)
    expect(sem.waiting).toBe(0)
    expect(sem.available).toBe(2)
  })

  it('never has more holders than permits while heads stay young and newcomers barge all along', async () => {
    binding.setFairnessClockForTest(0) // every head young: the most barging there can be
    const sem = new Semaphore(2, { fairness: 'eventual' })
    const counters = countersFor(4)
    const workers = Array.from({ length: 3 }, (_, index) =>
      runWorker('hold-cycles.mjs', { task: 'hold-cycles', handle: sem.handle, counters: counters.buffer, index, cycles: 500 }),
    )
    await holdCycles(sem, counters, 3, 500, 1)
    expect(await Promise.all(workers.map((w) => w.exited))).toEqual([0, 0, 0])
    expect(counters[MOST]).toBeGreaterThan(1)
    expect(counters[MOST]).toBeLessThanOrEqual(2)
    expect([...counters.slice(FIRST)]).toEqual([0, 0, 0, 0])
    expect(sem.waiting).toBe(0)
    expect(sem.available).toBe(2)
  })
})
