import { describe, expect, expectTypeOf, it, vi } from 'vitest'
import {
  BrokenCircuitError,
  CircuitBreaker,
  SluiceError,
  type CircuitBreakerHandle,
  type CircuitState,
  type LocalCircuitBreakerHandle,
  type OpenEvent,
} from 'sluice'

const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms))
const fail = (): never => {
  throw new Error('dependency down')
}
const succeed = (): string => 'ok'

/** The transitions a breaker emits in this thread, in order. */
function record(breaker: CircuitBreaker): string[] {
  const events: string[] = []
  breaker.on('open', ({ reason, openDuration }: OpenEvent) => events.push(`open ${reason} ${openDuration}`))
  breaker.on('halfOpen', () => events.push('halfOpen'))
  breaker.on('close', () => events.push('close'))
  return events
}

async function failTimes(breaker: CircuitBreaker, n: number): Promise<void> {
  for (let i = 0; i < n; i++) await expect(breaker.run(fail)).rejects.toThrow('dependency down')
}

/** A call that stays pending until `finish` is called with true (success) or false. */
function pendingCall(): { fn: () => Promise<string>; finish: (ok: boolean) => void; started: () => boolean } {
  let settle: ((ok: boolean) => void) | undefined
  let started = false
  return {
    fn: () => {
      started = true
      return new Promise<string>((resolve, reject) => {
        settle = (ok) => (ok ? resolve('trial ok') : reject(new Error('trial failed')))
      })
    },
    finish: (ok) => settle!(ok),
    started: () => started,
  }
}

describe('CircuitBreaker, consecutive failures', () => {
  it('opens after consecutiveFailures failures in a row, then refuses without calling fn', async () => {
    const breaker = new CircuitBreaker({ consecutiveFailures: 3, openDuration: 60_000 })
    const events = record(breaker)
    await failTimes(breaker, 2)
    expect(breaker.state).toBe('closed')
    await failTimes(breaker, 1)
    expect(breaker.state).toBe('open')
    expect(events).toEqual(['open failures 60000'])
    const fn = vi.fn(succeed)
    const error = await breaker.run(fn).catch((e: unknown) => e)
    expect(fn).not.toHaveBeenCalled()
    expect(error).toBeInstanceOf(BrokenCircuitError)
    expect(error).toBeInstanceOf(SluiceError)
    expect(error).toMatchObject({ name: 'BrokenCircuitError', code: 'ERR_SLUICE_BROKEN_CIRCUIT', state: 'open' })
  })

  it('a success resets the count: failures must be consecutive', async () => {
    const breaker = new CircuitBreaker({ consecutiveFailures: 3 })
    for (let i = 0; i < 5; i++) {
      await failTimes(breaker, 2)
      await expect(breaker.run(succeed)).resolves.toBe('ok')
    }
    expect(breaker.state).toBe('closed')
  })

  it('opens with 5 failures by default', async () => {
    const breaker = new CircuitBreaker()
    await failTimes(breaker, 4)
    expect(breaker.state).toBe('closed')
    await failTimes(breaker, 1)
    expect(breaker.state).toBe('open')
  })

  it('lets a trial through after openDuration, and closes when it succeeds', async () => {
    const breaker = new CircuitBreaker({ consecutiveFailures: 1, openDuration: 150 })
    const events = record(breaker)
    await failTimes(breaker, 1)
    await expect(breaker.run(succeed)).rejects.toThrow(BrokenCircuitError)
    await sleep(180)
    expect(breaker.state).toBe('open') // no timer: the next call moves it
    await expect(breaker.run(succeed)).resolves.toBe('ok')
    expect(breaker.state).toBe('closed')
    expect(events).toEqual(['open failures 150', 'halfOpen', 'close'])
    // Closed anew with a fresh count.
    await failTimes(breaker, 1)
    expect(breaker.state).toBe('open')
  })

  it('a failed trial reopens, each reopening doubling the open duration up to maxOpenDuration', async () => {
    const breaker = new CircuitBreaker({ consecutiveFailures: 1, openDuration: 20, maxOpenDuration: 50 })
    const events = record(breaker)
    await failTimes(breaker, 1)
    for (const wait of [30, 50, 70]) {
      await sleep(wait)
      await expect(breaker.run(fail)).rejects.toThrow('dependency down')
      expect(breaker.state).toBe('open')
    }
    await sleep(70)
    await expect(breaker.run(succeed)).resolves.toBe('ok')
    await failTimes(breaker, 1)
    expect(events).toEqual([
      'open failures 20',
      'halfOpen',
      'open trial-failed 40',
      'halfOpen',
      'open trial-failed 50',
      'halfOpen',
      'open trial-failed 50',
      'halfOpen',
      'close',
      // The backoff starts over once closed.
      'open failures 20',
    ])
  })

  it('an open duration not yet over refuses (a doubled one included)', async () => {
    const breaker = new CircuitBreaker({ consecutiveFailures: 1, openDuration: 300, maxOpenDuration: 1000 })
    await failTimes(breaker, 1)
    await sleep(330)
    await expect(breaker.run(fail)).rejects.toThrow('dependency down') // trial failed: open for 600 ms
    await sleep(350)
    await expect(breaker.run(succeed)).rejects.toThrow(BrokenCircuitError)
  })
})

describe('CircuitBreaker, half-open trials', () => {
  it('lets exactly halfOpenTrials concurrent calls through and closes once all succeed', async () => {
    const breaker = new CircuitBreaker({ consecutiveFailures: 1, openDuration: 10, halfOpenTrials: 3 })
    const events = record(breaker)
    await failTimes(breaker, 1)
    await sleep(30)
    const trials = Array.from({ length: 3 }, pendingCall)
    const running = trials.map((trial) => breaker.run(trial.fn))
    expect(trials.every((trial) => trial.started())).toBe(true)
    expect(breaker.state).toBe('halfOpen')
    const refused = await Promise.allSettled(Array.from({ length: 10 }, () => breaker.run(succeed)))
    for (const outcome of refused) {
      expect(outcome.status).toBe('rejected')
      const reason = (outcome as PromiseRejectedResult).reason as BrokenCircuitError
      expect(reason).toBeInstanceOf(BrokenCircuitError)
      expect(reason.state).toBe('halfOpen')
      expect(reason.message).toBe('the circuit is half-open and its 3 trial calls are under way (options.halfOpenTrials)')
    }
    trials[0]!.finish(true)
    trials[1]!.finish(true)
    await Promise.all(running.slice(0, 2))
    expect(breaker.state).toBe('halfOpen')
    trials[2]!.finish(true)
    await Promise.all(running)
    expect(breaker.state).toBe('closed')
    expect(events).toEqual(['open failures 10', 'halfOpen', 'close'])
  })

  it('one failed trial reopens, and the other trials reporting later change nothing', async () => {
    const breaker = new CircuitBreaker({ consecutiveFailures: 1, openDuration: 10, halfOpenTrials: 2 })
    const events = record(breaker)
    await failTimes(breaker, 1)
    await sleep(30)
    const [a, b] = [pendingCall(), pendingCall()]
    const runs = [breaker.run(a.fn), breaker.run(b.fn)]
    b.finish(false)
    await expect(runs[1]).rejects.toThrow('trial failed')
    expect(breaker.state).toBe('open')
    a.finish(true)
    await expect(runs[0]).resolves.toBe('trial ok')
    expect(breaker.state).toBe('open')
    expect(events).toEqual(['open failures 10', 'halfOpen', 'open trial-failed 10'])
  })

  it('a trial that never reports counts as failed after trialTimeout: the breaker reopens instead of staying half-open', async () => {
    const breaker = new CircuitBreaker({ consecutiveFailures: 1, openDuration: 10, trialTimeout: 200 })
    const events = record(breaker)
    await failTimes(breaker, 1)
    await sleep(30)
    const lost = pendingCall()
    const lostRun = breaker.run(lost.fn)
    await expect(breaker.run(succeed)).rejects.toMatchObject({ state: 'halfOpen' })
    await sleep(230)
    await expect(breaker.run(succeed)).rejects.toMatchObject({ state: 'open' })
    expect(breaker.state).toBe('open')
    await sleep(30)
    await expect(breaker.run(succeed)).resolves.toBe('ok')
    expect(breaker.state).toBe('closed')
    // The lost trial reporting at last belongs to a past generation: ignored.
    lost.finish(false)
    await expect(lostRun).rejects.toThrow('trial failed')
    expect(breaker.state).toBe('closed')
    expect(events).toEqual(['open failures 10', 'halfOpen', 'open trial-timed-out 10', 'halfOpen', 'close'])
  })
})

describe('CircuitBreaker, failure rate', () => {
  it('opens once failures reach failureRate of the calls in the window, not before minimumCalls', async () => {
    const breaker = new CircuitBreaker({ failureRate: 0.5, minimumCalls: 10, window: 60_000, openDuration: 60_000 })
    const events = record(breaker)
    await failTimes(breaker, 9) // 9 of 9 failed, but under minimumCalls
    expect(breaker.state).toBe('closed')
    await expect(breaker.run(succeed)).resolves.toBe('ok') // 9 of 10: a success never opens
    expect(breaker.state).toBe('closed')
    await failTimes(breaker, 1)
    expect(breaker.state).toBe('open')
    expect(events).toEqual(['open failure-rate 60000'])
  })

  it('stays closed while the failure rate is under the threshold', async () => {
    const breaker = new CircuitBreaker({ failureRate: 0.5, minimumCalls: 4, window: 60_000 })
    for (let i = 0; i < 50; i++) {
      await expect(breaker.run(succeed)).resolves.toBe('ok')
      await expect(breaker.run(succeed)).resolves.toBe('ok')
      await failTimes(breaker, 1)
    }
    expect(breaker.state).toBe('closed')
  })

  it('forgets failures older than the window', async () => {
    const breaker = new CircuitBreaker({ failureRate: 0.5, minimumCalls: 4, window: 1000, buckets: 10 })
    await failTimes(breaker, 3)
    await sleep(1100)
    // Only this window's calls count: 3 successes, then 1 failure = 25%.
    for (let i = 0; i < 3; i++) await breaker.run(succeed)
    await failTimes(breaker, 1)
    expect(breaker.state).toBe('closed')
    await failTimes(breaker, 2) // 3 of 6 = 50%
    expect(breaker.state).toBe('open')
  })

  it('starts from an empty window once closed again', async () => {
    const breaker = new CircuitBreaker({ failureRate: 0.5, minimumCalls: 4, window: 60_000, openDuration: 10 })
    await failTimes(breaker, 4)
    expect(breaker.state).toBe('open')
    await sleep(30)
    await breaker.run(succeed)
    expect(breaker.state).toBe('closed')
    await failTimes(breaker, 3) // 3 of 3, under minimumCalls: the 4 old failures are gone
    expect(breaker.state).toBe('closed')
  })
})

describe('CircuitBreaker, isFailure and stale results', () => {
  it('an error isFailure declines counts as a success, yet still rejects the call', async () => {
    const notFound = Object.assign(new Error('404'), { status: 404 })
    const breaker = new CircuitBreaker({
      consecutiveFailures: 2,
      openDuration: 10,
      isFailure: (error) => (error as { status?: number }).status !== 404,
    })
    for (let i = 0; i < 5; i++) {
      await failTimes(breaker, 1)
      await expect(
        breaker.run(() => {
          throw notFound
        }),
      ).rejects.toBe(notFound)
    }
    expect(breaker.state).toBe('closed')
    await failTimes(breaker, 2)
    await sleep(30)
    // A declined error closes a half-open breaker: it never wedges it.
    await expect(breaker.run(() => Promise.reject(notFound))).rejects.toBe(notFound)
    expect(breaker.state).toBe('closed')
  })

  it('counts an error as a failure when isFailure throws, and rejects with the call’s own error', async () => {
    const breaker = new CircuitBreaker({
      consecutiveFailures: 1,
      isFailure: () => {
        throw new Error('bad filter')
      },
    })
    await expect(breaker.run(fail)).rejects.toThrow('dependency down')
    expect(breaker.state).toBe('open')
  })

  it('ignores the result of a call that started before the circuit opened', async () => {
    const breaker = new CircuitBreaker({ consecutiveFailures: 2, openDuration: 10 })
    const slow = pendingCall()
    const slowRun = breaker.run(slow.fn)
    await failTimes(breaker, 2)
    expect(breaker.state).toBe('open')
    await sleep(30)
    await breaker.run(succeed) // trial: closes
    expect(breaker.state).toBe('closed')
    await failTimes(breaker, 1)
    slow.finish(false) // would be the 2nd failure in a row, but it belongs to the old closed period
    await expect(slowRun).rejects.toThrow('trial failed')
    expect(breaker.state).toBe('closed')
  })

  it('a throwing event listener does not fail the call that moved the state', async () => {
    const breaker = new CircuitBreaker({ consecutiveFailures: 1 })
    breaker.on('open', () => {
      throw new Error('listener bug')
    })
    const uncaught = new Promise<unknown>((resolve) => process.once('uncaughtException', resolve))
    await expect(breaker.run(fail)).rejects.toThrow('dependency down')
    expect(breaker.state).toBe('open')
    await expect(uncaught).resolves.toHaveProperty('message', 'listener bug')
  })

  it('runs fn synchronously in the caller and accepts plain values', async () => {
    const breaker = new CircuitBreaker()
    let ran = false
    const outcome = breaker.run(() => {
      ran = true
      return 42
    })
    expect(ran).toBe(true)
    await expect(outcome).resolves.toBe(42)
  })
})

describe('CircuitBreaker handle', () => {
  it('CircuitBreaker.from(handle) shares the state, with its own isFailure', async () => {
    const breaker = new CircuitBreaker({ consecutiveFailures: 2, openDuration: 60_000 })
    const twin = CircuitBreaker.from(breaker.handle, { isFailure: () => false })
    const twinEvents = record(twin)
    await failTimes(twin, 5) // declined by the twin's isFailure
    expect(breaker.state).toBe('closed')
    await failTimes(breaker, 1)
    await failTimes(CircuitBreaker.from(breaker.handle), 1)
    expect(twin.state).toBe('open')
    expect(twinEvents).toEqual([]) // it performed no transition
    await expect(twin.run(succeed)).rejects.toThrow(BrokenCircuitError)
  })

  it('the handle is a plain structured-cloneable object carrying the options', () => {
    const breaker = new CircuitBreaker({ failureRate: 0.25, window: 5000, buckets: 5 })
    const copy = structuredClone(breaker.handle) as LocalCircuitBreakerHandle
    expect(copy).toMatchObject({
      kind: 'sluice:CircuitBreaker',
      options: { failureRate: 0.25, window: 5000, buckets: 5, minimumCalls: 10, openDuration: 10_000, halfOpenTrials: 1 },
    })
    expect(copy.buffer).toBeInstanceOf(SharedArrayBuffer)
    expect(CircuitBreaker.from(copy).state).toBe('closed')
  })

  it.each([
    [null, TypeError, 'handle must be a CircuitBreaker handle (breaker.handle), got null'],
    [{ kind: 'sluice:Semaphore' }, TypeError, 'handle must be a CircuitBreaker handle'],
  ])('CircuitBreaker.from(%o) throws a %O', (handle, type, message) => {
    expect(() => CircuitBreaker.from(handle as never)).toThrow(type)
    expect(() => CircuitBreaker.from(handle as never)).toThrow(message)
  })

  it('rejects a handle whose buffer does not fit its options', () => {
    const { handle } = new CircuitBreaker({ failureRate: 0.5, buckets: 4 })
    expect(() => CircuitBreaker.from({ ...handle, options: { ...handle.options, buckets: 8 } })).toThrow(
      'handle.buffer does not fit handle.options.buckets',
    )
  })
})

describe('CircuitBreaker validation', () => {
  it.each([
    [{ consecutiveFailures: 0 }, RangeError, 'options.consecutiveFailures must be an integer between 1 and 2147483647, got 0'],
    [{ consecutiveFailures: '5' }, TypeError, "options.consecutiveFailures must be an integer, got '5'"],
    [{ failureRate: 0 }, RangeError, 'options.failureRate must be in (0, 1], got 0'],
    [{ failureRate: 1.5 }, RangeError, 'options.failureRate must be in (0, 1], got 1.5'],
    [{ failureRate: '50%' }, TypeError, "options.failureRate must be a number, got '50%'"],
    [{ failureRate: 0.5, consecutiveFailures: 3 }, TypeError, 'options.consecutiveFailures and options.failureRate'],
    [{ window: 1000 }, TypeError, 'options.window needs options.failureRate'],
    [{ failureRate: 0.5, window: 0 }, RangeError, 'options.window must be between 1 and'],
    [{ failureRate: 0.5, buckets: 0 }, RangeError, 'options.buckets must be an integer between 1 and 1000, got 0'],
    [{ failureRate: 0.5, window: 5, buckets: 10 }, RangeError, 'options.window / options.buckets must be at least 1 ms'],
    [{ failureRate: 0.5, minimumCalls: 0 }, RangeError, 'options.minimumCalls must be an integer between 1 and 2147483647, got 0'],
    [{ openDuration: -1 }, RangeError, 'options.openDuration must be between 0 and'],
    [{ openDuration: 100, maxOpenDuration: 50 }, RangeError, 'options.maxOpenDuration must be >= options.openDuration (100), got 50'],
    [{ halfOpenTrials: 0 }, RangeError, 'options.halfOpenTrials must be an integer between 1 and 65535, got 0'],
    [{ trialTimeout: 0 }, RangeError, 'options.trialTimeout must be between 1 and'],
    [{ isFailure: 'yes' }, TypeError, "options.isFailure must be a function, got 'yes'"],
    [7, TypeError, 'options must be an object, got 7'],
  ])('new CircuitBreaker(%o) throws a %O naming the field', (options, type, message) => {
    expect(() => new CircuitBreaker(options as never)).toThrow(type)
    expect(() => new CircuitBreaker(options as never)).toThrow(message)
  })

  it('run(non-function) rejects with a TypeError', async () => {
    await expect(new CircuitBreaker().run(3 as never)).rejects.toThrow(new TypeError('fn must be a function, got 3'))
  })
})

describe('CircuitBreaker types', () => {
  it('run keeps the type of what fn returns, and the events are typed', () => {
    const breaker = new CircuitBreaker()
    expectTypeOf(breaker.run(async () => 1)).toEqualTypeOf<Promise<number>>()
    expectTypeOf(breaker.run(() => 'x')).toEqualTypeOf<Promise<string>>()
    expectTypeOf(breaker.state).toEqualTypeOf<CircuitState>()
    expectTypeOf(CircuitBreaker.from).parameter(0).toEqualTypeOf<CircuitBreakerHandle>()
    breaker.on('open', (event) => expectTypeOf(event).toEqualTypeOf<OpenEvent>())
    expectTypeOf<BrokenCircuitError['state']>().toEqualTypeOf<'open' | 'halfOpen'>()
  })
})
