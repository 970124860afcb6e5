// Fault injection: workers that die in awkward places, and codecs that fail
// half-way. After each, the other threads carry on and everything is back.
import { createRequire } from 'node:module'
import { describe, expect, it } from 'vitest'
import { Channel, ClosedError, Mutex, Semaphore, type Codec } from 'sluice'
import { eventually, nextMessage, runWorker } from './helpers.js'
import { segmentDir } from './named-support.js'

describe('fault injection', () => {
  it('a worker that calls process.exit() while holding permits gives them back', async () => {
    const sem = new Semaphore(3)
    const { exited } = runWorker('exit-holding.mjs', { handle: sem.handle, exit: true })
    expect(await exited).toBe(3)
    await eventually(() => sem.available === 3)
  })

  it('a worker terminated while holding a mutex unlocks it, and the next waiter gets it', async () => {
    const sem = new Semaphore(2)
    const mutex = new Mutex()
    const { worker } = runWorker('exit-holding.mjs', { handle: sem.handle, mutex: mutex.handle, report: true })
    expect(await nextMessage(worker)).toBe('holding')
    expect(mutex.isLocked).toBe(true)
    const waiting = mutex.lock()
    await worker.terminate()
    const guard = await waiting
    expect(sem.available).toBe(2)
    guard.release()
    expect(mutex.isLocked).toBe(false)
  })

  it('a codec that throws in the middle of sendMany sends nothing (all or nothing)', async () => {
    const flaky: Codec<number> = {
      encode(value) {
        if (value === 3) throw new Error('codec failed')
        return value
      },
      decode: (message) => message as number,
    }
    const ch = new Channel({ capacity: 8, codec: flaky })
    await expect(ch.sendMany([1, 2, 3, 4])).rejects.toMatchObject({ name: 'TypeError', cause: { message: 'codec failed' } })
    expect(ch.length).toBe(0)
    expect(() => ch.trySendMany([5, 6, 3])).toThrow(TypeError)
    expect(ch.length).toBe(0)
    await ch.sendMany([8, 9])
    expect(await ch.recvMany(8)).toEqual([8, 9])
  })

  it('a codec whose decode throws rejects that receive; the next message is unaffected', async () => {
    const picky: Codec<number> = {
      encode: (value) => value,
      decode(message) {
        if (message === 13) throw new RangeError('unlucky')
        return message as number
      },
    }
    const ch = new Channel({ capacity: 4, codec: picky })
    await ch.sendMany([13, 14])
    await expect(ch.recv()).rejects.toThrow('unlucky')
    expect(await ch.recv()).toBe(14)
  })

  it('a native batch holding a value that is not a message throws, sends nothing and keeps all the room', () => {
    // Below the TypeScript layer (which encodes every value first), straight
    // at the binding: the throw must not leave half a batch or lost places.
    const binding = createRequire(import.meta.url)('../packages/node/binding.js')
    const native = new binding.NativeChannel(4)
    const handle = native.fastHandle()
    expect(() => binding.chanSendMany(handle, [1, 'not a message', 2])).toThrow(TypeError)
    expect(native.length).toBe(0)
    expect(binding.chanSendMany(handle, [1, 2, 3, 4, 5])[0]).toBe(4)
  })

  it('the raw closed calls answer what the closed getters do, and refuse a value that is not their handle', () => {
    // Doorbells read `closed` through these on every collect, before taking
    // grants: a wrong answer would withdraw granted waits or keep withdrawn ones.
    const binding = createRequire(import.meta.url)('../packages/node/binding.js')
    const semaphore = new binding.NativeSemaphore(2)
    const channel = new binding.NativeChannel(2)
    const semaphoreHandle = semaphore.fastHandle()
    const channelHandle = channel.fastHandle()
    expect([binding.semClosed(semaphoreHandle), binding.chanClosed(channelHandle)]).toEqual([false, false])
    semaphore.close()
    expect([binding.semClosed(semaphoreHandle), semaphore.closed]).toEqual([true, true])
    expect(binding.chanClosed(channelHandle)).toBe(false)
    channel.close()
    expect([binding.chanClosed(channelHandle), channel.closed]).toEqual([true, true])
    for (const value of [undefined, {}, 1, channelHandle]) expect(() => binding.semClosed(value)).toThrow(TypeError)
    for (const value of [undefined, {}, 1, semaphoreHandle]) expect(() => binding.chanClosed(value)).toThrow(TypeError)
  })

  it('a shared semaphore or channel closed through one object reads closed through another of the same thread', () => {
    const sem = new Semaphore(1)
    const other = Semaphore.from(sem.handle)
    expect(other.closed).toBe(false)
    sem.close()
    expect(other.closed).toBe(true)
    const ch = new Channel<number>({ capacity: 1, codec: 'number' })
    const otherChannel = Channel.from<number>(ch.handle)
    expect(otherChannel.closed).toBe(false)
    ch.close()
    expect(otherChannel.closed).toBe(true)
  })

  it('a named semaphore reads closed through the raw call, and its close withdraws the waits of this thread', async () => {
    // `semClosed` on a named semaphore's handle takes its own branch: the
    // getter and the doorbell's collect (which withdraws the wait) read it.
    const { dir, remove } = segmentDir()
    try {
      const sem = Semaphore.open('faults-closed', { permits: 1, dir })
      const held = sem.tryAcquire()
      expect(held).toBeDefined()
      const waiting = sem.acquire()
      expect(sem.closed).toBe(false)
      sem.close()
      expect(sem.closed).toBe(true)
      await expect(waiting).rejects.toBeInstanceOf(ClosedError)
      held!.release()
    } finally {
      remove()
    }
  })
})
