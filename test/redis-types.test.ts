// The types of the Redis reach: `open` with a store gives the Redis
// primitive, whose answers that need the server are promises.
import { describe, expectTypeOf, it } from 'vitest'
import { Mutex, RateLimiter, Semaphore, TokenBucket, type KeyedRateLimit, type RateLimitResult, type SemaphoreMetrics, type TokenBucketMetrics } from 'sluice'
import {
  redis,
  RedisMutex,
  RedisPermit,
  RedisRateLimiter,
  RedisSemaphore,
  RedisTokenBucket,
  type RedisRateLimiterMetrics,
  type RedisSemaphoreMetrics,
  type RedisStore,
  type RedisTokenBucketMetrics,
} from 'sluice/redis'

declare const store: RedisStore

describe('sluice/redis types', () => {
  it('open with a Redis store gives the Redis primitive', () => {
    expectTypeOf(() => Semaphore.open('db', { permits: 2, store })).returns.toEqualTypeOf<RedisSemaphore>()
    expectTypeOf(() => Mutex.open('m', { store })).returns.toEqualTypeOf<RedisMutex>()
    expectTypeOf(() => TokenBucket.open('b', { capacity: 1, refillPerSecond: 1, store })).returns.toEqualTypeOf<RedisTokenBucket>()
    expectTypeOf(() => RateLimiter.open('api', { capacity: 1, refillPerSecond: 1, store })).returns.toEqualTypeOf<RedisRateLimiter>()
    expectTypeOf(redis).returns.toEqualTypeOf<RedisStore>()
  })

  it('answers that need the server are promises', () => {
    expectTypeOf<RedisSemaphore['tryAcquire']>().returns.toEqualTypeOf<Promise<RedisPermit | null>>()
    expectTypeOf<RedisSemaphore['available']>().toEqualTypeOf<Promise<number>>()
    expectTypeOf<RedisRateLimiter['tryTake']>().returns.toEqualTypeOf<Promise<RateLimitResult>>()
    expectTypeOf<RedisTokenBucket['tryTake']>().returns.toEqualTypeOf<Promise<boolean>>()
    expectTypeOf<RedisMutex['tryLock']>().returns.toEqualTypeOf<Promise<RedisPermit | null>>()
    expectTypeOf<RedisPermit['signal']>().toEqualTypeOf<AbortSignal>()
    expectTypeOf<RedisPermit['release']>().returns.toEqualTypeOf<Promise<void>>()
  })

  it('metrics() reads the server, so it is a promise', () => {
    expectTypeOf<RedisSemaphore['metrics']>().returns.toEqualTypeOf<Promise<RedisSemaphoreMetrics>>()
    expectTypeOf<RedisMutex['metrics']>().returns.toEqualTypeOf<Promise<RedisSemaphoreMetrics>>()
    expectTypeOf<RedisTokenBucket['metrics']>().returns.toEqualTypeOf<Promise<RedisTokenBucketMetrics>>()
    expectTypeOf<RedisRateLimiter['metrics']>().returns.toEqualTypeOf<Promise<RedisRateLimiterMetrics>>()
    expectTypeOf<RedisSemaphoreMetrics>().toMatchTypeOf<SemaphoreMetrics>()
    expectTypeOf<RedisTokenBucketMetrics>().toMatchTypeOf<TokenBucketMetrics>()
  })

  it('a Redis rate limiter is a KeyedRateLimit for the HTTP middleware', () => {
    expectTypeOf<RedisRateLimiter>().toMatchTypeOf<KeyedRateLimit>()
  })
})
