export { Semaphore, Permit, MAX_PERMITS } from './semaphore.js'
export type { AcquireOptions, LocalSemaphoreHandle, SemaphoreHandle, SemaphoreMetrics, SemaphoreOptions } from './semaphore.js'
export type { Fairness } from './validate.js'
export { Mutex } from './mutex.js'
export { TokenBucket } from './token-bucket.js'
export { Channel } from './channel.js'
export type { ChannelHandle, ChannelOptions, WaitOptions } from './channel.js'
export { codecs } from './codec.js'
export type { Codec, CodecName } from './codec.js'
export type {
  LocalTokenBucketHandle,
  NamedTokenBucketHandle,
  OpenTokenBucketOptions,
  TakeOptions,
  TokenBucketHandle,
  TokenBucketMetrics,
  TokenBucketOptions,
} from './token-bucket.js'
export { RateLimiter } from './rate-limiter.js'
export type {
  LocalRateLimiterHandle,
  NamedRateLimiterHandle,
  OpenRateLimiterOptions,
  RateLimitAlgorithm,
  RateLimiterHandle,
  RateLimiterMetrics,
  RateLimiterOptions,
  RateLimitWhenFull,
} from './rate-limiter.js'
export type { KeyedRateLimit, RateLimitKey, RateLimitReason, RateLimitResult } from './keyed-limit.js'
export type { LockOptions, MutexHandle, OpenMutexOptions } from './mutex.js'
export type { NamedSemaphoreHandle, OpenSemaphoreOptions } from './named.js'
export {
  SluiceError,
  TimeoutError,
  InvalidHandleError,
  ClosedError,
  QueueFullError,
  ThreadLimitError,
  KeysFullError,
  BrokenCircuitError,
  UnsupportedPlatformError,
  MismatchError,
  SegmentError,
  ProcessLimitError,
  StoreUnavailableError,
  LeaseLostError,
} from './errors.js'
export { WorkerPool } from './pool.js'
export type { WorkerPoolOptions, RunOptions, MapOptions, PoolMetrics, Percentiles } from './pool.js'
export { TaskGroup } from './task-group.js'
export type { TaskGroupOptions, JoinOptions } from './task-group.js'
export { retry } from './retry.js'
export type { BackoffFunction, BackoffOptions, RetryContext, RetryEvent, RetryOptions } from './retry.js'
export { timeout } from './timeout.js'
export type { TimeoutOptions } from './timeout.js'
export { CircuitBreaker } from './circuit-breaker.js'
export type {
  CircuitBreakerHandle,
  LocalCircuitBreakerHandle,
  NamedCircuitBreakerHandle,
  OpenCircuitBreakerOptions,
  CircuitBreakerLocalOptions,
  CircuitBreakerOptions,
  CircuitState,
  OpenEvent,
  OpenReason,
} from './circuit-breaker.js'
export type { WaitMetrics } from './metrics.js'
