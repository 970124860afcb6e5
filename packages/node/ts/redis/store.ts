// The store `redis(client, options)` returns: the connection, its command
// timeout and policy for when Redis is out of reach, and the pub/sub
// listener that wakes waiting semaphores. `Semaphore.open(name, { store })`
// and its siblings reach it through the kOpen* symbols.
import { randomUUID } from 'node:crypto'
import { ClosedError, Errors } from '../errors.js'
import { kOpenMutex, kOpenRateLimiter, kOpenSemaphore, kOpenTokenBucket } from '../symbols.js'
import { MAX_TIMEOUT, show, validateInteger, validateOptions, validateTimeout } from '../validate.js'
import { connect, evalScript, type Connection, type Script, type Subscriber } from './client.js'
import { RedisMutex, type RedisMutexOptions } from './mutex.js'
import { RedisRateLimiter, type RedisRateLimiterOptions } from './rate-limiter.js'
import { RedisSemaphore, type RedisSemaphoreOptions } from './semaphore.js'
import { RedisTokenBucket, type RedisTokenBucketOptions } from './token-bucket.js'

/**
 * What a primitive does when Redis does not answer within `commandTimeout`
 * or cannot be reached: `'fail-closed'` rejects with a
 * `StoreUnavailableError` (`tryTake` too); `'fail-open'` allows (a
 * rate limit allows, a semaphore hands out a permit backed by nothing);
 * `'local'` asks an in-process twin with the same parameters (this process's
 * share is then not limited against the others').
 */
export type WhenUnavailable = 'fail-closed' | 'fail-open' | 'local'

export interface RedisStoreOptions {
  /** Prepended to every key and channel (default `'sluice:'`); no `{` or `}`. */
  prefix?: string
  /** Milliseconds each command may take before it counts as unavailable (default 1000). */
  commandTimeout?: number
  /** Default `'fail-closed'`. */
  whenUnavailable?: WhenUnavailable
  /**
   * Milliseconds a semaphore lease (a holder, or a queued wait) lives
   * unless renewed (default 10,000); a wait's is renewed every third of
   * it, a holder's between a third and a half of it after the last renewal.
   */
  leaseTtl?: number
}

const kDefaults = { prefix: 'sluice:', commandTimeout: 1000, whenUnavailable: 'fail-closed', leaseTtl: 10_000 } as const

/** Replies from a server that is up but cannot serve now: the same as unreachable. */
const UNAVAILABLE_REPLY = /^(LOADING|BUSY|MASTERDOWN|CLUSTERDOWN|TRYAGAIN|READONLY|NOREPLICAS)\b/

/** An error the server answered (a script bug, a wrong type): not about availability. */
function isReply(error: unknown): boolean {
  return /Reply|SimpleError|BlobError/.test((error as object | null)?.constructor?.name ?? '')
}

/** A script's own error as it is; anything else as a StoreUnavailableError. */
function availability(error: unknown): unknown {
  return isReply(error) && !UNAVAILABLE_REPLY.test(String((error as Error)?.message)) ? error : Errors.storeUnavailable(String((error as Error)?.message), error)
}

/** A script call waiting for its reply: its deadline (performance.now() ms) and how to give up on it. */
interface InFlight {
  readonly at: number
  readonly reject: (error: Error) => void
}

export class RedisStore {
  readonly prefix: string
  readonly commandTimeout: number
  readonly whenUnavailable: WhenUnavailable
  readonly leaseTtl: number
  /**
   * @internal This store's own wake-up channel: grants to its waiters are
   * published here, so a process wakes only for its own grants.
   */
  readonly channel: string
  readonly #conn: Connection
  #subscriber: Promise<Subscriber> | undefined
  /** Resolves once the subscriber listens on `channel` (made again after a failure). */
  #subscribed: Promise<void> | undefined
  /** Lease id -> the waiter a grant message naming it wakes. */
  readonly #waiters = new Map<string, () => void>()
  /** Script calls waiting for a reply, oldest first, and the one timer that times them out. */
  readonly #inFlight = new Set<InFlight>()
  #deadline: NodeJS.Timeout | undefined
  #closed = false

  /** @internal use `redis(client, options)` */
  constructor(conn: Connection, options: RedisStoreOptions | undefined) {
    const opts = validateOptions<RedisStoreOptions>(options, 'options')
    const prefix = opts.prefix ?? kDefaults.prefix
    if (typeof prefix !== 'string') throw new TypeError(`options.prefix must be a string, got ${show(prefix)}`)
    // A brace would end (or open) the hash tag that keeps a primitive's keys in one slot.
    if (prefix.length > 256 || /[{}]/.test(prefix)) {
      throw new RangeError(`options.prefix must be at most 256 characters without '{' or '}', got ${show(prefix)}`)
    }
    const timeout = validateTimeout(opts.commandTimeout ?? kDefaults.commandTimeout, 'options.commandTimeout')!
    if (timeout < 1) throw new RangeError(`options.commandTimeout must be between 1 and ${MAX_TIMEOUT} ms, got ${timeout}`)
    const policy = opts.whenUnavailable ?? kDefaults.whenUnavailable
    if (policy !== 'fail-closed' && policy !== 'fail-open' && policy !== 'local') {
      throw new TypeError(`options.whenUnavailable must be 'fail-closed', 'fail-open' or 'local', got ${show(policy)}`)
    }
    this.leaseTtl = validateInteger(opts.leaseTtl ?? kDefaults.leaseTtl, 'options.leaseTtl', 30, MAX_TIMEOUT)
    this.prefix = prefix
    this.commandTimeout = timeout
    this.whenUnavailable = policy
    this.channel = `${prefix}wake:${randomUUID()}`
    this.#conn = conn
  }

  /** Which client the store drives. */
  get client(): 'ioredis' | 'node-redis' {
    return this.#conn.kind
  }

  /** @internal The hash tag that puts every key of one primitive in one slot. */
  tag(name: string): string {
    return `{${this.prefix}${name}}`
  }

  /**
   * @internal Runs `script` within `commandTimeout`; rejects with a
   * `StoreUnavailableError` if the server is out of reach, busy, or slow.
   * A late reply after the timeout is dropped (and never unhandled).
   */
  run(s: Script, keys: string[], args: string[]): Promise<unknown[]> {
    return new Promise((resolve, reject) => {
      const call: InFlight = { at: performance.now() + this.commandTimeout, reject }
      this.#track(call)
      evalScript(this.#conn, s, keys, args).then(
        (value) => {
          if (this.#untrack(call)) resolve(value as unknown[])
        },
        (error: unknown) => {
          if (this.#untrack(call)) reject(availability(error))
        },
      )
    })
  }

  // Script calls in flight share one timer rather than one each (a timer
  // made and cleared per call was ~3 of ~100 µs of CPU in an acquire and
  // release). All wait the same commandTimeout, so the set, in the order
  // they were sent, is also in the order of their deadlines.
  #track(call: InFlight): void {
    this.#inFlight.add(call)
    if (this.#deadline === undefined) this.#deadline = setTimeout(this.#expire, this.commandTimeout)
    else if (this.#inFlight.size === 1) this.#deadline.ref()
  }

  /** Whether `call` was still waiting (not timed out). */
  #untrack(call: InFlight): boolean {
    if (!this.#inFlight.delete(call)) return false
    // Left to fire (it re-arms or ends itself): clearing it would cost a timer per call again.
    // Unref'd meanwhile, so that an idle store does not hold the process up.
    if (this.#inFlight.size === 0) this.#deadline?.unref()
    return true
  }

  /** Rejects the calls whose deadline has passed and waits for the next one. Bounded: one turn per call. */
  readonly #expire = (): void => {
    this.#deadline = undefined
    const now = performance.now()
    for (const call of this.#inFlight) {
      if (call.at > now) {
        this.#deadline = setTimeout(this.#expire, call.at - now)
        return
      }
      this.#inFlight.delete(call)
      call.reject(Errors.storeUnavailable(`a script: no answer within ${this.commandTimeout} ms (options.commandTimeout)`))
    }
  }

  /** @internal Runs `script` for its effect alone: a failure is dropped (a lease then expires). */
  fire(s: Script, keys: string[], args: string[]): void {
    this.run(s, keys, args).catch(() => {})
  }

  /**
   * @internal Registers `wake` for the grant message naming `id` and
   * subscribes to the store's `channel` (once per store); resolves once
   * subscribed, so a grant published after it cannot be missed. Within
   * `commandTimeout`, as a command; after the first time, at once.
   */
  listen(id: string, wake: () => void): Promise<void> {
    // A subscriber made after `close` would never be closed (and keep the process alive).
    if (this.#closed) return Promise.reject(new ClosedError('the store is closed (store.close()): a wait needs its pub/sub connection'))
    this.#waiters.set(id, wake)
    if (this.#subscribed !== undefined) return this.#subscribed
    if (this.#subscriber === undefined) {
      const subscriber = this.#conn.subscriber((_channel, message) => this.#onMessage(message))
      this.#subscriber = subscriber
      // A connection that failed is made again by the next wait.
      subscriber.catch(() => {
        if (this.#subscriber === subscriber) this.#subscriber = undefined
      })
    }
    const subscribed = this.#within(
      this.#subscriber.then((subscriber) => subscriber.subscribe(this.channel)),
      'subscribing',
    )
    this.#subscribed = subscribed
    // A subscription that failed (or took too long) is tried again by the next wait.
    subscribed.catch(() => {
      if (this.#subscribed === subscribed) this.#subscribed = undefined
    })
    return subscribed
  }

  /** `promise`, or a StoreUnavailableError once `commandTimeout` passes (its late outcome dropped). */
  #within<T>(promise: Promise<T>, what: string): Promise<T> {
    return new Promise((resolve, reject) => {
      const timer = setTimeout(
        () => reject(Errors.storeUnavailable(`${what}: no answer within ${this.commandTimeout} ms (options.commandTimeout)`)),
        this.commandTimeout,
      )
      promise.then(
        (value) => {
          clearTimeout(timer)
          resolve(value)
        },
        (error: unknown) => {
          clearTimeout(timer)
          reject(availability(error))
        },
      )
    })
  }

  /** @internal Drops `id`'s waiter. */
  unlisten(id: string): void {
    this.#waiters.delete(id)
  }

  #onMessage(message: string): void {
    for (const id of message.split(' ')) this.#waiters.get(id)?.()
  }

  /**
   * Closes the pub/sub connection the store opened for waiting semaphores.
   * The client you passed stays open: close it yourself.
   */
  async close(): Promise<void> {
    if (this.#closed) return
    this.#closed = true
    const subscriber = this.#subscriber
    this.#subscriber = undefined
    this.#subscribed = undefined
    if (subscriber !== undefined) await (await subscriber.catch(() => undefined))?.close()
  }

  /** `Semaphore.open(name, { ..., store })` */
  [kOpenSemaphore](name: string, options: RedisSemaphoreOptions): RedisSemaphore {
    return new RedisSemaphore(this, name, options)
  }

  /** `Mutex.open(name, { store })` */
  [kOpenMutex](name: string, options: RedisMutexOptions): RedisMutex {
    return new RedisMutex(this, name, options)
  }

  /** `TokenBucket.open(name, { ..., store })` */
  [kOpenTokenBucket](name: string, options: RedisTokenBucketOptions): RedisTokenBucket {
    return new RedisTokenBucket(this, name, options)
  }

  /** `RateLimiter.open(name, { ..., store })` */
  [kOpenRateLimiter](name: string, options: RedisRateLimiterOptions): RedisRateLimiter {
    return new RedisRateLimiter(this, name, options)
  }
}

/**
 * A store on Redis or Valkey for `Semaphore.open`, `Mutex.open`,
 * `TokenBucket.open` and `RateLimiter.open`. `client` is an ioredis client
 * or a node-redis (v4+) client, connected; you keep it and close it.
 */
export function redis(client: unknown, options?: RedisStoreOptions): RedisStore {
  return new RedisStore(connect(client), options)
}
