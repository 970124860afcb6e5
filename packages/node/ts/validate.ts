import { inspect } from 'node:util'

/** Shows a bad value in an error message: strings quoted, objects abridged. */
export function show(value: unknown): string {
  return inspect(value, { depth: 0, breakLength: Infinity, maxStringLength: 40 })
}

/**
 * Checks that `value` is an integer in `[min, max]`, following Node's own
 * convention: a non-number is a TypeError, a number out of range or with a
 * fraction is a RangeError.
 */
export function validateInteger(value: unknown, name: string, min: number, max: number): number {
  if (typeof value !== 'number') {
    throw new TypeError(`${name} must be an integer, got ${show(value)}`)
  }
  if (!Number.isInteger(value) || value < min || value > max) {
    const range = max === Number.MAX_SAFE_INTEGER ? `>= ${min}` : `between ${min} and ${max}`
    throw new RangeError(`${name} must be an integer ${range}, got ${show(value)}`)
  }
  return value
}

/** Longest delay `setTimeout` honours (2^31 - 1 ms); longer ones fire at once. */
export const MAX_TIMEOUT = 2 ** 31 - 1

export function validateTimeout(value: unknown, name: string): number | undefined {
  if (value === undefined) return undefined
  if (typeof value !== 'number') {
    throw new TypeError(`${name} must be a number of milliseconds, got ${show(value)}`)
  }
  if (Number.isNaN(value) || value < 0 || value > MAX_TIMEOUT) {
    throw new RangeError(`${name} must be between 0 and ${MAX_TIMEOUT} ms, got ${show(value)}`)
  }
  return value
}

export function validateSignal(value: unknown, name: string): AbortSignal | undefined {
  if (value === undefined) return undefined
  if (!(value instanceof AbortSignal)) {
    throw new TypeError(`${name} must be an AbortSignal, got ${show(value)}`)
  }
  return value
}

export function validateOptions<T extends object>(value: unknown, name: string): Partial<T> {
  if (value === undefined || value === null) return {}
  if (typeof value !== 'object') {
    throw new TypeError(`${name} must be an object, got ${show(value)}`)
  }
  return value as Partial<T>
}

/**
 * The name of a primitive opened by name (`Semaphore.open(name, ...)`):
 * 1 to 64 characters of `[A-Za-z0-9_-]`, starting with a letter or digit,
 * so that it is safe in a file name, a shared-memory name and a Redis key.
 */
export function validateName(value: unknown, name = 'name'): string {
  if (typeof value !== 'string') throw new TypeError(`${name} must be a string, got ${show(value)}`)
  if (!/^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$/.test(value)) {
    throw new RangeError(
      `${name} must be 1 to 64 characters of A-Z, a-z, 0-9, '_' and '-', starting with a letter or digit, got ${show(value)}`,
    )
  }
  return value
}

/**
 * How a contended semaphore chooses who gets a released permit:
 * - `'fifo'` (the default): the longest waiter, always (a hand-off: the
 *   waiter's thread, process or machine has to wake up before the permit is used);
 * - `'eventual'`: whoever asks first may take it (barging), until the longest
 *   waiter has waited `FAIR_AFTER_MS` since it was queued; from then on that
 *   waiter is served first, as in `'fifo'`. Faster under contention; no
 *   waiter waits more than `FAIR_AFTER_MS` (plus a hold and a wake-up)
 *   beyond its FIFO turn.
 * - `'eventual-head'`: as `'eventual'`, but the `FAIR_AFTER_MS` counts from
 *   the first release that finds the waiter first in line. Under steady
 *   contention `'eventual'` hands off at nearly every release (the next
 *   waiter has waited as long as the last), and each hand-off waits for a
 *   sleeping thread to wake; here each waiter in turn may be passed over for
 *   `FAIR_AFTER_MS`, so the k-th in line may wait about k times that beyond
 *   its FIFO turn. The most throughput under contention.
 */
export type Fairness = 'fifo' | 'eventual' | 'eventual-head'

const FAIRNESS: readonly string[] = ['fifo', 'eventual', 'eventual-head'] satisfies Fairness[]

export function validateFairness(value: unknown, name: string): Fairness {
  if (value === undefined) return 'fifo'
  const expected = `'fifo', 'eventual' or 'eventual-head'`
  if (typeof value !== 'string') throw new TypeError(`${name} must be ${expected}, got ${show(value)}`)
  if (!FAIRNESS.includes(value)) throw new RangeError(`${name} must be ${expected}, got ${show(value)}`)
  return value as Fairness
}
