// The fast path of a semaphore shared by threads, run in JavaScript on the
// native semaphore's words (ts/fast-semaphore.ts): what it takes is this
// thread's as if native code had taken it, and the 32 bits it sees of the
// count are enough, whatever the count. Its behaviour across threads (FIFO
// hand-off, eventual barging, a dead thread's permits coming back) is the
// subject of cross-thread.test.ts and semaphore-eventual*.test.ts, which
// run on it.
import { describe, expect, it } from 'vitest'
import { MAX_PERMITS, Semaphore } from 'sluice'

describe.each(['fifo', 'eventual', 'eventual-head'] as const)('Semaphore fast path, shared (%s)', (fairness) => {
  it('counts a permit taken without a native call as held by this thread', () => {
    const sem = new Semaphore(2, { fairness })
    void sem.handle
    const permit = sem.tryAcquire()!
    // Native code decides a forget by this thread's held count: it must know of the take.
    permit.forget()
    expect(sem.capacity).toBe(1)
    expect(sem.available).toBe(1)
    const weighted = sem.tryAcquire()!
    weighted.release()
    weighted.release()
    expect(sem.available).toBe(1)
  })

  it('keeps counts of 2^30 and more exact across the low word (borrow and carry go native)', async () => {
    // 2^30 free: the low 32 bits of `count << 2` are all zero.
    const big = new Semaphore(2 ** 30, { fairness })
    void big.handle
    const one = big.tryAcquire()!
    expect(big.available).toBe(2 ** 30 - 1)
    // Giving it back carries into the high half.
    one.release()
    expect(big.available).toBe(2 ** 30)

    // 2^30 + 1 free: the low word shows one permit, the request is for two.
    const odd = new Semaphore(2 ** 30 + 1, { fairness })
    void odd.handle
    const two = (await odd.acquire({ weight: 2 }))
    expect(odd.available).toBe(2 ** 30 - 1)
    two.release()
    expect(odd.available).toBe(2 ** 30 + 1)

    const most = new Semaphore(MAX_PERMITS, { fairness })
    void most.handle
    const permits = [most.tryAcquire()!, most.tryAcquire(3)!, await most.acquire()]
    expect(most.available).toBe(MAX_PERMITS - 5)
    for (const permit of permits) permit.release()
    expect(most.available).toBe(MAX_PERMITS)
  })

  it('goes native once closed: takes throw, releases still count', async () => {
    const sem = new Semaphore(2, { fairness })
    void sem.handle
    const permit = sem.tryAcquire()!
    sem.close()
    expect(() => sem.tryAcquire()).toThrow(/closed/)
    await expect(sem.acquire()).rejects.toThrow(/closed/)
    permit.release()
    expect(sem.available).toBe(2)
  })
})
