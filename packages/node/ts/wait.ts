/**
 * The one lifecycle of a queued wait on a native primitive (a semaphore's
 * acquire, a channel's send or receive):
 *
 * 1. the primitive's fast path failed and native code queued the wait under
 *    a `token` (see `nextToken`);
 * 2. `enqueue` connects it to its `signal` and `timeout` and registers it
 *    with the thread's doorbell;
 * 3. it ends once: granted (the doorbell collected the grant), withdrawn
 *    (the primitive was closed), refused (a semaphore's capacity fell below
 *    its weight), or cancelled (abort/timeout: `withdraw` takes it out of the
 *    native queue and gives back whatever was granted to it meanwhile).
 *
 * However it ends, the signal listener and the timer are disconnected first.
 * A primitive says what each ending delivers by subclassing `QueuedWait`.
 */
import { onCancellation } from './abort.js'
import type { Doorbell, Wait } from './doorbell.js'
import type { WakeList } from './native.js'
import { validateOptions, validateSignal, validateTimeout } from './validate.js'

export interface WaitOptions {
  /** Aborting it withdraws the wait; the promise rejects with `signal.reason`. */
  signal?: AbortSignal
  /** Milliseconds to wait before rejecting with a `TimeoutError`. */
  timeout?: number
}

/** Withdraws a queued wait, rejecting it with `reason`; does nothing once it has ended. */
export type Cancel = (reason: unknown) => void

/** The `signal` and `timeout` of a wait's options, checked. */
export function validateWaitOptions(options: unknown): WaitOptions {
  const opts = validateOptions<WaitOptions>(options, 'options')
  return { signal: validateSignal(opts.signal, 'options.signal'), timeout: validateTimeout(opts.timeout, 'options.timeout') }
}

/**
 * A queued wait: one object per wait, settled by the doorbell. Subclasses
 * say what a grant delivers (`granted`), and what a close (`withdrawn`) or a
 * refusal (`refused`) delivers or throws.
 */
export abstract class QueuedWait<R> implements Wait {
  resolve!: (value: R) => void
  reject!: (reason: unknown) => void
  /** Replaced by `enqueue` when the wait has a signal or timeout to disconnect from. */
  disconnect: () => void = notConnected
  doorbell?: Doorbell = undefined

  /** The wait was granted: what it resolves with (a throw rejects it). */
  protected abstract granted(): R
  /** The primitive was closed: what it resolves with, or the error it rejects with. */
  protected abstract withdrawn(): R

  /**
   * The wait was cancelled, by its timeout or else by its signal or a compat
   * adapter, just before it rejects: a primitive counts it here.
   */
  onCancelled(_timedOut: boolean): void {}

  /** Native code refused the wait (only semaphores do): by default, as a close. */
  protected refused(): R {
    return this.withdrawn()
  }

  onGrant(): void {
    this.#end(this.granted)
  }

  onWithdrawn(): void {
    this.#end(this.withdrawn)
  }

  onRefused(): void {
    this.#end(this.refused)
  }

  #end(deliver: () => R): void {
    this.disconnect()
    let value: R
    try {
      value = deliver.call(this)
    } catch (error) {
      this.reject(error)
      return
    }
    this.resolve(value)
  }
}

/** What `enqueue` needs of a primitive. */
export interface Queue {
  readonly doorbell: Doorbell
  /** Takes the wait `token` out of the native queue, giving back anything granted to it. */
  withdraw(token: number): WakeList
}

/**
 * Registers `wait`, queued natively under `token`, and returns its promise.
 * `queued`, if given, receives the wait's `Cancel` (the compat adapters
 * cancel without an AbortSignal, whose listeners cost far more than the
 * wait itself when thousands are queued). An uncancellable wait allocates no
 * cancel closure.
 */
export function enqueue<R>(
  queue: Queue,
  token: number,
  wait: QueuedWait<R>,
  signal: AbortSignal | undefined,
  timeout: number | undefined,
  queued?: (cancel: Cancel) => void,
): Promise<R> {
  const promise = new Promise<R>((resolve, reject) => {
    wait.resolve = resolve
    wait.reject = reject
  })
  const { doorbell } = queue
  if (signal !== undefined || timeout !== undefined || queued !== undefined) {
    const cancel = (reason: unknown, timedOut = false): void => {
      if (!doorbell.forget(token)) return
      wait.disconnect()
      wait.onCancelled(timedOut)
      // Gives back whatever was granted meanwhile; that may wake others.
      doorbell.deliver(queue.withdraw(token))
      wait.reject(reason)
    }
    wait.disconnect = onCancellation(signal, timeout, cancel)
    queued?.(cancel)
  }
  doorbell.wait(token, wait)
  return promise
}

/** What a wait with neither signal nor timeout disconnects: nothing. */
function notConnected(): void {}
