// A permit of a semaphore in Redis: a lease with a TTL, renewed every third
// of it while held. A lease that is lost (Redis says it is gone, or no
// renewal succeeded within the TTL) aborts `signal`: others may hold the
// permits by now, so the holder should stop.
import { Errors } from '../errors.js'
import { semaphoreRenew } from './semaphore-scripts.js'
import type { RedisStore } from './store.js'

/** @internal What a permit needs from its semaphore. */
export interface Lease {
  readonly store: RedisStore
  readonly name: string
  readonly keys: string[]
  /** ARGV before the lease id: permits. */
  readonly args: string[]
  readonly ttl: number
  /** Gives the lease back (never rejects). */
  release(id: string): Promise<void>
}

const never = new AbortController().signal

/**
 * Permits taken from a semaphore in a store. Release it once, explicitly or
 * with `using`/`await using`; releasing again does nothing. `signal` aborts
 * with a `LeaseLostError` if the lease is lost while held.
 */
export class RedisPermit implements Disposable, AsyncDisposable {
  readonly weight: number
  /** Made on first use: an AbortController costs ~7 µs, a tenth of a hand-off's CPU, and most holders never look. */
  #controller: AbortController | undefined
  readonly #detached: boolean
  #release: (() => Promise<void>) | undefined

  /** @internal made by `RedisSemaphore` only */
  constructor(weight: number, detached: boolean, release: () => Promise<void>) {
    this.weight = weight
    this.#detached = detached
    this.#release = release
  }

  /** Aborts with a `LeaseLostError` if the lease is lost while held (never, for a detached permit). */
  get signal(): AbortSignal {
    if (this.#detached) return never
    return (this.#controller ??= new AbortController()).signal
  }

  #lose(error: Error): void {
    ;(this.#controller ??= new AbortController()).abort(error)
  }

  /** A permit backed by nothing (`whenUnavailable: 'fail-open'`), or by an in-process one. */
  static detached(weight: number, release: () => void = () => {}): RedisPermit {
    return new RedisPermit(weight, true, async () => release())
  }

  /** A held lease, renewed until released or lost. */
  static leased(lease: Lease, id: string, weight: number): RedisPermit {
    // The lease is good until `ttl` after the last renewal we sent that succeeded.
    let goodUntil = performance.now() + lease.ttl
    let timer: NodeJS.Timeout | undefined
    const lose = (cause?: unknown): void => {
      timer = undefined
      permit.#lose(Errors.leaseLost(lease.name, cause))
    }
    const renew = (): void => {
      const sent = performance.now()
      lease.store.run(semaphoreRenew, lease.keys, [...lease.args, id]).then(
        (reply) => {
          if (timer === undefined) return
          if (reply[0] !== 1) return lose()
          goodUntil = sent + lease.ttl
          schedule()
        },
        (error: unknown) => {
          if (timer === undefined) return
          if (performance.now() >= goodUntil) return lose(error)
          schedule()
        },
      )
    }
    const schedule = (): void => {
      timer = setTimeout(renew, Math.max(1, Math.min(lease.ttl / 3, goodUntil - performance.now())))
      // A held permit does not keep the process alive (nor does an in-process one).
      timer.unref()
    }
    const permit = new RedisPermit(weight, false, () => {
      clearTimeout(timer)
      timer = undefined
      return lease.release(id)
    })
    schedule()
    return permit
  }

  /** Whether `release` has run. */
  get released(): boolean {
    return this.#release === undefined
  }

  /**
   * Gives the permits back: resolves once Redis has them (or could not be
   * reached: the lease then expires after its TTL). Never rejects; a second
   * call does nothing.
   */
  release(): Promise<void> {
    const release = this.#release
    if (release === undefined) return Promise.resolve()
    this.#release = undefined
    return release()
  }

  [Symbol.dispose](): void {
    void this.release()
  }

  [Symbol.asyncDispose](): Promise<void> {
    return this.release()
  }
}
