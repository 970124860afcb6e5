import { describe, expect, it } from 'vitest'
import { Mutex, Semaphore, TimeoutError } from 'sluice'
import { runWorker } from './helpers.js'

describe('Mutex', () => {
  it('lock excludes, and the guard unlocks', async () => {
    const mutex = new Mutex()
    const guard = await mutex.lock()
    expect(mutex.isLocked).toBe(true)
    expect(mutex.tryLock()).toBeNull()
    guard.release()
    expect(mutex.isLocked).toBe(false)
    const again = mutex.tryLock()
    expect(again).not.toBeNull()
    again!.release()
  })

  it('runExclusive serialises critical sections and unlocks on throw', async () => {
    const mutex = new Mutex()
    let inside = 0
    let most = 0
    const section = async (): Promise<void> => {
      most = Math.max(most, ++inside)
      await new Promise((resolve) => setImmediate(resolve))
      inside--
    }
    await Promise.all(Array.from({ length: 20 }, () => mutex.runExclusive(section)))
    expect(most).toBe(1)
    await expect(mutex.runExclusive(() => Promise.reject(new Error('x')))).rejects.toThrow('x')
    expect(mutex.isLocked).toBe(false)
  })

  it('lock takes a timeout and a signal', async () => {
    const mutex = new Mutex()
    const guard = mutex.tryLock()!
    await expect(mutex.lock({ timeout: 10 })).rejects.toBeInstanceOf(TimeoutError)
    await expect(mutex.lock({ signal: AbortSignal.abort('no') })).rejects.toBe('no')
    guard.release()
  })

  it('is shared with workers through its handle', async () => {
    const mutex = new Mutex()
    const counters = new Int32Array(new SharedArrayBuffer(8))
    const workers = Array.from({ length: 3 }, () =>
      runWorker('mutex-sections.mjs', { handle: mutex.handle, counters: counters.buffer, sections: 200 }),
    )
    expect(await Promise.all(workers.map((w) => w.exited))).toEqual([0, 0, 0])
    expect(counters[1]).toBe(1) // most inside at once
    expect(mutex.isLocked).toBe(false)
  })

  it('lock and runExclusive honour priority: higher first, arrival order within one', async () => {
    const mutex = new Mutex()
    const guard = mutex.tryLock()!
    const order: string[] = []
    const waits = [
      mutex.lock().then((g) => (order.push('lock 0'), g.release())),
      mutex.runExclusive(() => void order.push('run 5'), { priority: 5 }),
      mutex.lock({ priority: 10 }).then((g) => (order.push('lock 10'), g.release())),
      mutex.runExclusive(() => void order.push('run -1'), { priority: -1 }),
      mutex.lock({ priority: 5 }).then((g) => (order.push('lock 5'), g.release())),
    ]
    guard.release()
    await Promise.all(waits)
    expect(order).toEqual(['lock 10', 'run 5', 'lock 5', 'lock 0', 'run -1'])
  })

  it('lock rejects a priority outside the 32-bit range with a RangeError naming it', async () => {
    const mutex = new Mutex()
    await expect(mutex.lock({ priority: 2 ** 31 })).rejects.toThrow(
      new RangeError('options.priority must be an integer between -2147483648 and 2147483647, got 2147483648'),
    )
    await expect(mutex.runExclusive(() => 1, { priority: 0.5 })).rejects.toThrow(RangeError)
  })

  it('refuses a semaphore of more than one permit', () => {
    expect(() => new Mutex(new Semaphore(2))).toThrow(RangeError)
  })
})
