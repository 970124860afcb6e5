import { TimeoutError } from './errors.js'

/**
 * Connects a pending wait to its `signal` and `timeout`. `onCancel` runs at
 * most once, with `signal.reason` or a `TimeoutError`. Returns the function
 * that disconnects both; the caller runs it however the wait ends, so no
 * listener or timer outlives the wait.
 */
export function onCancellation(
  signal: AbortSignal | undefined,
  timeout: number | undefined,
  onCancel: (reason: unknown) => void,
): () => void {
  if (signal === undefined && timeout === undefined) return disconnected
  let timer: NodeJS.Timeout | undefined
  const onAbort = (): void => onCancel(signal?.reason)
  signal?.addEventListener('abort', onAbort, { once: true })
  if (timeout !== undefined) {
    timer = setTimeout(() => onCancel(new TimeoutError(timeout)), timeout)
  }
  return () => {
    signal?.removeEventListener('abort', onAbort)
    if (timer !== undefined) clearTimeout(timer)
  }
}

/** Nothing to disconnect: shared, so an uncancellable wait allocates no closure. */
function disconnected(): void {}
