export { Semaphore, Permit, MAX_PERMITS } from './semaphore.js'
export type { AcquireOptions, SemaphoreHandle } from './semaphore.js'
export { SluiceError, TimeoutError, InvalidHandleError } from './errors.js'
