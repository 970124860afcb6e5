import { Errors } from './errors.js'

/**
 * Connects a pending wait to its `signal` and `timeout`. `onCancel` runs at
 * most once, with `signal.reason` or a `TimeoutError` (and whether it was
 * the timeout, for the metrics). Returns the function
 * that disconnects both; the caller runs it however the wait ends, so no
 * listener or timer outlives the wait.
 */
export function onCancellation(
  signal: AbortSignal | undefined,
  timeout: number | undefined,
  onCancel: (reason: unknown, timedOut: boolean) => void,
): () => void {
  if (signal === undefined && timeout === undefined) return disconnected
  const unsubscribe = signal === undefined ? disconnected : onAbort(signal, () => onCancel(signal.reason, false))
  if (timeout === undefined) return unsubscribe
  const timer = setTimeout(() => onCancel(Errors.timeout(timeout), true), timeout)
  return () => {
    unsubscribe()
    clearTimeout(timer)
  }
}

/** Nothing to disconnect: shared, so an uncancellable wait allocates no closure. */
function disconnected(): void {}

/** This thread's waits on one signal, behind the one listener we add to it. */
interface Subscribers {
  readonly callbacks: Set<() => void>
  readonly listener: () => void
}

const bySignal = new WeakMap<AbortSignal, Subscribers>()

/**
 * Runs `callback` when `signal` aborts; returns the unsubscribe. However many
 * waits share a signal (one request's signal passed to every wait it makes),
 * the signal gets a single 'abort' listener: Node's EventTarget scans its
 * listeners on every add and remove (quadratic in their number: 30,000 waits
 * on one signal took 3.4 s to queue) and warns past 10 of them.
 */
export function onAbort(signal: AbortSignal, callback: () => void): () => void {
  // Callers check `aborted` first, but user code may abort the signal between
  // that check and this call (a diagnostics `start` subscriber, say). The
  // event has fired by then, so the callback runs in a microtask instead,
  // after the caller has registered what it cancels, unless unsubscribed first.
  if (signal.aborted) {
    let subscribed = true
    queueMicrotask(() => {
      if (subscribed) callback()
    })
    return () => {
      subscribed = false
    }
  }
  let subscribers = bySignal.get(signal)
  if (subscribers === undefined) {
    const callbacks = new Set<() => void>()
    const listener = (): void => {
      bySignal.delete(signal)
      // In subscription order; a callback may unsubscribe others meanwhile.
      for (const callback of [...callbacks]) if (callbacks.delete(callback)) callback()
    }
    subscribers = { callbacks, listener }
    bySignal.set(signal, subscribers)
    signal.addEventListener('abort', listener, { once: true })
  }
  const { callbacks, listener } = subscribers
  callbacks.add(callback)
  return () => {
    if (!callbacks.delete(callback) || callbacks.size > 0) return
    signal.removeEventListener('abort', listener)
    if (bySignal.get(signal)?.listener === listener) bySignal.delete(signal)
  }
}
