/**
 * `sluice/redis`: the same Semaphore, Mutex, TokenBucket and RateLimiter
 * across machines, on Redis or Valkey.
 *
 * ```js
 * const store = redis(client)   // an ioredis or node-redis (v4+) client
 * const db = Semaphore.open('db', { permits: 10, store })
 * const api = RateLimiter.open('api', { capacity: 20, refillPerSecond: 5, store })
 * ```
 */
export { redis, RedisStore } from './redis/store.js'
export type { RedisStoreOptions, WhenUnavailable } from './redis/store.js'
export { RedisSemaphore } from './redis/semaphore.js'
export type { RedisSemaphoreOptions, RedisAcquireOptions } from './redis/semaphore.js'
export { RedisPermit } from './redis/permit.js'
export { RedisMutex } from './redis/mutex.js'
export type { RedisMutexOptions } from './redis/mutex.js'
export { RedisTokenBucket } from './redis/token-bucket.js'
export type { RedisTokenBucketOptions } from './redis/token-bucket.js'
export { RedisRateLimiter } from './redis/rate-limiter.js'
export type { RedisRateLimiterOptions } from './redis/rate-limiter.js'
export type { RedisSemaphoreMetrics, RedisTokenBucketMetrics, RedisRateLimiterMetrics } from './redis/metrics.js'
export { StoreUnavailableError, LeaseLostError } from './errors.js'
