// Type tests for RateLimiter's public API: checked by `tsc` (npm run
// typecheck), and run as ordinary (trivial) tests by vitest.
import { describe, expectTypeOf, it } from 'vitest'
import {
  KeysFullError,
  RateLimiter,
  SluiceError,
  type KeyedRateLimit,
  type RateLimitAlgorithm,
  type RateLimiterHandle,
  type RateLimiterOptions,
  type RateLimitKey,
  type RateLimitResult,
  type RateLimitWhenFull,
} from 'sluice'

describe('RateLimiter types', () => {
  it('implements KeyedRateLimit, synchronously', () => {
    expectTypeOf<RateLimiter>().toExtend<KeyedRateLimit>()
    expectTypeOf<RateLimiter['tryTake']>().parameters.toEqualTypeOf<[key: RateLimitKey, n?: number]>()
    expectTypeOf<RateLimiter['tryTake']>().returns.toEqualTypeOf<RateLimitResult>()
    expectTypeOf<RateLimiter['peek']>().returns.toEqualTypeOf<RateLimitResult>()
    expectTypeOf<RateLimitKey>().toEqualTypeOf<string | number>()
    expectTypeOf<RateLimitResult['reason']>().toEqualTypeOf<'limited' | 'keys-full' | undefined>()
  })

  it('take, reset, handle and the getters', () => {
    expectTypeOf<RateLimiter['take']>().returns.toEqualTypeOf<Promise<void>>()
    expectTypeOf<RateLimiter['reset']>().returns.toEqualTypeOf<boolean>()
    expectTypeOf<RateLimiter['handle']>().toEqualTypeOf<RateLimiterHandle>()
    expectTypeOf(RateLimiter.from).parameter(0).toEqualTypeOf<RateLimiterHandle>()
    expectTypeOf(RateLimiter.from).returns.toEqualTypeOf<RateLimiter>()
    expectTypeOf<RateLimiter['algorithm']>().toEqualTypeOf<RateLimitAlgorithm>()
    expectTypeOf<RateLimitAlgorithm>().toEqualTypeOf<'gcra' | 'sliding-window'>()
    expectTypeOf<RateLimiter['whenFull']>().toEqualTypeOf<RateLimitWhenFull>()
    expectTypeOf<RateLimiter['size']>().toEqualTypeOf<number>()
    expectTypeOf<KeysFullError>().toExtend<SluiceError>()
  })

  it('options take one of the three forms of the rate, never two', () => {
    expectTypeOf({ limit: 100, windowMs: 60_000 }).toExtend<RateLimiterOptions>()
    expectTypeOf({ capacity: 10, refillPerSecond: 5, algorithm: 'sliding-window' as const }).toExtend<RateLimiterOptions>()
    expectTypeOf({ capacity: 10, tokensPerInterval: 1, interval: 100, maxKeys: 10, whenFull: 'refuse' as const }).toExtend<RateLimiterOptions>()
    expectTypeOf({ limit: 100, windowMs: 60_000, capacity: 10 }).not.toExtend<RateLimiterOptions>()
    expectTypeOf({ capacity: 10, refillPerSecond: 5, interval: 100 }).not.toExtend<RateLimiterOptions>()
    expectTypeOf({ limit: 100 }).not.toExtend<RateLimiterOptions>()
    expectTypeOf({ limit: 100, windowMs: 60_000, algorithm: 'fixed' as const }).not.toExtend<RateLimiterOptions>()
  })
})
