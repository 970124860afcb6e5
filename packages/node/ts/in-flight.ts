/**
 * Handles in flight. A handle is a plain object that names a primitive by
 * id; the primitive is freed when the last JS object for it in any thread is
 * collected. Between `new Worker(..., { workerData: { db: db.handle } })` and
 * the worker's `Semaphore.from`, the only object may be one the creating
 * code no longer uses (a top-level `const` of an ES module that nothing
 * reads again is collectable): the README's own example lost its semaphore
 * that way about one run in three. So reading `handle` keeps the object
 * alive for at least IN_FLIGHT_MS; a worker attaches long before that.
 */

/** How long reading `handle` keeps its primitive alive, at least. */
export const IN_FLIGHT_MS = 30_000

/** Objects whose handle was read, and when their pin ends. */
const pinned = new Map<object, number>()
let sweeper: NodeJS.Timeout | undefined

/** Keeps `primitive` alive for IN_FLIGHT_MS from now (its handle is being sent somewhere). */
export function keepAliveInFlight(primitive: object): void {
  pinned.set(primitive, Date.now() + IN_FLIGHT_MS)
  if (sweeper === undefined) {
    // Unref'd: a pin never keeps a process (or a worker) running.
    sweeper = setInterval(sweep, IN_FLIGHT_MS).unref()
  }
}

function sweep(): void {
  const now = Date.now()
  for (const [primitive, until] of pinned) if (until <= now) pinned.delete(primitive)
  if (pinned.size === 0) {
    clearInterval(sweeper)
    sweeper = undefined
  }
}
