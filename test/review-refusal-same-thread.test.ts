// A refusal or a close must reach a wait promptly even when the wait was
// queued through another Semaphore object of the same thread (same native
// attachment and doorbell slot). Before the fix, the own-slot ring only ran
// Doorbell.collect on the forgetting (or closing) object, which returns early
// when that object has no waits of its own: the wait sat until the 50 ms poll.
import { describe, expect, it } from 'vitest'
import { Semaphore } from 'sluice'

/** Settled within `ms`, without relying on the doorbell's 50 ms safety-net poll. */
async function settledWithin(promise: Promise<unknown>, ms: number): Promise<boolean> {
  let settled = false
  promise.then(
    () => (settled = true),
    () => (settled = true),
  )
  await new Promise((resolve) => setTimeout(resolve, ms))
  return settled
}

describe('review: refusals in one thread', () => {
  it('a wait queued through a second Semaphore object of the same thread is refused at once, not at the next poll', async () => {
    const sem = new Semaphore(3)
    const same = Semaphore.from(sem.handle) // same thread, same native attachment and slot
    const a = sem.tryAcquire(1)!
    const b = sem.tryAcquire(2)!
    const heavy = same.acquire({ weight: 3 }).catch((e: unknown) => e)
    a.forget() // capacity 2: the wait for 3 is refused
    expect(await settledWithin(heavy, 10)).toBe(true)
    expect(await heavy).toBeInstanceOf(RangeError)
    b.release()
    expect(sem.available).toBe(2)
  })

  it('a wait queued through a second Semaphore object of the same thread is withdrawn at once by close', async () => {
    const sem = new Semaphore(1)
    const same = Semaphore.from(sem.handle)
    const held = sem.tryAcquire(1)!
    const waiting = same.acquire().catch((e: unknown) => e)
    sem.close()
    expect(await settledWithin(waiting, 10)).toBe(true)
    held.release()
  })
})
