/**
 * Every `node:diagnostics_channel` channel sluice publishes on, created once
 * at module load so a primitive's publishing is a `hasSubscribers` check and
 * a line. Names follow Node core and fastify (`tracingChannel('fastify.request.handler')`
 * publishes on `tracing:fastify.request.handler:start`): `sluice.<module>.<op>`
 * for a tracing channel, `sluice.<module>.<event>` for a plain one. The
 * README's "Observability" section lists them with their messages.
 *
 * Nothing is published, and no message object is built, while a channel has
 * no subscriber: every call site checks `hasSubscribers` first. Channels are
 * per thread (as `diagnostics_channel` is): a subscriber sees the operations
 * of its own thread, on primitives that other threads may share.
 */
import { channel, tracingChannel, type TracingChannel } from 'node:diagnostics_channel'

/** What a traced wait's message carries besides its primitive (filled in by sluice). */
export interface WaitContext {
  /** Milliseconds from the call until it settled; set before `asyncStart` (`durationMs` for a pool task). */
  waitMs?: number
  durationMs?: number
  /** Set by `tracePromise`: what the wait resolved with. */
  result?: unknown
  /** Set by `tracePromise`: what it rejected with. */
  error?: unknown
}

// Tracing channels: one per operation that may wait.
export const semaphoreAcquire: TracingChannel<object> = tracingChannel('sluice.semaphore.acquire')
export const tokenBucketTake: TracingChannel<object> = tracingChannel('sluice.token-bucket.take')
export const rateLimiterTake: TracingChannel<object> = tracingChannel('sluice.rate-limiter.take')
export const channelSend: TracingChannel<object> = tracingChannel('sluice.channel.send')
export const channelRecv: TracingChannel<object> = tracingChannel('sluice.channel.recv')
export const poolRun: TracingChannel<object> = tracingChannel('sluice.pool.run')

// Plain channels: events that do not wait.
export const semaphoreRelease = channel('sluice.semaphore.release')
export const semaphoreRefused = channel('sluice.semaphore.refused')
export const semaphoreClose = channel('sluice.semaphore.close')
export const tokenBucketRefused = channel('sluice.token-bucket.refused')
export const rateLimiterRefused = channel('sluice.rate-limiter.refused')
export const channelClose = channel('sluice.channel.close')

/**
 * Traces the wait that `wait.call(thisArg, ...args)` starts on `tracing`,
 * with `message` as the message (start and end around the call, asyncStart
 * and asyncEnd when it settles, error before them if it rejects), and the
 * time it took as `message.waitMs`. Call it only when `tracing.hasSubscribers`.
 *
 * The wait and its arguments are passed, not a closure: a closure in the
 * caller would make V8 allocate a context on every call, subscribed or not.
 */
export function traceWait<A extends unknown[], R>(
  tracing: TracingChannel<object>,
  message: object,
  wait: (...args: A) => Promise<R>,
  thisArg: unknown,
  ...args: A
): Promise<R> {
  return trace(tracing, message, 'waitMs', wait, thisArg, args)
}

/** `traceWait` for a pool task: the time it took is `message.durationMs`. */
export function traceTask<A extends unknown[], R>(
  tracing: TracingChannel<object>,
  message: object,
  task: (...args: A) => Promise<R>,
  thisArg: unknown,
  ...args: A
): Promise<R> {
  return trace(tracing, message, 'durationMs', task, thisArg, args)
}

function trace<A extends unknown[], R>(
  tracing: TracingChannel<object>,
  message: object,
  field: 'waitMs' | 'durationMs',
  fn: (...args: A) => Promise<R>,
  thisArg: unknown,
  args: A,
): Promise<R> {
  const context = message as WaitContext
  const started = performance.now()
  return tracing.tracePromise(
    () =>
      Reflect.apply(fn, thisArg, args).then(
        (result) => {
          context[field] = performance.now() - started
          return result
        },
        (error: unknown) => {
          context[field] = performance.now() - started
          throw error
        },
      ),
    context,
  )
}
