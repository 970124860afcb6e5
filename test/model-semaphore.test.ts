// Model-based tests: random sequences of operations, aborts and timeouts on a
// real Semaphore (and Mutex), checked after every step against a reference
// model of a fair, weighted, FIFO semaphore with partial grants to the head.
//
// A semaphore keeps its state in JavaScript until its handle is first read,
// then in native memory: each runs in three modes, kept in this thread
// throughout, shared (handle read before the run), and moved at a random step
// (a `share` step reads the handle, with whatever is held and queued then).
import fc from 'fast-check'
import { describe, expect, it } from 'vitest'
import { Mutex, type Permit, Semaphore } from 'sluice'

interface Wait {
  id: number
  weight: number
  priority: number
  assigned: number
  controller: AbortController
  outcome: 'waiting' | 'granted' | 'aborted'
  permit?: Permit
}

/**
 * The reference: what a fair semaphore must do, in plain sequential code.
 * Waits stand higher priority first, in arrival order within a priority; the
 * head collects permits as they come (the reserve) and a wait that comes to
 * stand first takes the reserve over, or is granted from it at once if it
 * covers the request (core `acquire_with_priority`).
 */
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
  constructor(
    readonly weight: number,
    readonly priority: number,
  ) {}
  check = (m: Readonly<Model>): boolean => this.weight <= m.capacity
  async run(m: Model, r: Real): Promise<void> {
    const { weight, priority } = this
    const wait: Wait = { id: r.waits.length, weight, priority, assigned: 0, controller: new AbortController(), outcome: 'waiting' }
    r.waits.push(wait)
    seen.set(m, r.waits)
    r.sem.acquire({ weight, priority, signal: wait.controller.signal }).then(
      (permit) => {
        wait.permit = permit
      },
      () => {},
    )
    const head = m.queue[0]
    if (head !== undefined && head.priority < priority && head.assigned >= weight) {
      // Overtaking: the permits set aside for the head belong to whoever stands first.
      head.assigned -= weight
      wait.outcome = 'granted'
      m.held.push({ weight })
    } else {
      // After every wait of its priority or higher; standing first, it takes over the reserve.
      let at = m.queue.length
      while (at > 0 && m.queue[at - 1]!.priority < priority) at--
      m.queue.splice(at, 0, wait)
      if (at === 0 && head !== undefined) {
        wait.assigned = head.assigned
        head.assigned = 0
      }
      m.pump()
    }
    await flush()
    check(m, r)
  }
  toString = (): string => `acquire(${this.weight}, priority ${this.priority})`
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

class Share implements fc.AsyncCommand<Model, Real> {
  check = (): boolean => true
  async run(m: Model, r: Real): Promise<void> {
    void r.sem.handle // moves the state, held permits and queued waits to native memory (once)
    check(m, r)
    await flush()
    check(m, r)
  }
  toString = (): string => 'share'
}

type Mode = 'kept in this thread' | 'shared' | 'moved at a random step'
const modes: Mode[] = ['kept in this thread', 'shared', 'moved at a random step']

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

const commands = (capacity: number, mode: Mode): fc.Arbitrary<Iterable<fc.AsyncCommand<Model, Real>>> =>
  fc.commands(
    [
      fc.integer({ min: 1, max: capacity }).map((w) => new TryAcquire(w)),
      fc
        .tuple(fc.integer({ min: 1, max: capacity }), fc.oneof(fc.constant(0), fc.integer({ min: -1, max: 1 })))
        .map(([w, p]) => new Acquire(w, p)),
      fc.nat().map((i) => new Release(i)),
      fc.nat().map((i) => new Abort(i)),
      ...(mode === 'moved at a random step' ? [fc.constant(new Share())] : []),
    ],
    { maxCommands: 40 },
  )

// One thread alone sees FIFO in every mode: an eventually fair semaphore
// that nudges the releasing thread's own waiter serves it in the same call.
describe.each(modes.flatMap((mode) => (['fifo', 'eventual', 'eventual-head'] as const).map((fairness) => [mode, fairness] as const)))(
  'Semaphore against a reference model (%s, %s)',
  (mode, fairness) => {
    it('matches the model for random sequences of tryAcquire, acquire, release and abort', async () => {
      await fc.assert(
        fc.asyncProperty(fc.integer({ min: 1, max: 4 }), async (capacity) => {
          await fc.assert(
            fc.asyncProperty(commands(capacity, mode), async (cmds) => {
              const sem = new Semaphore(capacity, { fairness })
              if (mode === 'shared') void sem.handle
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
            { numRuns: 40 },
          )
        }),
        { numRuns: 8 },
      )
    }, 60_000)
  },
)

describe.each(modes)('Mutex against a reference model (%s)', (mode) => {
  it('excludes, and serves lock waiters in order, under random lock/tryLock/unlock/abort', async () => {
    const share = mode === 'moved at a random step' ? [fc.constant('share' as const)] : []
    await fc.assert(
      fc.asyncProperty(
        fc.array(fc.oneof(fc.constant('lock' as const), fc.constant('tryLock' as const), fc.constant('unlock' as const), fc.nat(5), ...share), { maxLength: 60 }),
        async (steps) => {
          const mutex = new Mutex()
          if (mode === 'shared') void mutex.handle
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
            } else if (step === 'share') {
              void mutex.handle
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
