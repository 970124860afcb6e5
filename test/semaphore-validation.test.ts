import { describe, expect, it } from 'vitest'
import { InvalidHandleError, Semaphore, type LocalSemaphoreHandle } from 'sluice'

describe('Semaphore validation', () => {
  it.each([
    [-1, RangeError, /permits must be an integer between 1 and \d+, got -1/],
    [0, RangeError, /permits .* got 0/],
    [1.5, RangeError, /permits .* got 1\.5/],
    [Number.NaN, RangeError, /permits .* got NaN/],
    [2 ** 31, RangeError, /permits .* got 2147483648/],
    ['3', TypeError, /permits must be an integer, got '3'/],
    [undefined, TypeError, /permits must be an integer, got undefined/],
    [3n, TypeError, /permits must be an integer, got 3n/],
  ])('new Semaphore(%s) throws a %O naming the field', (permits, type, message) => {
    expect(() => new Semaphore(permits as number)).toThrow(type)
    expect(() => new Semaphore(permits as number)).toThrow(message)
  })

  it('acquire({ weight: 0 }) rejects with a RangeError naming options.weight', async () => {
    const sem = new Semaphore(3)
    await expect(sem.acquire({ weight: 0 })).rejects.toThrow(RangeError)
    await expect(sem.acquire({ weight: 0 })).rejects.toThrow('options.weight must be an integer between 1 and 3, got 0')
  })

  it('acquire({ weight: permits + 1 }) rejects instead of waiting forever', async () => {
    const sem = new Semaphore(3)
    await expect(sem.acquire({ weight: 4 })).rejects.toThrow(
      new RangeError('options.weight must be an integer between 1 and 3, got 4'),
    )
    expect(sem.waiting).toBe(0)
  })

  it.each([
    [{ weight: '2' }, TypeError, "options.weight must be an integer, got '2'"],
    [{ weight: 1.5 }, RangeError, 'options.weight must be an integer between 1 and 3, got 1.5'],
    [{ signal: {} }, TypeError, 'options.signal must be an AbortSignal, got {}'],
    [{ signal: 'abort' }, TypeError, "options.signal must be an AbortSignal, got 'abort'"],
    [{ timeout: -1 }, RangeError, 'options.timeout must be between 0 and 2147483647 ms, got -1'],
    [{ timeout: Number.NaN }, RangeError, 'options.timeout must be between 0 and 2147483647 ms, got NaN'],
    [{ timeout: '10' }, TypeError, "options.timeout must be a number of milliseconds, got '10'"],
    [42, TypeError, 'options must be an object, got 42'],
  ])('acquire(%o) rejects with a %O naming the field', async (options, type, message) => {
    const sem = new Semaphore(3)
    const error = await sem.acquire(options as never).catch((e: unknown) => e)
    expect(error).toBeInstanceOf(type)
    expect((error as Error).message).toBe(message)
    expect(sem.available).toBe(3)
    expect(sem.waiting).toBe(0)
  })

  it('tryAcquire validates its weight synchronously', () => {
    const sem = new Semaphore(2)
    expect(() => sem.tryAcquire(0)).toThrow(new RangeError('weight must be an integer between 1 and 2, got 0'))
    expect(() => sem.tryAcquire(3)).toThrow(RangeError)
    expect(() => sem.tryAcquire('1' as never)).toThrow(TypeError)
    expect(sem.available).toBe(2)
  })

  it.each([
    [null, TypeError],
    [{}, TypeError],
    [{ kind: 'sluice:Semaphore', id: 1, doorbells: new ArrayBuffer(1024) }, TypeError],
    [{ kind: 'sluice:Semaphore', id: '1', doorbells: new SharedArrayBuffer(1024) }, TypeError],
  ])('Semaphore.from(%o) throws a TypeError for something that is not a handle', (handle, type) => {
    expect(() => Semaphore.from(handle as never)).toThrow(type)
  })

  it('Semaphore.from a forged id throws InvalidHandleError', () => {
    const { doorbells } = new Semaphore(1).handle as LocalSemaphoreHandle
    for (const id of [0, -1, 1.5, 2 ** 40, Number.NaN]) {
      const error = (() => {
        try {
          Semaphore.from({ kind: 'sluice:Semaphore', id, doorbells })
        } catch (e) {
          return e
        }
      })()
      expect(error).toBeInstanceOf(InvalidHandleError)
      expect(error).toMatchObject({ code: 'ERR_SLUICE_INVALID_HANDLE' })
    }
  })
})
