// A permit of a semaphore in Redis: a lease with a TTL, renewed while held
// (between a third and a half of the TTL after its last renewal). A lease
// that is lost (Redis says it is gone, or no renewal succeeded within the
// TTL) aborts `signal`: others may hold the permits by now, so the holder
// should stop.
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
  /** This semaphore's held leases in this process, renewed by one timer. */
  readonly renewals: Renewals
}

/**
 * @internal The leases one semaphore holds in this process, renewed by one interval
 * (a sixth of the TTL, so each lease is renewed between a third and a half
 * of it after the last renewal) instead of a timer made and cleared per
 * permit: most permits are held for less than a tick and never need one.
 * The interval stops on a tick that finds nothing held, and never keeps the
 * process alive (nor does a held permit, in process or here).
 */
export class Renewals {
  readonly #held = new Set<Held>()
  readonly #period: number
  #timer: NodeJS.Timeout | undefined

  constructor(ttl: number) {
    this.#period = Math.max(1, ttl / 6)
  }

  add(held: Held): void {
    this.#held.add(held)
    if (this.#timer !== undefined) return
    this.#timer = setInterval(this.#tick, this.#period)
    this.#timer.unref()
  }

  delete(held: Held): void {
    this.#held.delete(held)
  }

  /** Bounded: one look at each held lease. */
  readonly #tick = (): void => {
    if (this.#held.size === 0) {
      clearInterval(this.#timer)
      this.#timer = undefined
      return
    }
    const now = performance.now()
    for (const held of this.#held) if (held.due <= now) held.renew(now)
  }
}

/** @internal One held lease: when to renew it, and until when it is good. */
class Held {
  /** performance.now() ms: renewed at the first tick after it (Infinity while a renewal is in flight). */
  due: number
  /** The lease is good until `ttl` after the last renewal we sent that succeeded. */
  #goodUntil: number
  #retry: NodeJS.Timeout | undefined
  #ended = false

  constructor(
    readonly lease: Lease,
    readonly id: string,
    /** Aborts the permit's signal. */
    readonly lost: (cause?: unknown) => void,
  ) {
    const now = performance.now()
    this.due = now + lease.ttl / 3
    this.#goodUntil = now + lease.ttl
  }

  renew(sent: number): void {
    const { lease } = this
    this.due = Infinity
    lease.store.run(semaphoreRenew, lease.keys, [...lease.args, this.id]).then(
      (reply) => {
        if (this.#ended) return
        if (reply[0] !== 1) return this.#lose()
        this.#goodUntil = sent + lease.ttl
        this.due = sent + lease.ttl / 3
      },
      (error: unknown) => {
        if (this.#ended) return
        const now = performance.now()
        if (now >= this.#goodUntil) return this.#lose(error)
        // Retried on a timer of its own, as soon as before (a tick could be a sixth of the TTL late): a rare path.
        this.#retry = setTimeout(() => this.renew(performance.now()), Math.max(1, Math.min(lease.ttl / 3, this.#goodUntil - now)))
        this.#retry.unref()
      },
    )
  }

  #lose(cause?: unknown): void {
    this.end()
    this.lost(cause)
  }

  /** Released or lost: no more renewals. */
  end(): void {
    this.#ended = true
    clearTimeout(this.#retry)
    this.lease.renewals.delete(this)
  }
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
    const held = new Held(lease, id, (cause) => permit.#lose(Errors.leaseLost(lease.name, cause)))
    const permit = new RedisPermit(weight, false, () => {
      held.end()
      return lease.release(id)
    })
    lease.renewals.add(held)
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
