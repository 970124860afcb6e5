/**
 * Named primitives: one semaphore (or mutex) per name for every process of
 * the machine, in a shared-memory segment under `/dev/shm/sluice-<uid>/`
 * (crates/shm; design in docs/design/cross-process.md).
 *
 * A thread opens a name once: a second `open` of the same name in the same
 * thread returns the same object (after checking its parameters), so a
 * service that opens in every request handler does not use up the
 * segment's owner slots.
 */
import { FifoBell } from './fifo-bell.js'
import { MismatchError, ProcessLimitError, SegmentError, ThreadLimitError, UnsupportedPlatformError } from './errors.js'
import { openSemaphoreMetrics, unlinkMetrics } from './named-metrics.js'
import { NativeNamedSemaphore } from './native.js'
import { Semaphore } from './semaphore.js'
import { kAttach } from './symbols.js'
import { show, validateFairness, validateInteger, validateName, validateOptions, type Fairness } from './validate.js'

/** Most permits a named semaphore can have (as a process-local one). */
const MAX_PERMITS = 2 ** 31 - 1
/** Waits a named semaphore can queue at once, machine-wide, unless `maxWaiters` says otherwise. */
export const DEFAULT_NAMED_MAX_WAITERS = 1024
/** The most `maxWaiters` a named semaphore can have (its wait table is allocated up front). */
export const MAX_NAMED_WAITERS = 65_536

export interface OpenSemaphoreOptions {
  /** Permits the semaphore has (a positive integer); the same in every opener. */
  permits: number
  /**
   * Most waits queued at once across every process (default 1,024, at most
   * 65,536): the table of waits lives in the segment, sized once. The same
   * in every opener.
   */
  maxWaiters?: number
  /**
   * Who gets the permits a release finds waits for (default `'fifo'`): with
   * `'fifo'` the longest waiter, always (a hand-off: a wake-up of its
   * process); with `'eventual'` the releaser leaves them free, so a running
   * process can take them straight back, and rings the longest waiter,
   * until that one has waited 0.5 ms: then it is handed the permits as
   * with `'fifo'`; `'eventual-head'` counts that 0.5 ms from the first
   * release that finds the waiter first in line (see `Fairness`). The same
   * in every opener.
   */
  fairness?: Fairness
  /**
   * Directory of the segments (default `/dev/shm/sluice-<uid>`, or the
   * `SLUICE_SHM_DIR` environment variable). It must be owned by this user
   * and closed to others.
   */
  dir?: string
}

/** A cloneable description of a named semaphore: `Semaphore.from` re-opens it by name. */
export interface NamedSemaphoreHandle {
  readonly kind: 'sluice:NamedSemaphore'
  readonly name: string
  readonly permits: number
  readonly maxWaiters: number
  readonly fairness: Fairness
  readonly dir: string | undefined
}

/** This thread's open named primitives, by kind, directory and name. */
const opened = new Map<string, { primitive: unknown; native: { readonly unlinked: boolean } }>()

/**
 * The primitive this thread opened as `kind` `name` in `dir`, unless its
 * name was unlinked since (a new open then makes a new primitive).
 */
export function cached<T>(kind: string, dir: string | undefined, name: string): T | undefined {
  const entry = opened.get(`${kind}\0${dir ?? ''}\0${name}`)
  return entry !== undefined && !entry.native.unlinked ? (entry.primitive as T) : undefined
}

/** Remembers what this thread opened (see `cached`). */
export function remember(kind: string, dir: string | undefined, name: string, primitive: unknown, native: { readonly unlinked: boolean }): void {
  opened.set(`${kind}\0${dir ?? ''}\0${name}`, { primitive, native })
}

export function openSemaphore(rawName: unknown, options: unknown, caller: string): Semaphore {
  const name = validateName(rawName, 'name')
  const opts = validateOptions<OpenSemaphoreOptions>(options, 'options')
  const permits = validateInteger(opts.permits, 'options.permits', 1, MAX_PERMITS)
  const maxWaiters =
    opts.maxWaiters === undefined
      ? DEFAULT_NAMED_MAX_WAITERS
      : validateInteger(opts.maxWaiters, 'options.maxWaiters', 1, MAX_NAMED_WAITERS)
  const fairness = validateFairness(opts.fairness, 'options.fairness')
  const dir = validateDir(opts.dir)
  const semaphore = cached<Semaphore>('semaphore', dir, name)
  if (semaphore !== undefined) {
    const existing = semaphore.handle as NamedSemaphoreHandle
    checkSame(caller, name, 'permits', existing.permits, permits)
    checkSame(caller, name, 'maxWaiters', existing.maxWaiters, maxWaiters)
    checkSame(caller, name, 'fairness', existing.fairness, fairness)
    return semaphore
  }
  const native = callNative(caller, name, () => NativeNamedSemaphore.open(name, permits, maxWaiters, fairness, dir))
  const bells = new FifoBell(() => native.bellFd())
  const named: NamedSemaphoreHandle = Object.freeze({ kind: 'sluice:NamedSemaphore', name, permits, maxWaiters, fairness, dir })
  const metrics = openSemaphoreMetrics(caller, name, dir, native.owners, native.slot)
  const created = new Semaphore(kAttach, { native, bells, named, metrics, sweep: () => native.sweep() })
  remember('semaphore', dir, name, created, native)
  return created
}

export function unlinkSemaphore(rawName: unknown, options: unknown): boolean {
  const name = validateName(rawName, 'name')
  const dir = validateDir(validateOptions<OpenSemaphoreOptions>(options, 'options').dir)
  const unlinked = callNative('Semaphore.unlink', name, () => NativeNamedSemaphore.unlink(name, dir))
  unlinkMetrics('Semaphore.unlink', name, dir)
  return unlinked
}

export function validateDir(dir: unknown): string | undefined {
  if (dir === undefined) return undefined
  if (typeof dir !== 'string') throw new TypeError(`options.dir must be a string, got ${show(dir)}`)
  if (dir.length === 0 || dir.includes('\0')) throw new RangeError(`options.dir must be a directory path, got ${show(dir)}`)
  return dir
}

export function checkSame<T extends number | string>(caller: string, name: string, field: string, existing: T, requested: T): void {
  if (existing !== requested) throw mismatch(caller, name, field, existing, requested)
}

function mismatch(caller: string, name: string, field: string, existing: unknown, requested: unknown): MismatchError {
  return new MismatchError(
    `${caller}(${show(name)}): options.${field} is ${show(requested)} here, but ${show(name)} exists with ${field} ${show(existing)}; open it with the same parameters, or unlink it first`,
  )
}

/** The option's value for the number a segment stores (another number is shown as is). */
function fairnessName(stored: string | undefined): string {
  return ({ '0': 'fifo', '1': 'eventual', '2': 'eventual-head' } as Record<string, string>)[stored ?? ''] ?? String(stored)
}

/**
 * Runs a native open/unlink and turns its failure into sluice's error for
 * it; the binding tags each failure with a code (src/named.rs `fail`).
 */
export function callNative<T>(caller: string, name: string, call: () => T): T {
  try {
    return call()
  } catch (cause) {
    const { code, message } = cause as { code?: unknown; message: string }
    const where = `${caller}(${show(name)})`
    switch (code) {
      case 'ERR_SLUICE_UNSUPPORTED_PLATFORM':
        throw new UnsupportedPlatformError(
          `${caller}: named primitives need Linux; not supported on this platform (${process.platform})`,
          { cause },
        )
      case 'ERR_SLUICE_MISMATCH': {
        // "<field> <existing> <requested>", from src/named.rs.
        const [field, existing, requested] = message.split(' ')
        if (field === 'fairness') {
          // Stored as 0 (fifo), 1 (eventual) or 2 (eventual-head) in the segment's header.
          throw mismatch(caller, name, field, fairnessName(existing), fairnessName(requested))
        }
        throw mismatch(caller, name, field ?? '?', Number(existing), Number(requested))
      }
      case 'ERR_SLUICE_PROCESS_LIMIT':
        throw new ProcessLimitError(`${where}: ${message}`, { cause })
      case 'ERR_SLUICE_THREAD_LIMIT':
        throw new ThreadLimitError(`${where}: ${message}`, { cause })
      case 'ERR_SLUICE_SEGMENT':
        throw new SegmentError(`${where}: ${message}`, { cause })
      default:
        throw cause
    }
  }
}
