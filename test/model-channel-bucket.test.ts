// Model-based tests for Channel and TokenBucket: random operation sequences,
// with aborts, checked after every step against plain sequential models.
import fc from 'fast-check'
import { describe, expect, it } from 'vitest'
import { Channel, TokenBucket } from 'sluice'

const flush = (): Promise<void> => new Promise((resolve) => setImmediate(resolve))

type ChannelOp =
  | { op: 'trySend' | 'send'; value: number }
  | { op: 'tryRecv' | 'recv' }
  | { op: 'abortSend' | 'abortRecv'; pick: number }

const channelOp: fc.Arbitrary<ChannelOp> = fc.oneof(
  fc.record({ op: fc.constantFrom('trySend' as const, 'send' as const), value: fc.integer() }),
  fc.record({ op: fc.constantFrom('tryRecv' as const, 'recv' as const) }),
  fc.record({ op: fc.constantFrom('abortSend' as const, 'abortRecv' as const), pick: fc.nat() }),
)

interface PendingSend {
  value: number
  controller: AbortController
  done: boolean
  expectDone: boolean
}
interface PendingRecv {
  controller: AbortController
  got?: number
  expected?: number
}

describe('Channel against a FIFO model', () => {
  it('delivers exactly what the model says, in order, under random sends, receives and aborts', async () => {
    await fc.assert(
      fc.asyncProperty(fc.integer({ min: 1, max: 3 }), fc.array(channelOp, { maxLength: 60 }), async (capacity, ops) => {
        const ch = new Channel<number>({ capacity, codec: 'number' })
        const queue: number[] = [] // model
        const senders: PendingSend[] = [] // waiting, oldest first (model)
        const receivers: PendingRecv[] = []
        const allSends: PendingSend[] = []
        const allRecvs: PendingRecv[] = []
        // A value entering the model channel goes to a waiting receiver first.
        const arrive = (value: number): void => {
          const receiver = receivers.shift()
          if (receiver !== undefined) receiver.expected = value
          else queue.push(value)
        }
        // A receive frees a slot: the oldest waiting sender's value enters.
        const leave = (): number => {
          const value = queue.shift()!
          const sender = senders.shift()
          if (sender !== undefined) {
            sender.expectDone = true
            arrive(sender.value)
          }
          return value
        }
        for (const step of ops) {
          if (step.op === 'trySend' || step.op === 'send') {
            const room = senders.length === 0 && queue.length < capacity
            if (step.op === 'trySend') {
              expect(ch.trySend(step.value)).toBe(room)
              if (room) arrive(step.value)
            } else {
              const pending: PendingSend = { value: step.value, controller: new AbortController(), done: false, expectDone: room }
              allSends.push(pending)
              ch.send(step.value, { signal: pending.controller.signal }).then(
                () => (pending.done = true),
                () => {},
              )
              if (room) arrive(step.value)
              else senders.push(pending)
            }
          } else if (step.op === 'tryRecv' || step.op === 'recv') {
            if (step.op === 'tryRecv') {
              expect(ch.tryRecv()).toBe(queue.length > 0 ? leave() : undefined)
            } else {
              const pending: PendingRecv = { controller: new AbortController() }
              allRecvs.push(pending)
              ch.recv({ signal: pending.controller.signal }).then(
                (value) => (pending.got = value),
                () => {},
              )
              if (queue.length > 0) pending.expected = leave()
              else receivers.push(pending)
            }
          } else if (step.op === 'abortSend' || step.op === 'abortRecv') {
            const list: (PendingSend | PendingRecv)[] = step.op === 'abortSend' ? senders : receivers
            if (list.length > 0) list.splice(step.pick % list.length, 1)[0]!.controller.abort()
          }
          await flush()
          expect(ch.length).toBe(queue.length)
          for (const send of allSends) expect(send.done).toBe(send.expectDone)
          for (const recv of allRecvs) expect(recv.got).toBe(recv.expected)
        }
        for (const pending of [...senders, ...receivers]) pending.controller.abort()
        await flush()
        const rest: number[] = []
        for (let value = ch.tryRecv(); value !== undefined; value = ch.tryRecv()) rest.push(value)
        expect(rest).toEqual(queue)
      }),
      { numRuns: 300 },
    )
  }, 60_000)
})

type BucketOp = { op: 'tryTake' | 'take'; n: number; twin: boolean } | { op: 'abort'; pick: number } | { op: 'share' }

// A bucket lives in JavaScript until its handle is read, then in native
// memory: the model holds for one kept local, one shared from the start, and
// one moved at a random step (with takes waiting, as it happens).
describe.each(['kept in this thread', 'shared from the start', 'shared midway'] as const)('TokenBucket (%s) against a token-count model', (mode) => {
  it('grants, queues and refunds as the model says (refill negligible during the test)', async () => {
    const capacity = 5
    const bucketOp: fc.Arbitrary<BucketOp> = fc.oneof(
      fc.record({
        op: fc.constantFrom('tryTake' as const, 'take' as const),
        n: fc.integer({ min: 1, max: capacity }),
        twin: fc.boolean(),
      }),
      fc.record({ op: fc.constant('abort' as const), pick: fc.nat() }),
      fc.record({ op: fc.constant('share' as const) }),
    )
    await fc.assert(
      fc.asyncProperty(fc.array(bucketOp, { maxLength: 40 }), async (ops) => {
        // One token per hour: nothing refills while the sequence runs.
        const bucket = new TokenBucket({ capacity, tokensPerInterval: 1, interval: 3_600_000 })
        // Once shared, a second object attached through the handle acts on
        // the same bucket: `twin` steps go through it.
        let twin: TokenBucket | undefined
        const share = (): void => {
          twin ??= TokenBucket.from(bucket.handle)
        }
        if (mode === 'shared from the start') share()
        const via = (step: { twin: boolean }): TokenBucket => (step.twin && twin !== undefined ? twin : bucket)
        let tokens = capacity // model; negative = owed to pending takes
        const pending: { n: number; controller: AbortController; done: boolean }[] = []
        for (const step of ops) {
          if (step.op === 'share') {
            if (mode === 'shared midway') share()
          } else if (step.op === 'tryTake') {
            const expected = tokens >= step.n
            expect(via(step).tryTake(step.n)).toBe(expected)
            if (expected) tokens -= step.n
          } else if (step.op === 'take') {
            const controller = new AbortController()
            const take = { n: step.n, controller, done: false }
            via(step).take(step.n, { signal: controller.signal }).then(
              () => (take.done = true),
              () => {},
            )
            tokens -= step.n
            if (tokens < 0) pending.push(take)
            else {
              await flush()
              expect(take.done).toBe(true)
            }
          } else if (step.op === 'abort' && pending.length > 0) {
            const [take] = pending.splice(step.pick % pending.length, 1)
            take!.controller.abort()
            tokens += take!.n
          }
          await flush()
          expect(bucket.available).toBe(Math.max(0, tokens))
          if (twin !== undefined) expect(twin.available).toBe(Math.max(0, tokens))
          for (const take of pending) expect(take.done).toBe(false)
        }
        for (const take of pending) take.controller.abort()
      }),
      { numRuns: 300 },
    )
  }, 60_000)
})
