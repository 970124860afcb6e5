import { EventEmitter } from 'node:events'
import {
  breakerConfig,
  isFailureOf,
  type BreakerConfig,
  type CircuitBreakerLocalOptions,
  type CircuitBreakerOptions,
} from './circuit-breaker-options.js'
import { BreakerState, bufferBytes, BROKEN_OPEN, type OpenReason, type Transition } from './circuit-breaker-state.js'
import { Errors } from './errors.js'
import { kAttach } from './symbols.js'
import { show, validateOptions } from './validate.js'

export type { CircuitBreakerLocalOptions, CircuitBreakerOptions } from './circuit-breaker-options.js'
export type { OpenReason } from './circuit-breaker-state.js'

export type CircuitState = 'closed' | 'open' | 'halfOpen'

/**
 * A plain, cloneable description of a circuit breaker, to pass to another
 * thread (`postMessage`, `workerData`); `CircuitBreaker.from(handle)` there
 * gives the same breaker. Its state lives in `buffer`, which stays alive as
 * long as any thread holds the handle or a breaker made from it.
 */
export interface CircuitBreakerHandle {
  readonly kind: 'sluice:CircuitBreaker'
  readonly buffer: SharedArrayBuffer
  /** When the breaker was created, in ms since the epoch: the zero of its deadlines. */
  readonly origin: number
  /** The options every thread shares (all but `isFailure`). */
  readonly options: Readonly<Omit<CircuitBreakerOptions, 'isFailure'>>
}

/** What the `'open'` event carries. */
export interface OpenEvent {
  readonly reason: OpenReason
  /** How long this opening lasts, in ms. */
  readonly openDuration: number
}

interface CircuitBreakerEvents {
  open: [event: OpenEvent]
  halfOpen: []
  close: []
}

const kStates: readonly CircuitState[] = ['closed', 'open', 'halfOpen']

/**
 * A circuit breaker whose state is shared by every thread that has its
 * handle: calls through it, in any thread, count toward the same failures,
 * and once it opens, every thread refuses calls with a `BrokenCircuitError`
 * until its open duration ends. Then up to `halfOpenTrials` calls (in all
 * threads together) try the dependency: all succeeding closes it, one
 * failing reopens it.
 *
 * Emits `'open'` (with `{ reason, openDuration }`), `'halfOpen'` and
 * `'close'` in the thread that performed the transition, and only there:
 * every thread sees `state`, but not another thread's events. Transitions
 * happen inside calls (no timer): the `'halfOpen'` of an idle breaker comes
 * with the first call after its open duration.
 *
 * Not yet across processes: a `CircuitBreaker.open(name)` for every process
 * of a machine needs this buffer in memory that processes share, which the
 * other primitives' cross-process reach is building; the state layout
 * (`circuit-breaker-state.ts`) assumes only word-sized atomics, so it can move
 * there unchanged.
 */
export class CircuitBreaker extends EventEmitter<CircuitBreakerEvents> {
  readonly #state: BreakerState
  readonly #config: BreakerConfig
  readonly #handle: CircuitBreakerHandle
  readonly #isFailure: (error: unknown) => boolean

  constructor(options?: CircuitBreakerOptions)
  /** @internal adopts the state of a handle (`from`) */
  constructor(attach: typeof kAttach, handle: CircuitBreakerHandle, local: CircuitBreakerLocalOptions | undefined)
  constructor(
    options?: CircuitBreakerOptions | typeof kAttach,
    handle?: CircuitBreakerHandle,
    local?: CircuitBreakerLocalOptions,
  ) {
    super()
    let buffer: SharedArrayBuffer
    let origin: number
    if (options === kAttach) {
      ;({ buffer, origin } = handle as CircuitBreakerHandle)
      this.#config = breakerConfig(handle?.options, 'handle.options')
      this.#isFailure = isFailureOf(local, 'options')
    } else {
      this.#config = breakerConfig(options, 'options')
      this.#isFailure = isFailureOf(options, 'options')
      ;({ buffer, origin } = BreakerState.create(this.#config))
    }
    this.#state = new BreakerState(buffer, this.#config, origin, (transition) => this.#emit(transition))
    this.#handle = Object.freeze({ kind: 'sluice:CircuitBreaker', buffer, origin, options: sharedOptions(this.#config) })
  }

  /**
   * The breaker that `handle` describes, for this thread; `options.isFailure`
   * is this thread's own (a function cannot cross threads).
   *
   * @throws {TypeError} if `handle` is not a circuit breaker's handle
   */
  static from(handle: CircuitBreakerHandle, options?: CircuitBreakerLocalOptions): CircuitBreaker {
    const { kind, buffer, origin, options: shared } = validateOptions<CircuitBreakerHandle>(handle, 'handle')
    if (kind !== 'sluice:CircuitBreaker' || !(buffer instanceof SharedArrayBuffer) || typeof origin !== 'number' || !Number.isFinite(origin)) {
      throw new TypeError(`handle must be a CircuitBreaker handle (breaker.handle), got ${show(handle)}`)
    }
    if (buffer.byteLength !== bufferBytes(breakerConfig(shared, 'handle.options').buckets)) {
      throw new TypeError(`handle.buffer does not fit handle.options.buckets: not a CircuitBreaker handle, got ${show(handle)}`)
    }
    return new CircuitBreaker(kAttach, handle, options)
  }

  /** What another thread needs to share this breaker (see `CircuitBreakerHandle`). */
  get handle(): CircuitBreakerHandle {
    return this.#handle
  }

  /** `'closed'`, `'open'` or `'halfOpen'`, as every thread sees it. */
  get state(): CircuitState {
    return kStates[this.#state.state] as CircuitState
  }

  /**
   * Runs `fn` if the circuit lets it: closed, or half-open with a trial
   * slot free. Settles as `fn` does, and counts the outcome (an error that
   * `isFailure` declines counts as a success). Otherwise rejects with a
   * `BrokenCircuitError` without calling `fn`.
   */
  run<T>(fn: () => T | PromiseLike<T>): Promise<Awaited<T>> {
    if (typeof fn !== 'function') return Promise.reject(new TypeError(`fn must be a function, got ${show(fn)}`))
    const phase = this.#state.admit()
    if (phase < 0) {
      return Promise.reject(phase === BROKEN_OPEN ? Errors.brokenCircuit() : Errors.trialsUnderWay(this.#config.halfOpenTrials))
    }
    let result: T | PromiseLike<T>
    try {
      result = fn()
    } catch (error) {
      this.#state.report(phase, this.#failed(error))
      return Promise.reject(error)
    }
    return Promise.resolve(result).then(
      (value) => {
        this.#state.report(phase, false)
        return value
      },
      (error: unknown) => {
        this.#state.report(phase, this.#failed(error))
        throw error
      },
    )
  }

  #failed(error: unknown): boolean {
    try {
      return this.#isFailure(error) !== false
    } catch {
      // A broken filter must not hide the call's own error: count it as failed.
      return true
    }
  }

  #emit(transition: Transition): void {
    try {
      if (transition.to === 'open') this.emit('open', { reason: transition.reason, openDuration: transition.openDuration })
      else if (transition.to === 'halfOpen') this.emit('halfOpen')
      else this.emit('close')
    } catch (error) {
      // The transition is done; a throwing listener must not fail the call
      // that happened to perform it. Rethrown as a listener in a timer would be.
      process.nextTick(() => {
        throw error
      })
    }
  }
}

/** The shared options of `config`'s mode, as `breakerConfig` takes them back. */
function sharedOptions(config: BreakerConfig): CircuitBreakerHandle['options'] {
  const { openDuration, maxOpenDuration, halfOpenTrials, trialTimeout } = config
  const common = { openDuration, maxOpenDuration, halfOpenTrials, trialTimeout }
  if (config.mode === 'consecutive') return Object.freeze({ consecutiveFailures: config.consecutiveFailures, ...common })
  const { failureRate, window, buckets, minimumCalls } = config
  return Object.freeze({ failureRate, window, buckets, minimumCalls, ...common })
}
