import { onAbort } from './abort.js'
import { MAX_TIMEOUT, show, validateInteger, validateOptions, validateSignal, validateTimeout } from './validate.js'

/** What each attempt of `retry` is given. */
export interface RetryContext {
  /** 1 for the first call, 2 for the first retry, ... */
  readonly attempt: number
  /** `options.signal`, or a signal that never aborts: pass it on (to `fetch`, say). */
  readonly signal: AbortSignal
}

/** What `onRetry` is told before each wait. */
export interface RetryEvent {
  /** What the attempt threw. */
  readonly error: unknown
  /** The attempt that failed (1 for the first call). */
  readonly attempt: number
  /** How long `retry` waits before the next attempt. */
  readonly delayMs: number
}

/** Exponential backoff; every delay lies within `[0, cap]`. */
export interface BackoffOptions {
  /** First delay, and the floor of decorrelated jitter, in ms (default 100). */
  base?: number
  /** Longest delay, in ms (default 10,000). */
  cap?: number
  /**
   * `'decorrelated'` (default): `min(cap, random(base, previous * 3))`, the
   * previous delay starting at `base` (the AWS Architecture Blog's
   * "Exponential Backoff And Jitter"). `'full'`: `random(0, min(cap, base *
   * 2 ** (attempt - 1)))`. `'none'`: `min(cap, base * 2 ** (attempt - 1))`.
   */
  jitter?: 'decorrelated' | 'full' | 'none'
  /** A source of numbers in `[0, 1)` (default `Math.random`): a seeded one makes delays repeatable. */
  random?: () => number
}

/** A custom backoff: the delay in ms after `attempt` failed, given the previous delay (0 at first). */
export type BackoffFunction = (attempt: number, previousDelayMs: number) => number

export interface RetryOptions {
  /** Retries after the first attempt (default 3: at most 4 calls); `Infinity` retries until the signal aborts. */
  retries?: number
  /** Backoff between attempts (default: decorrelated jitter, base 100 ms, cap 10 s). */
  backoff?: BackoffOptions | BackoffFunction
  /** Aborting it stops retrying: rejects at once with `signal.reason` if between attempts. */
  signal?: AbortSignal
  /** Whether `error` (thrown by attempt `attempt`) is worth a retry; by default every error is. */
  retryIf?: (error: unknown, attempt: number) => boolean | PromiseLike<boolean>
  /** Called before each wait; may throw to stop retrying with that error. */
  onRetry?: (event: RetryEvent) => void
}

/** A signal that never aborts, for attempts when the caller gave none. */
const never = new AbortController().signal

const kDefaultBackoff = Object.freeze({ base: 100, cap: 10_000, jitter: 'decorrelated', random: Math.random })

/**
 * Calls `fn` until it fulfils, at most `1 + retries` times, waiting a backoff
 * between attempts. Rejects with the last attempt's error once retries run out
 * or `retryIf` declines one: the caller's `instanceof` and `code` checks keep
 * working (the earlier errors are seen by `onRetry`). Rejects with
 * `signal.reason` as soon as the signal aborts between attempts or during a
 * wait; during an attempt, `fn` has the signal and decides.
 */
export async function retry<T>(fn: (context: RetryContext) => T | PromiseLike<T>, options?: RetryOptions): Promise<Awaited<T>> {
  if (typeof fn !== 'function') throw new TypeError(`fn must be a function, got ${show(fn)}`)
  const opts = validateOptions<RetryOptions>(options, 'options')
  const retries = opts.retries === Infinity ? Infinity : validateInteger(opts.retries ?? 3, 'options.retries', 0, Number.MAX_SAFE_INTEGER)
  const signal = validateSignal(opts.signal, 'options.signal')
  const retryIf = validateFunction(opts.retryIf, 'options.retryIf')
  const onRetry = validateFunction(opts.onRetry, 'options.onRetry')
  const delay = backoffOf(opts.backoff)
  let previous = 0
  for (let attempt = 1; ; attempt++) {
    if (signal?.aborted) throw signal.reason
    try {
      return await fn({ attempt, signal: signal ?? never })
    } catch (error) {
      if (signal?.aborted) throw signal.reason
      if (attempt > retries) throw error
      if (retryIf !== undefined && !(await retryIf(error, attempt))) throw error
      previous = delay(attempt, previous)
      onRetry?.({ error, attempt, delayMs: previous })
      await sleep(previous, signal)
    }
  }
}

function validateFunction<F>(value: F | undefined, name: string): F | undefined {
  if (value !== undefined && typeof value !== 'function') throw new TypeError(`${name} must be a function, got ${show(value)}`)
  return value
}

/** The delay function `backoff` describes, checked. */
function backoffOf(backoff: BackoffOptions | BackoffFunction | undefined): BackoffFunction {
  if (typeof backoff === 'function') {
    return (attempt, previous) => {
      const ms = backoff(attempt, previous)
      // Checked on each call: a NaN or negative delay would fire at once, silently.
      return validateTimeout(ms, 'the delay options.backoff returned') as number
    }
  }
  const opts = { ...kDefaultBackoff, ...validateOptions<BackoffOptions>(backoff, 'options.backoff') }
  const { base, cap, jitter, random } = opts
  validateTimeout(base, 'options.backoff.base')
  validateTimeout(cap, 'options.backoff.cap')
  if (cap < base) throw new RangeError(`options.backoff.cap must be >= options.backoff.base (${base}), got ${show(cap)}`)
  validateFunction(random, 'options.backoff.random')
  const draw = (): number => {
    const r = random()
    if (!(r >= 0 && r < 1)) throw new RangeError(`options.backoff.random must return a number in [0, 1), got ${show(r)}`)
    return r
  }
  // 2 ** (attempt - 1) overflows to Infinity past attempt ~1024; min(cap, ...) keeps it finite.
  const exponential = (attempt: number): number => Math.min(cap, base * 2 ** (attempt - 1))
  switch (jitter) {
    case 'decorrelated':
      return (_attempt, previous) => Math.round(Math.min(cap, base + draw() * (Math.max(previous, base) * 3 - base)))
    case 'full':
      return (attempt) => Math.round(draw() * exponential(attempt))
    case 'none':
      return (attempt) => Math.round(exponential(attempt))
    default:
      throw new TypeError(`options.backoff.jitter must be 'decorrelated', 'full' or 'none', got ${show(jitter)}`)
  }
}

/** Resolves after `ms`, or rejects with `signal.reason` the moment it aborts; leaves no timer or listener behind. */
function sleep(ms: number, signal: AbortSignal | undefined): Promise<void> {
  if (ms > MAX_TIMEOUT) ms = MAX_TIMEOUT
  return new Promise((resolve, reject) => {
    // It may have aborted while `retryIf` was awaited: its 'abort' is past.
    if (signal?.aborted) {
      reject(signal.reason)
      return
    }
    if (signal === undefined) {
      setTimeout(resolve, ms)
      return
    }
    const timer = setTimeout(() => {
      unsubscribe()
      resolve()
    }, ms)
    const unsubscribe = onAbort(signal, () => {
      clearTimeout(timer)
      reject(signal.reason)
    })
  })
}
