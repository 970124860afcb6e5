import { describe, expect, it, vi } from 'vitest'
import { timeout, TimeoutError } from 'sluice'

function timers(): number {
  return process.getActiveResourcesInfo().filter((kind) => kind === 'Timeout').length
}

const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms))

describe('timeout', () => {
  it("settles as fn does and clears its timer: no timer keeps the process alive", async () => {
    const before = timers()
    await expect(timeout(async () => 'value', 60_000)).resolves.toBe('value')
    await expect(timeout(() => Promise.reject(new Error('boom')), 60_000)).rejects.toThrow('boom')
    expect(timers()).toBe(before)
  })

  it('rejects with a TimeoutError at the deadline and aborts the signal fn got with it', async () => {
    let seen: AbortSignal | undefined
    const never = new Promise<never>(() => {})
    const error = await timeout(
      (signal) => {
        seen = signal
        return never
      },
      20,
    ).catch((e: unknown) => e)
    expect(error).toBeInstanceOf(TimeoutError)
    expect(error).toHaveProperty('code', 'ERR_SLUICE_TIMEOUT')
    expect(error).toHaveProperty('message', 'timed out after 20 ms')
    expect(seen!.aborted).toBe(true)
    expect(seen!.reason).toBe(error)
  })

  it('rejects at the deadline even when fn ignores its signal, and a later rejection of fn is handled', async () => {
    const unhandled = vi.fn()
    process.on('unhandledRejection', unhandled)
    try {
      const error = await timeout(() => sleep(50).then(() => Promise.reject(new Error('late'))), 10).catch((e: unknown) => e)
      expect(error).toBeInstanceOf(TimeoutError)
      await sleep(80)
      expect(unhandled).not.toHaveBeenCalled()
    } finally {
      process.off('unhandledRejection', unhandled)
    }
  })

  it("rejects with the outer signal's reason when it aborts first, aborting fn's signal too", async () => {
    const before = timers()
    const controller = new AbortController()
    const reason = new Error('caller left')
    let seen: AbortSignal | undefined
    const outcome = timeout(
      (signal) => {
        seen = signal
        return new Promise<never>(() => {})
      },
      60_000,
      { signal: controller.signal },
    )
    controller.abort(reason)
    await expect(outcome).rejects.toBe(reason)
    expect(seen!.reason).toBe(reason)
    expect(timers()).toBe(before)
  })

  it("rejects with the signal's reason without calling fn when it is already aborted", async () => {
    const fn = vi.fn(() => 1)
    const reason = new Error('already')
    await expect(timeout(fn, 100, { signal: AbortSignal.abort(reason) })).rejects.toBe(reason)
    expect(fn).not.toHaveBeenCalled()
  })

  it('turns a synchronous throw of fn into a rejection and clears the timer', async () => {
    const before = timers()
    const outcome = timeout(() => {
      throw new Error('sync')
    }, 60_000)
    await expect(outcome).rejects.toThrow('sync')
    expect(timers()).toBe(before)
  })

  it.each([
    [() => 1, -1, undefined, RangeError, 'ms must be between 0 and 2147483647 ms, got -1'],
    [() => 1, Number.NaN, undefined, RangeError, 'ms must be between 0'],
    [() => 1, '10', undefined, TypeError, "ms must be a number of milliseconds, got '10'"],
    [() => 1, undefined, undefined, TypeError, 'ms must be a number of milliseconds, got undefined'],
    [() => 1, 10, { signal: 'x' }, TypeError, "options.signal must be an AbortSignal, got 'x'"],
    ['fn', 10, undefined, TypeError, "fn must be a function, got 'fn'"],
  ])('rejects bad arguments (%o, %o, %o) with a %O naming the field', async (fn, ms, options, type, message) => {
    const outcome = timeout(fn as never, ms as never, options as never)
    await expect(outcome).rejects.toThrow(type)
    await expect(outcome).rejects.toThrow(message)
  })
})
