import { MAX_TIMEOUT, show, validateInteger, validateOptions, validateTimeout } from './validate.js'

export interface CircuitBreakerOptions {
  /**
   * Consecutive-failures mode (the default, with 5): the circuit opens when
   * this many calls in a row failed. Exclusive with `failureRate`.
   */
  consecutiveFailures?: number
  /**
   * Failure-rate mode: the circuit opens when at least this fraction (in
   * `(0, 1]`) of the calls that ended in the last `window` ms failed, once
   * `minimumCalls` of them ended.
   */
  failureRate?: number
  /** Failure-rate mode: the rolling window, in ms (default 10,000). */
  window?: number
  /** Failure-rate mode: how many slices the window rolls by (default 10, at most 1,000). */
  buckets?: number
  /** Failure-rate mode: calls the window must hold before the rate counts (default 10). */
  minimumCalls?: number
  /** How long the circuit stays open before letting trial calls through, in ms (default 10,000). */
  openDuration?: number
  /**
   * With a value above `openDuration`, each reopening after failed trials
   * doubles the open duration, up to this (default `openDuration`: no backoff).
   */
  maxOpenDuration?: number
  /** Trial calls let through while half-open; all must succeed to close (default 1, at most 65,535). */
  halfOpenTrials?: number
  /**
   * A trial that has not reported after this many ms (its thread was
   * terminated, say) counts as failed: the next call refused for lack of
   * trial budget reopens the circuit (default 30,000).
   */
  trialTimeout?: number
  /**
   * Whether an error counts as a failure (default: every error does). An
   * error it declines counts as a success: the dependency answered. A
   * function cannot cross threads, so each thread gives its own (to
   * `CircuitBreaker.from(handle, { isFailure })`).
   */
  isFailure?: (error: unknown) => boolean
}

/** What each thread may set for itself in `CircuitBreaker.from`. */
export interface CircuitBreakerLocalOptions {
  isFailure?: (error: unknown) => boolean
}

/** The options every thread shares, checked, defaults filled in: plain numbers, carried by the handle. */
export interface BreakerConfig {
  readonly mode: 'consecutive' | 'rate'
  readonly consecutiveFailures: number
  readonly failureRate: number
  readonly window: number
  readonly buckets: number
  readonly minimumCalls: number
  readonly openDuration: number
  readonly maxOpenDuration: number
  readonly halfOpenTrials: number
  readonly trialTimeout: number
}

const kDefaults = Object.freeze({
  consecutiveFailures: 5,
  window: 10_000,
  buckets: 10,
  minimumCalls: 10,
  openDuration: 10_000,
  halfOpenTrials: 1,
  trialTimeout: 30_000,
})

/** Most trial calls: a trial counter holds them in 16 bits beside a generation tag. */
export const MAX_TRIALS = 0xffff
export const MAX_BUCKETS = 1000

/**
 * Checks the shared options (`name` is `options` or `handle.config`) and
 * fills in the defaults. Throws a TypeError or RangeError naming the field.
 */
export function breakerConfig(options: unknown, name: string): BreakerConfig {
  const opts = validateOptions<CircuitBreakerOptions & { mode?: unknown }>(options, name)
  const rate = opts.failureRate !== undefined
  if (rate && opts.consecutiveFailures !== undefined) {
    throw new TypeError(`${name}.consecutiveFailures and ${name}.failureRate choose different modes: give one of them`)
  }
  if (!rate) {
    for (const field of ['window', 'buckets', 'minimumCalls'] as const) {
      if (opts[field] !== undefined) throw new TypeError(`${name}.${field} needs ${name}.failureRate (the failure-rate mode)`)
    }
  }
  const consecutiveFailures = validateInteger(opts.consecutiveFailures ?? kDefaults.consecutiveFailures, `${name}.consecutiveFailures`, 1, 2 ** 31 - 1)
  let failureRate = 1
  if (rate) {
    failureRate = opts.failureRate as number
    if (typeof failureRate !== 'number') throw new TypeError(`${name}.failureRate must be a number, got ${show(failureRate)}`)
    if (!(failureRate > 0 && failureRate <= 1)) throw new RangeError(`${name}.failureRate must be in (0, 1], got ${show(failureRate)}`)
  }
  const window = positiveMs(opts.window ?? kDefaults.window, `${name}.window`)
  const buckets = validateInteger(opts.buckets ?? kDefaults.buckets, `${name}.buckets`, 1, MAX_BUCKETS)
  if (window / buckets < 1) throw new RangeError(`${name}.window / ${name}.buckets must be at least 1 ms, got ${window} / ${buckets}`)
  const minimumCalls = validateInteger(opts.minimumCalls ?? kDefaults.minimumCalls, `${name}.minimumCalls`, 1, 2 ** 31 - 1)
  const openDuration = validateTimeout(opts.openDuration ?? kDefaults.openDuration, `${name}.openDuration`) as number
  const maxOpenDuration = validateTimeout(opts.maxOpenDuration ?? openDuration, `${name}.maxOpenDuration`) as number
  if (maxOpenDuration < openDuration) {
    throw new RangeError(`${name}.maxOpenDuration must be >= ${name}.openDuration (${openDuration}), got ${show(maxOpenDuration)}`)
  }
  const halfOpenTrials = validateInteger(opts.halfOpenTrials ?? kDefaults.halfOpenTrials, `${name}.halfOpenTrials`, 1, MAX_TRIALS)
  const trialTimeout = positiveMs(opts.trialTimeout ?? kDefaults.trialTimeout, `${name}.trialTimeout`)
  return Object.freeze({
    mode: rate ? 'rate' : 'consecutive',
    consecutiveFailures,
    failureRate,
    window,
    buckets,
    minimumCalls,
    openDuration,
    maxOpenDuration,
    halfOpenTrials,
    trialTimeout,
  })
}

function positiveMs(value: unknown, name: string): number {
  const ms = validateTimeout(value, name) as number
  if (ms < 1) throw new RangeError(`${name} must be between 1 and ${MAX_TIMEOUT} ms, got ${show(value)}`)
  return ms
}

/** The per-thread `isFailure`, checked. */
export function isFailureOf(options: unknown, name: string): (error: unknown) => boolean {
  const { isFailure } = validateOptions<CircuitBreakerLocalOptions>(options, name)
  if (isFailure === undefined) return always
  if (typeof isFailure !== 'function') throw new TypeError(`${name}.isFailure must be a function, got ${show(isFailure)}`)
  return isFailure
}

const always = (): boolean => true
