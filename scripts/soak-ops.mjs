// One random operation of the soak, shared by the main thread and workers.
// Counters live in a SharedArrayBuffer of Float64s. Float64 increments are not
// atomic, so every participant writes only its own row (read by summing rows);
// the mutex counters are shared but only ever written inside the mutex.
import { setImmediate as yieldToLoop } from 'node:timers/promises'

export const CAPACITY = 4
export const PARTICIPANTS = 8
/** Fields of a participant's row. */
export const F = { OPS: 0, CANCELLED: 1, SENT: 2, RECEIVED: 3, SENT_SUM: 4, RECEIVED_SUM: 5, TOKENS: 6, MOST_HELD: 7, HELD: 8 }
const STRIDE = 9
/** Shared cells after the rows. */
const IN_MUTEX = PARTICIPANTS * STRIDE
const MOST_IN_MUTEX = IN_MUTEX + 1
export const CELLS = MOST_IN_MUTEX + 1

export const row = (counters, index) => counters.subarray(index * STRIDE, (index + 1) * STRIDE)
export const total = (counters, field) => {
  let sum = 0
  for (let i = 0; i < PARTICIPANTS; i++) sum += counters[i * STRIDE + field]
  return sum
}
export const most = (counters, field) => {
  let max = 0
  for (let i = 0; i < PARTICIPANTS; i++) max = Math.max(max, counters[i * STRIDE + field])
  return max
}
export const mostInMutex = (counters) => counters[MOST_IN_MUTEX]

/**
 * Options for a wait: often a short timeout or a signal aborted at a random
 * moment; otherwise unbounded, except on the channel (`bounded`), where every
 * thread could otherwise end up waiting to receive with nobody sending.
 */
function cancellation(bounded = false) {
  const r = Math.random()
  if (r < 0.2) return { timeout: Math.random() * 3 }
  if (r < 0.4) {
    const controller = new AbortController()
    setTimeout(() => controller.abort(), Math.random() * 3)
    return { signal: controller.signal }
  }
  return bounded ? { timeout: 50 } : {}
}

export async function operate({ sem, mutex, bucket, ch }, counters, index) {
  const mine = row(counters, index)
  mine[F.OPS]++
  const choice = Math.random()
  try {
    if (choice < 0.35) {
      const weight = 1 + Math.floor(Math.random() * 2)
      const permit = await sem.acquire({ weight, ...cancellation() })
      mine[F.HELD] = weight
      const held = total(counters, F.HELD)
      if (held > mine[F.MOST_HELD]) mine[F.MOST_HELD] = held
      await yieldToLoop()
      mine[F.HELD] = 0
      permit.release()
    } else if (choice < 0.5) {
      await mutex.runExclusive(async () => {
        counters[IN_MUTEX]++
        if (counters[IN_MUTEX] > counters[MOST_IN_MUTEX]) counters[MOST_IN_MUTEX] = counters[IN_MUTEX]
        await yieldToLoop()
        counters[IN_MUTEX]--
      }, cancellation())
    } else if (choice < 0.65) {
      const n = 1 + Math.floor(Math.random() * 3)
      if (Math.random() < 0.5) {
        if (bucket.tryTake(n)) mine[F.TOKENS] += n
      } else {
        await bucket.take(n, cancellation())
        mine[F.TOKENS] += n
      }
    } else if (choice < 0.85) {
      const value = 1 + Math.floor(Math.random() * 1000)
      await ch.send(value, cancellation(true))
      mine[F.SENT]++
      mine[F.SENT_SUM] += value
    } else {
      const value = await ch.recv(cancellation(true))
      mine[F.RECEIVED]++
      mine[F.RECEIVED_SUM] += value
    }
  } catch (error) {
    mine[F.HELD] = 0
    if (error?.code === 'ERR_SLUICE_TIMEOUT' || error?.name === 'AbortError') mine[F.CANCELLED]++
    else throw error
  }
}
