// A counting semaphore in Redis. Holders and queued waits are leases (TTL,
// a wait's renewed every third of it, a holder's between a third and a
// half: ./permit.ts), so a process that dies gives its permits and
// its place in the queue back within one TTL. The queue is FIFO across
// processes (tickets from HINCRBY); a release grants to the head in the same
// script and publishes the granted ids on the waiter's own store's channel,
// which wakes that process alone through its pub/sub connection: no
// polling, and the grant message is the grant (no confirming round trip). A waiter also renews its queue
// lease (which re-runs its attempt, so a lost message or a Redis restart
// costs at most a third of a TTL), and one timer per semaphore fires at the
// earliest lease expiry the server reported, to hand a dead holder's
// permits on at once.
import { randomUUID } from 'node:crypto'
import { onCancellation } from '../abort.js'
import { Errors } from '../errors.js'
import { SharedMetrics } from '../metrics.js'
import { MAX_PERMITS, Permit, Semaphore, type AcquireOptions } from '../semaphore.js'
import { show, validateFairness, validateInteger, validateName, validateOptions, type Fairness } from '../validate.js'
import { validateWaitOptions } from '../wait.js'
import { unavailable } from './gcra.js'
import { RedisPermit, Renewals, type Lease } from './permit.js'
import { countOf, countsOf, type RedisSemaphoreMetrics } from './metrics.js'
import { semaphoreAcquire, semaphoreMetrics, semaphoreRelease, semaphoreState } from './semaphore-scripts.js'
import type { RedisStore } from './store.js'

export interface RedisSemaphoreOptions {
  /** How many permits exist (a positive integer), the same for every opener. */
  permits: number
  /** Most waits this process may queue at once on this object (unbounded by default). */
  maxWaiters?: number
  /**
   * Accepted for the same code on every store, and served FIFO here, which
   * is a valid schedule of `'eventual'` and `'eventual-head'` (every wait
   * is bounded the same way). On Redis a FIFO hand-off is one script call whose pub/sub message
   * is the grant, while a barge is a release plus a fresh acquire: two round
   * trips. Measured with 4 processes, barging ran at 0.7-0.8x FIFO's rate.
   */
  fairness?: Fairness
  store: RedisStore
}

/** `acquire`'s options: `priority` must be 0 (or absent): waits are FIFO across processes. */
export type RedisAcquireOptions = AcquireOptions

/**
 * A semaphore in Redis, shared by every process that opens its name on the
 * same server with the same `permits`. `Semaphore`'s methods, except that
 * `tryAcquire`, `available` and `waiting` need a round trip (promises), and
 * `release` resolves once Redis has the permits. No `close`, `addPermits`,
 * `forgetPermits` or `handle`.
 */
export class RedisSemaphore {
  readonly name: string
  /** Permits in existence. */
  readonly capacity: number
  /** The mode asked for; every mode is served FIFO on Redis (see `RedisSemaphoreOptions.fairness`). */
  readonly fairness: Fairness
  readonly #store: RedisStore
  readonly #lease: Lease
  readonly #maxWaiters: number
  /** Waits of this object in flight, and those of them queued in Redis. */
  #waiters = 0
  #queued = 0
  #local: Semaphore | undefined
  #sweep: NodeJS.Timeout | undefined
  #sweepAt = Infinity
  /** This process's wait times (the histogram of `metrics()`); the counts come from Redis. */
  readonly #times = new SharedMetrics()

  /** @internal use `Semaphore.open(name, { permits, store })` */
  constructor(store: RedisStore, name: string, options: RedisSemaphoreOptions, kind = 'sem') {
    this.name = validateName(name)
    const opts = validateOptions<RedisSemaphoreOptions>(options, 'options')
    this.capacity = validateInteger(opts.permits, 'options.permits', 1, MAX_PERMITS)
    this.fairness = validateFairness(opts.fairness, 'options.fairness')
    this.#maxWaiters =
      opts.maxWaiters === undefined ? Infinity : validateInteger(opts.maxWaiters, 'options.maxWaiters', 0, 2 ** 32 - 1)
    this.#store = store
    const base = `${store.tag(this.name)}:${kind}:`
    // 'm': the metrics counters, under the same tag (and prefix) as the rest.
    const keys = ['p', 'l', 'q', 'm'].map((k) => base + k)
    this.#lease = {
      store,
      name: this.name,
      keys,
      args: [String(this.capacity)],
      ttl: store.leaseTtl,
      release: (id) => this.#release(id),
      renewals: new Renewals(store.leaseTtl),
    }
  }

  async #release(id: string): Promise<void> {
    try {
      const reply = await this.#store.run(semaphoreRelease, this.#lease.keys, [...this.#lease.args, id])
      this.#armSweep(reply[1])
    } catch {
      // Out of reach: the lease expires after its TTL instead.
    }
  }

  #mismatch(stored: unknown): RangeError {
    const text = String(stored)
    // Stored as '<permits>/v2' (the key layout: see semaphoreAcquire); a bare count is an earlier sluice's.
    const found = text.endsWith('/v2') ? `permits ${text.slice(0, -3)}` : `permits ${text} in the key layout of an earlier sluice`
    return Errors.parameterMismatch('Semaphore', this.name, found, `permits ${this.capacity}`)
  }

  #twin(): Semaphore {
    return (this.#local ??= new Semaphore(this.capacity))
  }

  /** A local permit in a RedisPermit's clothes (`whenUnavailable: 'local'`). */
  static #wrap(permit: Permit | null): RedisPermit | null {
    return permit === null ? null : RedisPermit.detached(permit.weight, () => permit.release())
  }

  /** One timer, at the earliest lease expiry the server reported, while this object has waiters. */
  #armSweep(ms: unknown): void {
    if (typeof ms !== 'number' || ms < 0 || this.#waiters === 0) return
    const at = performance.now() + ms + 1
    if (this.#sweep !== undefined && this.#sweepAt <= at) return
    clearTimeout(this.#sweep)
    this.#sweepAt = at
    this.#sweep = setTimeout(() => {
      this.#sweep = undefined
      this.#sweepAt = Infinity
      void this.#release('')
    }, ms + 1)
    this.#sweep.unref()
  }

  /** Resolves once the server holds `permits`; a RangeError naming both values if another opener gave others. */
  async ready(): Promise<void> {
    await this.#state()
  }

  async #state(): Promise<[number, number]> {
    const reply = await this.#store.run(semaphoreState, this.#lease.keys, [...this.#lease.args, ''])
    if (reply[0] === -2) throw this.#mismatch(reply[1])
    return [Number(reply[0]), Number(reply[1])]
  }

  /** Permits free now, in all processes (0 while anyone waits): a round trip. */
  get available(): Promise<number> {
    return this.#state().then((s) => s[0])
  }

  /** Waits queued now, in all processes: a round trip. */
  get waiting(): Promise<number> {
    return this.#state().then((s) => s[1])
  }

  /**
   * Counts of every process that uses this name on this server (one round
   * trip, so a promise, like `available`): `acquired` and `refused` are
   * counted by the scripts that decide them, `timedOut` and `aborted` by the
   * call that withdraws the wait; `waiting` and `inUse` are the server's now.
   * `waitTime` is this process's own. A reply of another shape reads as
   * zeros; an unreachable Redis rejects.
   */
  async metrics(): Promise<RedisSemaphoreMetrics> {
    const reply: unknown = await this.#store.run(semaphoreMetrics, this.#lease.keys, [...this.#lease.args, ''])
    const values: unknown[] = Array.isArray(reply) ? reply : []
    if (values[0] === -2) throw this.#mismatch(values[1])
    return {
      ...countsOf(values, 2),
      waiting: countOf(values[0]),
      waitTime: this.#times.read(0).waitTime,
      capacity: this.capacity,
      inUse: Math.min(countOf(values[1]), this.capacity),
    }
  }

  #checkWeight(weight: unknown, name: string): number {
    return validateInteger(weight, name, 1, this.capacity)
  }

  /** Takes `weight` permits if they are free and nobody waits ahead; otherwise `null`. One round trip. */
  tryAcquire(weight = 1): Promise<RedisPermit | null> {
    try {
      this.#checkWeight(weight, 'weight')
    } catch (error) {
      return Promise.reject(error)
    }
    const id = randomUUID()
    const args = [...this.#lease.args, id, String(weight), String(this.#lease.ttl), 'try', this.#store.channel]
    return this.#store.run(semaphoreAcquire, this.#lease.keys, args).then(
      (reply) => {
        if (reply[0] === -2) throw this.#mismatch(reply[1])
        if (reply[0] !== 1) {
          this.#times.refused()
          return null
        }
        this.#times.acquired()
        return RedisPermit.leased(this.#lease, id, weight)
      },
      (error: unknown) => {
        // It may still run once Redis is back: give back whatever it took.
        this.#store.fire(semaphoreRelease, this.#lease.keys, [...this.#lease.args, id])
        return unavailable(this.#store, error, {
          open: () => RedisPermit.detached(weight),
          local: () => RedisSemaphore.#wrap(this.#twin().tryAcquire(weight)),
        })
      },
    )
  }

  /**
   * Waits for `weight` permits, first come first served across processes.
   * Rejects with `signal.reason` if the signal aborts first, with a
   * `TimeoutError` after `timeout` ms; a cancelled wait leaves nothing in
   * Redis (permits granted to it meanwhile go back). When Redis cannot be
   * reached, the store's `whenUnavailable` decides.
   */
  acquire(options?: RedisAcquireOptions): Promise<RedisPermit> {
    let weight: number, signal: AbortSignal | undefined, timeout: number | undefined
    try {
      const opts = validateOptions<AcquireOptions>(options, 'options')
      weight = this.#checkWeight(opts.weight ?? 1, 'options.weight')
      ;({ signal, timeout } = validateWaitOptions(opts))
      if (opts.priority !== undefined && validateInteger(opts.priority, 'options.priority', -(2 ** 31), 2 ** 31 - 1) !== 0) {
        throw new RangeError(`options.priority must be 0 with a Redis store (waits are FIFO across processes), got ${show(opts.priority)}`)
      }
    } catch (error) {
      return Promise.reject(error)
    }
    if (signal?.aborted) return Promise.reject(signal.reason)
    return this.#wait(weight, signal, timeout)
  }

  #wait(weight: number, signal: AbortSignal | undefined, timeout: number | undefined): Promise<RedisPermit> {
    const store = this.#store
    const { keys, args, ttl } = this.#lease
    const id = randomUUID()
    // `why` (a metrics counter) rides on the withdrawal, which is made anyway.
    const withdraw = (why?: 'timedOut' | 'aborted' | 'refused'): void =>
      store.fire(semaphoreRelease, keys, why === undefined ? [...args, id] : [...args, id, why])
    const start = performance.now()
    this.#waiters++
    return new Promise<RedisPermit>((resolve, reject) => {
      let done = false
      let queued = false
      let renewal: NodeJS.Timeout | undefined
      const end = (): boolean => {
        if (done) return false
        done = true
        this.#waiters--
        if (queued) this.#queued--
        disconnect()
        clearTimeout(renewal)
        store.unlisten(id)
        return true
      }
      // Granted by a release (the pub/sub message): timed for the histogram.
      const granted = (): void => {
        if (!end()) return
        this.#times.granted(start)
        resolve(RedisPermit.leased(this.#lease, id, weight))
      }
      // Granted by its own first attempt: a wait of 0, as in process.
      const grantedAtOnce = (): void => {
        if (!end()) return
        this.#times.acquired()
        resolve(RedisPermit.leased(this.#lease, id, weight))
      }
      const fail = (error: unknown): void => {
        if (end()) reject(error)
      }
      const disconnect = onCancellation(signal, timeout, (reason, timedOut) => {
        // Withdraws the wait, or gives back a grant this process has not seen yet.
        if (end()) {
          withdraw(timedOut ? 'timedOut' : 'aborted')
          reject(reason)
        }
      })
      const outOfReach = (error: unknown): void => {
        if (done) return
        withdraw()
        if (!end()) return
        // The policy's answer, with the wait's own signal and timeout for a local one.
        Promise.resolve()
          .then(() =>
            unavailable(store, error, {
              open: () => RedisPermit.detached(weight),
              local: () => this.#twin().acquire({ weight, signal, timeout }).then((p) => RedisSemaphore.#wrap(p)!),
            }),
          )
          .then(resolve, reject)
      }
      // Idempotent by id: the first call queues, later ones renew the queue
      // lease (or re-queue after a Redis restart), and a grant is seen either way.
      const attempt = (): void => {
        // Ended (cancelled, say) before this attempt: queueing it now would
        // leave a wait nobody withdraws. An attempt already sent when the
        // wait ends is withdrawn by the ending's script, sent after it on
        // the same connection.
        if (done) return
        store.run(semaphoreAcquire, keys, [...args, id, String(weight), String(ttl), 'wait', store.channel]).then((reply) => {
          if (done) return
          if (reply[0] === -2) return fail(this.#mismatch(reply[1]))
          if (reply[0] === 1) return queued ? granted() : grantedAtOnce()
          if (!queued) {
            // maxWaiters counts queued waits (of this object, in this process), as in process.
            if (this.#queued >= this.#maxWaiters) {
              withdraw('refused')
              return fail(Errors.waitersFull(this.#maxWaiters))
            }
            queued = true
            this.#queued++
          }
          this.#armSweep(reply[1])
          renewal = setTimeout(attempt, ttl / 3)
          renewal.unref()
        }, outOfReach)
      }
      // Subscribed before queueing, so the grant message cannot come first.
      store.listen(id, granted).then(attempt, outOfReach)
    })
  }

  /** Runs `fn` holding `weight` permits, releasing them however it ends. */
  async run<T>(fn: (signal: AbortSignal) => T | PromiseLike<T>, options?: RedisAcquireOptions): Promise<Awaited<T>> {
    if (typeof fn !== 'function') throw new TypeError(`fn must be a function, got ${show(fn)}`)
    const permit = await this.acquire(options)
    try {
      return await fn(permit.signal)
    } finally {
      await permit.release()
    }
  }
}
