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

/** Named primitives (`Semaphore.open`, `Mutex.open`) exist on Linux only. */
export class UnsupportedPlatformError extends SluiceError {
  constructor(message: string, options?: ErrorOptions) {
    super(message, 'ERR_SLUICE_UNSUPPORTED_PLATFORM', options)
  }
}

/** `open` found the name created with other parameters; the message names both values. */
export class MismatchError extends SluiceError {
  constructor(message: string, options?: ErrorOptions) {
    super(message, 'ERR_SLUICE_MISMATCH', options)
  }
}

/**
 * A named primitive's shared-memory segment cannot be used: damaged bytes,
 * another user's file, a layout of another sluice version, no room in
 * `/dev/shm`, or a lock held by a stopped process. The message says which,
 * and what to do (often: `unlink` the name).
 */
export class SegmentError extends SluiceError {
  constructor(message: string, options?: ErrorOptions) {
    super(message, 'ERR_SLUICE_SEGMENT', options)
  }
}

/** A named primitive has as many processes attached as its segment has slots for. */
export class ProcessLimitError extends SluiceError {
  constructor(message: string, options?: ErrorOptions) {
    super(message, 'ERR_SLUICE_PROCESS_LIMIT', options)
  }
}

/**
 * A `CircuitBreaker` refused a call without running it: the circuit is open,
 * or half-open with every trial call under way. `state` says which.
 */
export class BrokenCircuitError extends SluiceError {
  readonly state: 'open' | 'halfOpen'

  constructor(state: 'open' | 'halfOpen', message: string, options?: ErrorOptions) {
    super(message, 'ERR_SLUICE_BROKEN_CIRCUIT', options)
    this.state = state
  }
}

/**
 * A store (Redis) did not answer in time or is unreachable, and the store's
 * `whenUnavailable` is `'fail-closed'` (its default). `cause` is the
 * client's error, if any.
 */
export class StoreUnavailableError extends SluiceError {
  constructor(message: string, options?: ErrorOptions) {
    super(message, 'ERR_SLUICE_STORE_UNAVAILABLE', options)
  }
}

/**
 * The reason a permit's `signal` aborts when its lease in a store is lost:
 * not renewed within its TTL (the process stalled, the store was out of
 * reach) or gone from the store (a restart). Others may hold it by now.
 */
export class LeaseLostError extends SluiceError {
  constructor(message: string, options?: ErrorOptions) {
    super(message, 'ERR_SLUICE_LEASE_LOST', options)
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
  /** A breaker refused a call while open. */
  brokenCircuit: (): BrokenCircuitError =>
    new BrokenCircuitError('open', 'the circuit is open: calls are refused until its open duration ends'),
  /** A half-open breaker refused a call: its trial calls are all under way. */
  trialsUnderWay: (trials: number): BrokenCircuitError =>
    new BrokenCircuitError(
      'halfOpen',
      `the circuit is half-open and its ${trials} trial call${trials === 1 ? ' is' : 's are'} under way (options.halfOpenTrials)`,
    ),
  /** A store command failed to reach the server or ran past `commandTimeout`. */
  storeUnavailable: (what: string, cause?: unknown): StoreUnavailableError =>
    new StoreUnavailableError(`the store is unavailable: ${what}`, cause === undefined ? undefined : { cause }),
  leaseLost: (name: string, cause?: unknown): LeaseLostError =>
    new LeaseLostError(
      `the lease on '${name}' is lost (not renewed within its TTL, or gone from the store): others may hold its permits now`,
      cause === undefined ? undefined : { cause },
    ),
  /** A later `open` of a name disagrees with the parameters its first opener stored. */
  parameterMismatch: (kind: string, name: string, stored: string, given: string): RangeError =>
    new RangeError(`${kind} '${name}' is open elsewhere with ${stored}, not ${given} as given here: every opener of a name must give the same parameters`),
} as const
