import { onCancellation } from './abort.js'
import { show, validateOptions, validateSignal, validateTimeout } from './validate.js'

export interface TimeoutOptions {
  /** Aborting it aborts `fn`'s signal too and rejects at once with `signal.reason`. */
  signal?: AbortSignal
}

/**
 * Runs `fn` with a deadline. `fn` gets a signal that aborts at the deadline
 * (its reason a `TimeoutError`) or when `options.signal` aborts (with that
 * reason); the promise settles as `fn`'s does, or rejects with that reason at
 * that moment even if `fn` ignores its signal (what it settles with later is
 * dropped, and a rejection of it is handled, never unhandled). The timer and
 * the listener are gone once the promise settles: nothing keeps the process
 * alive after it.
 *
 * @param ms the deadline, 0 to 2^31 - 1 ms
 */
export function timeout<T>(
  fn: (signal: AbortSignal) => T | PromiseLike<T>,
  ms: number,
  options?: TimeoutOptions,
): Promise<Awaited<T>> {
  let signal: AbortSignal | undefined
  try {
    if (typeof fn !== 'function') throw new TypeError(`fn must be a function, got ${show(fn)}`)
    if (ms === undefined) throw new TypeError('ms must be a number of milliseconds, got undefined')
    validateTimeout(ms, 'ms')
    signal = validateSignal(validateOptions<TimeoutOptions>(options, 'options').signal, 'options.signal')
  } catch (error) {
    return Promise.reject(error)
  }
  if (signal?.aborted) return Promise.reject(signal.reason)
  const controller = new AbortController()
  return new Promise<Awaited<T>>((resolve, reject) => {
    // Neither the timer nor the signal can fire before this returns (the
    // signal was not aborted above), so `disconnect` is set when they do.
    const disconnect = onCancellation(signal, ms, (reason) => {
      disconnect()
      controller.abort(reason)
      reject(reason)
    })
    let result: T | PromiseLike<T>
    try {
      result = fn(controller.signal)
    } catch (error) {
      disconnect()
      reject(error)
      return
    }
    Promise.resolve(result).then(
      (value) => {
        disconnect()
        resolve(value)
      },
      (error: unknown) => {
        disconnect()
        reject(error)
      },
    )
  })
}
