// Stress for eventual fairness (`fairness: 'eventual'`): four worker threads
// on one semaphore of 2 permits, random weights (1-2), priorities, aborts and
// timeouts; one worker terminated while it holds permits, one while it waits.
// Whatever the interleaving: never more permits held than exist (counted in
// a SharedArrayBuffer inside each critical section), every wait settles
// (granted, aborted or timed out; a hang guard fails the test), and every
// permit comes back. Run with the real clock (heads young, then due) and with
// the clock frozen (every head young: the most barging there can be).
import { createRequire } from 'node:module'
import { afterEach, describe, expect, it } from 'vitest'
import { Semaphore } from 'sluice'
import { FIRST, HELD, HUNG, MOST, OVER, countersFor, markGone } from './fixtures/eventual-stress.mjs'
import { eventually, runWorker } from './helpers.js'

const binding = createRequire(import.meta.url)('../packages/node/binding.js') as {
  setFairnessClockForTest(nanos?: number): void
}

const CAPACITY = 2
const CYCLES = 600
/** The cycle at which the doomed workers stop to be terminated. */
const DIE_AT = 60

interface Tally {
  started: number
  granted: number
  aborted: number
  timedOut: number
  hung: number
  error: number
  errors: string[]
}

type Message = { tally: Tally } | { dying: string }

afterEach(() => binding.setFairnessClockForTest())

describe.each([
  ['the real clock', undefined, 'eventual'],
  ['the real clock, counting from the head', undefined, 'eventual-head'],
  ['the clock frozen, every head young', 0, 'eventual'],
] as const)('an eventually fair semaphore shared by four threads, with %s', (_, frozenAt, fairness) => {
  it(
    'never holds more than its permits, settles every wait, and gets every permit back when workers die holding and waiting',
    async () => {
      if (frozenAt !== undefined) binding.setFairnessClockForTest(frozenAt)
      const sem = new Semaphore(CAPACITY, { fairness })
      const counters = countersFor(4)
      const roles = ['normal', 'normal', 'holding', 'waiting'] as const
      const workers = roles.map((role, index) => {
        const run = runWorker('eventual-stress.mjs', {
          task: 'eventual-stress',
          handle: sem.handle,
          counters: counters.buffer,
          index,
          cycles: CYCLES,
          capacity: CAPACITY,
          role,
          dieAt: DIE_AT,
        })
        // Listened for from the start: a message handled before a later `once` would be lost.
        const messages: Message[] = []
        const first = new Promise<Message>((resolve) =>
          run.worker.on('message', (message: Message) => {
            messages.push(message)
            resolve(message)
          }),
        )
        return { ...run, role, index, first, messages }
      })
      const tallies: Tally[] = []
      await Promise.all(
        workers.map(async ({ worker, exited, role, index, first }) => {
          const message = await first
          if (role === 'normal') {
            expect(message).toHaveProperty('tally')
            tallies.push((message as { tally: Tally }).tally)
            expect(await exited).toBe(0)
            return
          }
          // The doomed: terminated as they said, holding or queued.
          expect(message).toEqual({ dying: role })
          markGone(counters, index)
          await worker.terminate()
        }),
      )
      // Grants made by a dying thread reach the others on their poll; by now
      // every thread is gone, so whatever they held or were granted is back.
      await eventually(() => sem.available === CAPACITY && sem.waiting === 0, 5_000)
      expect(sem.available).toBe(CAPACITY)
      expect(sem.waiting).toBe(0)
      expect(sem.tryAcquire(CAPACITY)).not.toBeNull()

      expect(Atomics.load(counters, HUNG)).toBe(0)
      expect(Atomics.load(counters, OVER)).toBe(0)
      expect(Atomics.load(counters, MOST)).toBeLessThanOrEqual(CAPACITY)
      expect(Atomics.load(counters, MOST)).toBeGreaterThan(0)
      expect(Atomics.load(counters, HELD)).toBe(0)
      expect([Atomics.load(counters, FIRST), Atomics.load(counters, FIRST + 1)]).toEqual([0, 0])
      for (const tally of tallies) {
        expect(tally.errors).toEqual([])
        expect(tally.hung + tally.error).toBe(0)
        expect(tally.started).toBe(CYCLES)
        expect(tally.granted + tally.aborted + tally.timedOut).toBe(tally.started)
        expect(tally.granted).toBeGreaterThan(0)
      }
      // The cancellation paths were exercised, not only grants.
      expect(tallies.reduce((sum, t) => sum + t.aborted + t.timedOut, 0)).toBeGreaterThan(0)
    },
    30_000,
  )
})
