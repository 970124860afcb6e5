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

  /** @internal A semaphore's wait queue is at `maxWaiters`. */
  static waiters(maxWaiters: number): QueueFullError {
    return new QueueFullError(`${maxWaiters} waits are queued already (maxWaiters)`)
  }

  /** @internal A WorkerPool's queue is at `maxQueue`. */
  static pool(maxQueue: number): QueueFullError {
    return new QueueFullError(
      `the pool's queue is full (maxQueue ${maxQueue} tasks waiting for a thread); submit() waits for room instead of rejecting`,
    )
  }
}
