import { once } from 'node:events'
import { Worker } from 'node:worker_threads'
import { describe, expect, it } from 'vitest'
import { ClosedError, Semaphore } from 'sluice'
// Internal module: the doorbell's collect order is what is under test.
import { Doorbell, nextToken, type NativeWaitable, type Wait } from '../packages/node/dist/doorbell.js'
import { fixture } from './helpers.js'

describe('a grant racing close', () => {
  it('collect resolves a wait granted between its reads, even when the close lands in the same window', () => {
    // A fake primitive on which one wait is granted and the primitive then
    // closed, both while collect is between its two native reads (the
    // moment another thread's release and close can land).
    const token = nextToken()
    let granted: number[] | null = null
    let closed = false
    let reads = 0
    const landBetweenReads = (): void => {
      if (++reads === 1) {
        granted = [token]
        closed = true
      }
    }
    const native: NativeWaitable = {
      slot: 0,
      takeGranted() {
        const out = granted
        granted = null
        landBetweenReads()
        return out
      },
      isClosed() {
        const out = closed
        landBetweenReads()
        return out
      },
    }
    const doorbell = new Doorbell(native, new Int32Array(new SharedArrayBuffer(4)))
    const outcomes: string[] = []
    const wait: Wait = { onGrant: () => outcomes.push('granted'), onWithdrawn: () => outcomes.push('withdrawn') }
    // wait() collects once as it starts listening; collect again as a ring would.
    doorbell.wait(token, wait)
    doorbell.collect()
    expect(outcomes).toEqual(['granted'])
    expect(doorbell.size).toBe(0)
  })

  it('permits are conserved when a release in one thread and a close in another race the main thread collecting', async () => {
    const control = new SharedArrayBuffer(8)
    const flags = new Int32Array(control)
    const closer = new Worker(fixture('close-race.mjs'), { workerData: { role: 'closer', control } })
    const ringer = new Worker(fixture('close-race.mjs'), { workerData: { role: 'ringer', control } })
    const next = (worker: Worker): Promise<Record<string, unknown>> =>
      once(worker, 'message').then(([message]) => message as Record<string, unknown>)
    const rounds = 1_500
    let resolved = 0
    let rejected = 0
    const lost: number[] = []
    try {
      for (let round = 1; round <= rounds; round++) {
        const sem = new Semaphore(1)
        const ready = [next(closer), next(ringer)]
        closer.postMessage({ handle: sem.handle, round })
        ringer.postMessage({ handle: sem.handle, round })
        const [fromCloser] = await Promise.all(ready)
        expect(fromCloser).toEqual({ round, held: true })
        const acquired = sem.acquire()
        expect(sem.waiting).toBe(1)
        const done = [next(closer), next(ringer)]
        Atomics.store(flags, 0, round)
        Atomics.notify(flags, 0)
        const outcome = await acquired.then(
          (permit) => permit,
          (error: unknown) => error,
        )
        Atomics.store(flags, 1, round)
        await Promise.all(done)
        if (outcome instanceof ClosedError) {
          rejected++
        } else {
          resolved++
          ;(outcome as { release(): void }).release()
        }
        // Nobody holds anything now: the one permit must be free again.
        if (sem.available !== 1) lost.push(round)
      }
    } finally {
      await Promise.all([closer.terminate(), ringer.terminate()])
    }
    expect(lost).toEqual([])
    expect(resolved + rejected).toBe(rounds)
  }, 120_000)
})
