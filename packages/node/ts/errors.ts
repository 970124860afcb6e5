/** Base class of every error sluice defines; `code` is stable across releases. */
export class SluiceError extends Error {
  readonly code: string

  constructor(message: string, code: string, options?: ErrorOptions) {
    super(message, options)
    this.name = new.target.name
    this.code = code
  }
}

/** A wait ran past its `timeout`. */
export class TimeoutError extends SluiceError {
  constructor(timeout: number, options?: ErrorOptions) {
    super(`timed out after ${timeout} ms`, 'ERR_SLUICE_TIMEOUT', options)
  }
}

/** A handle that names no live primitive: freed, forged, or of another kind. */
export class InvalidHandleError extends SluiceError {
  constructor(message: string, options?: ErrorOptions) {
    super(message, 'ERR_SLUICE_INVALID_HANDLE', options)
  }
}

/**
 * A thread could not attach a primitive: `DOORBELL_SLOTS` (256) threads are
 * attached to it already. A thread's slot is freed when it exits or drops
 * every object of that primitive.
 */
export class ThreadLimitError extends SluiceError {
  constructor(message: string, options?: ErrorOptions) {
    super(message, 'ERR_SLUICE_THREAD_LIMIT', options)
  }
}

/** The primitive was closed: no new waits, and queued ones were withdrawn. */
export class ClosedError extends SluiceError {
  constructor(message = 'closed', options?: ErrorOptions) {
    super(message, 'ERR_SLUICE_CLOSED', options)
  }
}

/** A bounded queue is full: `maxWaiters` waits, or a pool's `maxQueue` tasks. */
export class QueueFullError extends SluiceError {
  constructor(message: string, options?: ErrorOptions) {
    super(message, 'ERR_SLUICE_QUEUE_FULL', options)
  }
}

/**
 * A rate limiter had no room for a new key: `maxKeys` keys are live and
 * `whenFull` is `'refuse'`. Only `take` rejects with it; `tryTake` answers
 * `{ allowed: false, reason: 'keys-full' }`.
 */
export class KeysFullError extends SluiceError {
  constructor(message: string, options?: ErrorOptions) {
    super(message, 'ERR_SLUICE_KEYS_FULL', options)
  }
}

/**
 * @internal Every error a primitive raises, made in one place (as piscina's
 * `Errors`): one helper per error, so a message is written once.
 */
export const Errors = {
  /** A semaphore (or the mutex over it) was closed; `reason` is what `close` was given in this thread. */
  semaphoreClosed: (reason: unknown): ClosedError =>
    new ClosedError('semaphore closed', reason === undefined ? undefined : { cause: reason }),
  channelClosed: (): ClosedError => new ClosedError('channel closed'),
  poolClosed: (): ClosedError => new ClosedError('the worker pool is closed'),
  /** A semaphore's wait queue is at `maxWaiters`. */
  waitersFull: (maxWaiters: number): QueueFullError =>
    new QueueFullError(`${maxWaiters} waits are queued already (maxWaiters)`),
  /** A WorkerPool's queue is at `maxQueue`. */
  poolQueueFull: (maxQueue: number): QueueFullError =>
    new QueueFullError(
      `the pool's queue is full (maxQueue ${maxQueue} tasks waiting for a thread); submit() waits for room instead of rejecting`,
    ),
  /** A weight above a capacity that shrank since the caller's copy of it was read. */
  overCapacity: (name: string, weight: number, capacity: number): RangeError =>
    new RangeError(`${name} must be an integer between 1 and ${capacity}, got ${weight}`),
  /** A queued wait refused natively: the capacity fell below its weight. */
  refusedOverCapacity: (weight: number, capacity: number): RangeError =>
    new RangeError(`options.weight ${weight} exceeds the capacity, which fell to ${capacity} while the wait was queued`),
  timeout: (timeout: number): TimeoutError => new TimeoutError(timeout),
  /** A rate limiter's `take` on a new key found every key cell live (`whenFull: 'refuse'`). */
  keysFull: (maxKeys: number): KeysFullError =>
    new KeysFullError(
      `no room for a new key: ${maxKeys} keys are live (options.maxKeys) and options.whenFull is 'refuse'; a key's cell is freed once it is back to its full quota`,
    ),
} as const
