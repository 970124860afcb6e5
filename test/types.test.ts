// Type tests for the public API: checked by `tsc` (npm run typecheck), and run
// as ordinary (trivial) tests by vitest.
import type { MutexInterface as RealMutexInterface, SemaphoreInterface as RealSemaphoreInterface } from 'async-mutex'
import type * as asyncMutexCompat from 'sluice/compat/async-mutex'
import { describe, expectTypeOf, it } from 'vitest'
import {
  Channel,
  ClosedError,
  Mutex,
  Permit,
  Semaphore,
  SluiceError,
  TokenBucket,
  type ChannelHandle,
  type Fairness,
  type MutexHandle,
  type SemaphoreHandle,
  type TokenBucketHandle,
} from 'sluice'

describe('public types', () => {
  it('Semaphore', () => {
    expectTypeOf(Semaphore).constructorParameters.toEqualTypeOf<
      [permits: number, options?: { maxWaiters?: number; fairness?: 'fifo' | 'eventual' | 'eventual-head' }]
    >()
    expectTypeOf<Fairness>().toEqualTypeOf<'fifo' | 'eventual' | 'eventual-head'>()
    expectTypeOf<Semaphore['acquire']>().returns.toEqualTypeOf<Promise<Permit>>()
    expectTypeOf<Semaphore['tryAcquire']>().returns.toEqualTypeOf<Permit | null>()
    expectTypeOf<Semaphore['handle']>().toEqualTypeOf<SemaphoreHandle>()
    expectTypeOf(Semaphore.from).parameter(0).toEqualTypeOf<SemaphoreHandle>()
    expectTypeOf<Semaphore['run']>().toBeFunction()
    expectTypeOf<Permit>().toMatchTypeOf<Disposable>()
  })

  it('run infers the result type', () => {
    const run = (sem: Semaphore) => sem.run(async () => 42)
    expectTypeOf(run).returns.toEqualTypeOf<Promise<number>>()
  })

  it('Mutex, TokenBucket', () => {
    expectTypeOf<Mutex['lock']>().returns.toEqualTypeOf<Promise<Permit>>()
    expectTypeOf<Mutex['handle']>().toEqualTypeOf<MutexHandle>()
    expectTypeOf<TokenBucket['take']>().returns.toEqualTypeOf<Promise<void>>()
    expectTypeOf<TokenBucket["tryTake"]>().returns.toEqualTypeOf<boolean>()
    expectTypeOf<TokenBucket['handle']>().toEqualTypeOf<TokenBucketHandle>()
  })

  it('Channel is generic over its values', () => {
    expectTypeOf<Channel<number>['recv']>().returns.toEqualTypeOf<Promise<number>>()
    expectTypeOf<Channel<string>['tryRecv']>().returns.toEqualTypeOf<string | undefined>()
    expectTypeOf<Channel<string>['send']>().parameter(0).toEqualTypeOf<string>()
    expectTypeOf<Channel<Uint8Array>>().toMatchTypeOf<AsyncIterable<Uint8Array>>()
    expectTypeOf<Channel['handle']>().toEqualTypeOf<ChannelHandle>()
  })

  it('errors are classes with a code', () => {
    expectTypeOf<ClosedError>().toMatchTypeOf<SluiceError>()
    expectTypeOf<SluiceError['code']>().toEqualTypeOf<string>()
  })
})

describe('sluice/compat/async-mutex types', () => {
  it('its classes fit where async-mutex 0.5 interfaces are expected', () => {
    expectTypeOf<asyncMutexCompat.Mutex>().toExtend<RealMutexInterface>()
    expectTypeOf<asyncMutexCompat.Semaphore>().toExtend<RealSemaphoreInterface>()
    expectTypeOf<asyncMutexCompat.MutexInterface.Releaser>().toEqualTypeOf<RealMutexInterface.Releaser>()
  })
})
