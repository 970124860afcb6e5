// Model-based tests: random sequences of operations, aborts and timeouts on a
// real Semaphore (and Mutex), checked after every step against a reference
// model of a fair, weighted, FIFO semaphore with partial grants to the head.
import fc from 'fast-check'
import { describe, expect, it } from 'vitest'
import { Mutex, type Permit, Semaphore } from 'sluice'

interface Wait {
  id: number
  weight: number
  assigned: number
  controller: AbortController
  outcome: 'waiting' | 'granted' | 'aborted'
  permit?: Permit
}

/** The reference: what a fair semaphore must do, in plain sequential code. */
class Model {
  free: number
  readonly queue: Wait[] = []
  readonly held: { weight: number; permit?: Permit }[] = []

  constructor(readonly capacity: number) {
    this.free = capacity
  }

  /** Hands free permits to the queue head(s), oldest first, as releases do. */
  pump(): void {
    while (this.queue.length > 0) {
      const head = this.queue[0]!
      const give = Math.min(this.free, head.weight - head.assigned)
      head.assigned += give
      this.free -= give
      if (head.assigned < head.weight) return
      this.queue.shift()
      head.outcome = 'granted'
      this.held.push({ weight: head.weight })
    }
  }
}

interface Real {
  sem: Semaphore
  waits: Wait[]
}

const flush = (): Promise<void> => new Promise((resolve) => setImmediate(resolve))

class TryAcquire implements fc.AsyncCommand<Model, Real> {
  constructor(readonly weight: number) {}
  check = (m: Readonly<Model>): boolean => this.weight <= m.capacity
  async run(m: Model, r: Real): Promise<void> {
    const permit = r.sem.tryAcquire(this.weight)
    const expected = m.queue.length === 0 && m.free >= this.weight
    expect(permit !== null).toBe(expected)
    if (permit !== null) {
      m.free -= this.weight
      m.held.push({ weight: this.weight, permit })
    }
  }
  toString = (): string => `tryAcquire(${this.weight})`
}

class Acquire implements fc.AsyncCommand<Model, Real> {
  constructor(readonly weight: number) {}
  check = (m: Readonly<Model>): boolean => this.weight <= m.capacity
  async run(m: Model, r: Real): Promise<void> {
    const wait: Wait = { id: r.waits.length, weight: this.weight, assigned: 0, controller: new AbortController(), outcome: 'waiting' }
    r.waits.push(wait)
    seen.set(m, r.waits)
    r.sem.acquire({ weight: this.weight, signal: wait.controller.signal }).then(
      (permit) => {
        wait.permit = permit
      },
      () => {},
    )
    m.queue.push(wait)
    m.pump()
    await flush()
    check(m, r)
  }
  toString = (): string => `acquire(${this.weight})`
}

class Release implements fc.AsyncCommand<Model, Real> {
  constructor(readonly pick: number) {}
  check = (m: Readonly<Model>): boolean => m.held.length > 0
  async run(m: Model, r: Real): Promise<void> {
    const [held] = m.held.splice(this.pick % m.held.length, 1)
    const permit = held!.permit ?? r.waits.find((w) => w.permit !== undefined && w.outcome === 'granted' && !w.permit.released && w.weight === held!.weight)?.permit
    expect(permit).toBeDefined()
    permit!.release()
    permit!.release() // a double release changes nothing
    m.free += held!.weight
    m.pump()
    await flush()
    check(m, r)
  }
  toString = (): string => `release(#${this.pick})`
}

class Abort implements fc.AsyncCommand<Model, Real> {
  constructor(readonly pick: number) {}
  check = (m: Readonly<Model>): boolean => m.queue.length > 0
  async run(m: Model, r: Real): Promise<void> {
    const [wait] = m.queue.splice(this.pick % m.queue.length, 1)
    wait!.controller.abort()
    wait!.outcome = 'aborted'
    m.free += wait!.assigned
    wait!.assigned = 0
    m.pump()
    await flush()
    check(m, r)
  }
  toString = (): string => `abort(#${this.pick})`
}

function check(m: Model, r: Real): void {
  expect(r.sem.waiting).toBe(m.queue.length)
  expect(r.sem.available).toBe(m.queue.length > 0 ? 0 : m.free)
  for (const wait of r.waits) {
    if (wait.outcome === 'granted') expect(wait.permit).toBeDefined()
    if (wait.outcome === 'waiting') expect(wait.permit).toBeUndefined()
  }
}

/** Every wait the model saw granted (their permits are on the waits). */
const seen = new WeakMap<Model, Wait[]>()
function waitsOf(model: Model): Wait[] {
  return seen.get(model) ?? []
}

const commands = (capacity: number): fc.Arbitrary<Iterable<fc.AsyncCommand<Model, Real>>> =>
  fc.commands(
    [
      fc.integer({ min: 1, max: capacity }).map((w) => new TryAcquire(w)),
      fc.integer({ min: 1, max: capacity }).map((w) => new Acquire(w)),
      fc.nat().map((i) => new Release(i)),
      fc.nat().map((i) => new Abort(i)),
    ],
    { maxCommands: 40 },
  )

describe('Semaphore against a reference model', () => {
  it('matches the model for random sequences of tryAcquire, acquire, release and abort', async () => {
    await fc.assert(
      fc.asyncProperty(fc.integer({ min: 1, max: 4 }), async (capacity) => {
        await fc.assert(
          fc.asyncProperty(commands(capacity), async (cmds) => {
            const sem = new Semaphore(capacity)
            const model = new Model(capacity)
            await fc.asyncModelRun(() => ({ model, real: { sem, waits: [] } }), cmds)
            // Tear down: abort what waits, release what is held: all comes back.
            for (const wait of model.queue) wait.controller.abort()
            await flush()
            for (const wait of waitsOf(model)) wait.permit?.release()
            for (const held of model.held) held.permit?.release()
            expect(sem.waiting).toBe(0)
            expect(sem.available).toBe(capacity)
          }),
          { numRuns: 25 },
        )
      }),
      { numRuns: 8 },
    )
  }, 60_000)
})

describe('Mutex against a reference model', () => {
  it('excludes, and serves lock waiters in order, under random lock/tryLock/unlock/abort', async () => {
    await fc.assert(
      fc.asyncProperty(
        fc.array(fc.oneof(fc.constant('lock' as const), fc.constant('tryLock' as const), fc.constant('unlock' as const), fc.nat(5)), { maxLength: 60 }),
        async (steps) => {
          const mutex = new Mutex()
          const order: number[] = []
          let holder: Permit | null = null
          const waits: { id: number; controller: AbortController; settled: boolean }[] = []
          let next = 0
          for (const step of steps) {
            if (step === 'lock') {
              const id = next++
              const controller = new AbortController()
              const wait = { id, controller, settled: false }
              waits.push(wait)
              mutex.lock({ signal: controller.signal }).then(
                (guard) => {
                  wait.settled = true
                  expect(holder).toBeNull() // exclusion
                  holder = guard
                  order.push(id)
                },
                () => (wait.settled = true),
              )
            } else if (step === 'tryLock') {
              const guard = mutex.tryLock()
              if (guard !== null) {
                expect(holder).toBeNull()
                holder = guard
              }
            } else if (step === 'unlock') {
              const guard = holder
              holder = null
              guard?.release()
            } else {
              waits.find((w) => !w.settled && w.id % 6 === step)?.controller.abort()
            }
            await flush()
            expect(mutex.isLocked).toBe(holder !== null || waits.some((w) => !w.settled))
          }
          expect(order).toEqual([...order].sort((a, b) => a - b)) // FIFO
          for (const wait of waits) wait.controller.abort()
          await flush()
          holder?.release()
          expect(mutex.isLocked).toBe(false)
        },
      ),
      { numRuns: 200 },
    )
  }, 60_000)
})
