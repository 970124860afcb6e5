import { EventEmitter } from 'node:events'
import {
  breakerConfig,
  isFailureOf,
  type BreakerConfig,
  type CircuitBreakerLocalOptions,
  type CircuitBreakerOptions,
} from './circuit-breaker-options.js'
import {
  checkSameConfig,
  openOptions,
  openWords,
  unlinkBreaker,
  type OpenCircuitBreakerOptions,
  type OpenedWords,
} from './circuit-breaker-named.js'
import { BreakerState, bufferBytes, BROKEN_OPEN, type OpenReason, type Transition } from './circuit-breaker-state.js'
import { Errors } from './errors.js'
import { cached, remember } from './named.js'
import { kAttach } from './symbols.js'
import { show, validateOptions } from './validate.js'

export type { CircuitBreakerLocalOptions, CircuitBreakerOptions } from './circuit-breaker-options.js'
export type { OpenCircuitBreakerOptions } from './circuit-breaker-named.js'
export type { OpenReason } from './circuit-breaker-state.js'

export type CircuitState = 'closed' | 'open' | 'halfOpen'

/**
 * A plain, cloneable description of a circuit breaker, to pass to another
 * thread (`postMessage`, `workerData`); `CircuitBreaker.from(handle)` there
 * gives the same breaker.
 */
export type CircuitBreakerHandle = LocalCircuitBreakerHandle | NamedCircuitBreakerHandle

/**
 * The handle of a `new CircuitBreaker()`: its state lives in `buffer`, which
 * stays alive as long as any thread holds the handle or a breaker made from it.
 */
export interface LocalCircuitBreakerHandle {
  readonly kind: 'sluice:CircuitBreaker'
  readonly buffer: SharedArrayBuffer
  /** When the breaker was created, in ms on CLOCK_MONOTONIC (`process.hrtime()`): the zero of its deadlines. */
  readonly origin: number
  /** The options every thread shares (all but `isFailure`). */
  readonly options: Readonly<Omit<CircuitBreakerOptions, 'isFailure'>>
}

/** The handle of a `CircuitBreaker.open(name)`: `from` opens the name in the receiving thread. */
export interface NamedCircuitBreakerHandle {
  readonly kind: 'sluice:NamedCircuitBreaker'
  readonly name: string
  readonly dir: string | undefined
  /** The options every opener shares (all but `isFailure`). */
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
 * `CircuitBreaker.open(name, options)` gives the breaker `name` of every
 * process of the machine (Linux): the same words in a shared-memory segment,
 * moved by the same state machine. Its events fire in the process (and
 * thread) that performed the transition, as between threads; its handle
 * names it, and `from` opens the name in the receiving thread.
 */
export class CircuitBreaker extends EventEmitter<CircuitBreakerEvents> {
  readonly #state: BreakerState
  readonly #config: BreakerConfig
  readonly #handle: CircuitBreakerHandle
  readonly #isFailure: (error: unknown) => boolean

  constructor(options?: CircuitBreakerOptions)
  /** @internal adopts the state of a handle (`from`) */
  constructor(attach: typeof kAttach, handle: LocalCircuitBreakerHandle, local: CircuitBreakerLocalOptions | undefined)
  /** @internal runs on a named breaker's words (`open`) */
  constructor(attach: typeof kAttach, words: OpenedWords, local: CircuitBreakerLocalOptions | undefined)
  constructor(
    options?: CircuitBreakerOptions | typeof kAttach,
    attached?: LocalCircuitBreakerHandle | OpenedWords,
    local?: CircuitBreakerLocalOptions,
  ) {
    super()
    let buffer: ArrayBufferLike
    let origin: number
    if (options === kAttach && attached !== undefined && 'native' in attached) {
      ;({ buffer, origin, config: this.#config } = attached)
      this.#isFailure = isFailureOf(local, 'options')
      const { name, dir } = attached
      this.#handle = Object.freeze({ kind: 'sluice:NamedCircuitBreaker', name, dir, options: sharedOptions(this.#config) })
    } else {
      if (options === kAttach) {
        ;({ buffer, origin } = attached as LocalCircuitBreakerHandle)
        this.#config = breakerConfig((attached as LocalCircuitBreakerHandle).options, 'handle.options')
        this.#isFailure = isFailureOf(local, 'options')
      } else {
        this.#config = breakerConfig(options, 'options')
        this.#isFailure = isFailureOf(options, 'options')
        ;({ buffer, origin } = BreakerState.create(this.#config))
      }
      this.#handle = Object.freeze({
        kind: 'sluice:CircuitBreaker',
        buffer: buffer as SharedArrayBuffer,
        origin,
        options: sharedOptions(this.#config),
      })
    }
    this.#state = new BreakerState(buffer, this.#config, origin, (transition) => this.#emit(transition))
  }

  /**
   * The breaker `name` of every process of the machine that opens it
   * (Linux; elsewhere an `UnsupportedPlatformError`), created closed if no
   * process has it open. Its words live in a shared-memory segment under
   * `/dev/shm/sluice-<uid>/` (or `options.dir`).
   *
   * Every opener must give the same shared options (all but `isFailure` and
   * `dir`: the mode and its threshold, `window`, `buckets`, `minimumCalls`,
   * `openDuration`, `maxOpenDuration`, `halfOpenTrials`, `trialTimeout`),
   * checked against the segment. `isFailure` is this process's own.
   *
   * A thread opens a name once: a later `open` of it in the same thread
   * returns the same breaker (its options checked), which keeps the
   * thread's `isFailure`; giving another function then is a TypeError.
   *
   * @throws {MismatchError} if `name` exists with other shared options, naming both values
   * @throws {TypeError | RangeError} for a bad `name` or option, naming it
   * @throws {SegmentError} if the segment cannot be opened or is damaged
   */
  static open(name: string, options?: OpenCircuitBreakerOptions): CircuitBreaker {
    return CircuitBreaker.#open(name, options, 'CircuitBreaker.open')
  }

  static #open(rawName: unknown, options: unknown, caller: string): CircuitBreaker {
    const { name, dir, config } = openOptions(rawName, options)
    const isFailure = (options as CircuitBreakerLocalOptions | undefined)?.isFailure
    if (isFailure !== undefined) isFailureOf(options, 'options')
    const open = cached<CircuitBreaker>('circuitBreaker', dir, name)
    if (open !== undefined) {
      checkSameConfig(caller, name, open.#config, config)
      if (isFailure !== undefined && isFailure !== open.#isFailure) {
        throw new TypeError(
          `options.isFailure differs from the one ${show(name)} was opened with in this thread: ${caller} returns the thread's one breaker for a name, so give isFailure once`,
        )
      }
      return open
    }
    const words = openWords(caller, name, dir, config)
    const breaker = new CircuitBreaker(kAttach, words, { isFailure })
    remember('circuitBreaker', dir, name, breaker, words.native)
    return breaker
  }

  /**
   * Frees the name `name`: the next `open` creates a new breaker, closed.
   * Processes that have it open keep sharing the old one among themselves.
   * False if there was no such breaker.
   */
  static unlink(name: string, options?: { dir?: string }): boolean {
    return unlinkBreaker(name, options)
  }

  /**
   * The breaker that `handle` describes, for this thread; `options.isFailure`
   * is this thread's own (a function cannot cross threads).
   *
   * @throws {TypeError} if `handle` is not a circuit breaker's handle
   */
  static from(handle: CircuitBreakerHandle, options?: CircuitBreakerLocalOptions): CircuitBreaker {
    const named = validateOptions<NamedCircuitBreakerHandle>(handle, 'handle')
    if (named.kind === 'sluice:NamedCircuitBreaker') {
      const { isFailure } = validateOptions<CircuitBreakerLocalOptions>(options, 'options')
      const shared = validateOptions<CircuitBreakerOptions>(named.options, 'handle.options')
      return CircuitBreaker.#open(named.name, { ...shared, dir: named.dir, isFailure }, 'CircuitBreaker.from')
    }
    const { kind, buffer, origin, options: shared } = validateOptions<LocalCircuitBreakerHandle>(handle, 'handle')
    if (kind !== 'sluice:CircuitBreaker' || !(buffer instanceof SharedArrayBuffer) || typeof origin !== 'number' || !Number.isFinite(origin)) {
      throw new TypeError(`handle must be a CircuitBreaker handle (breaker.handle), got ${show(handle)}`)
    }
    if (buffer.byteLength !== bufferBytes(breakerConfig(shared, 'handle.options').buckets)) {
      throw new TypeError(`handle.buffer does not fit handle.options.buckets: not a CircuitBreaker handle, got ${show(handle)}`)
    }
    // A fresh object: only the checked fields reach the constructor.
    return new CircuitBreaker(kAttach, { kind: 'sluice:CircuitBreaker', buffer, origin, options: shared ?? {} }, options)
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
function sharedOptions(config: BreakerConfig): LocalCircuitBreakerHandle['options'] {
  const { openDuration, maxOpenDuration, halfOpenTrials, trialTimeout } = config
  const common = { openDuration, maxOpenDuration, halfOpenTrials, trialTimeout }
  if (config.mode === 'consecutive') return Object.freeze({ consecutiveFailures: config.consecutiveFailures, ...common })
  const { failureRate, window, buckets, minimumCalls } = config
  return Object.freeze({ failureRate, window, buckets, minimumCalls, ...common })
}
