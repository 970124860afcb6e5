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

/** The primitive was closed: no new waits, and queued ones were withdrawn. */
export class ClosedError extends SluiceError {
  constructor(message = 'closed', options?: ErrorOptions) {
    super(message, 'ERR_SLUICE_CLOSED', options)
  }
}

/** `maxWaiters` waits are queued already. */
export class QueueFullError extends SluiceError {
  constructor(maxWaiters: number, options?: ErrorOptions) {
    super(`${maxWaiters} waits are queued already (maxWaiters)`, 'ERR_SLUICE_QUEUE_FULL', options)
  }
}
