import { TokenBucket, type TakeOptions, type TokenBucketOptions } from '../token-bucket.js'
import { intervalNanos, MAX_CAPACITY } from '../token-bucket.js'
import { validateInteger, validateName, validateOptions } from '../validate.js'
import { RedisGcra, unavailable } from './gcra.js'
import type { RedisTokenBucketMetrics } from './metrics.js'
import type { RedisStore } from './store.js'

/** `TokenBucket.open(name, options)`'s options with a Redis store. */
export type RedisTokenBucketOptions = TokenBucketOptions & { store: RedisStore }

/**
 * A token bucket (GCRA) in Redis, shared by every process that opens its
 * name on the same server with the same parameters. `TokenBucket`'s
 * methods, except that `tryTake` and `available` need a round trip and
 * answer with promises.
 */
export class RedisTokenBucket {
  readonly name: string
  readonly capacity: number
  readonly #interval: number
  readonly #store: RedisStore
  readonly #gcra: RedisGcra
  readonly #cell: string
  readonly #options: TokenBucketOptions
  #local: TokenBucket | undefined

  /** @internal use `TokenBucket.open(name, { ..., store })` */
  constructor(store: RedisStore, name: string, options: RedisTokenBucketOptions) {
    this.name = validateName(name)
    const { store: _store, ...opts } = validateOptions<RedisTokenBucketOptions>(options, 'options')
    this.capacity = validateInteger(opts.capacity, 'options.capacity', 1, MAX_CAPACITY)
    this.#interval = intervalNanos(opts)
    const tag = store.tag(this.name)
    this.#store = store
    this.#options = opts as TokenBucketOptions
    this.#cell = `${tag}:tb:c`
    this.#gcra = new RedisGcra(store, 'TokenBucket', this.name, `${tag}:tb:p`, `${tag}:tb:m`, this.capacity, this.#interval)
  }

  /** Tokens added per second. */
  get refillPerSecond(): number {
    return 1e9 / this.#interval
  }

  /** Resolves once the server holds the parameters; rejects with a RangeError naming both values if they differ. */
  async ready(): Promise<void> {
    await this.#gcra.decide(this.#cell, 1, 'peek')
  }

  #twin(): TokenBucket {
    return (this.#local ??= new TokenBucket(this.#options))
  }

  /** Whole tokens available now, to every process (a round trip). */
  get available(): Promise<number> {
    return this.#gcra.decide(this.#cell, 1, 'peek').then(
      (result) => result.remaining,
      (error: unknown) => unavailable(this.#store, error, { open: () => this.capacity, local: () => this.#twin().available }),
    )
  }

  /**
   * Counts of every process that uses this name on this server, and the
   * tokens available now (two round trips, at once). `waiting` and
   * `waitTime` are this process's own.
   */
  async metrics(): Promise<RedisTokenBucketMetrics> {
    const [metrics, available] = await Promise.all([this.#gcra.metrics(), this.available])
    return { ...metrics, available }
  }

  /** Takes `n` tokens if they are there now and nobody waits ahead (a round trip). */
  tryTake(n = 1): Promise<boolean> {
    try {
      if (n !== 1) validateInteger(n, 'n', 1, this.capacity)
    } catch (error) {
      return Promise.reject(error)
    }
    return this.#gcra.decide(this.#cell, n, 'take').then(
      (result) => result.allowed,
      (error: unknown) => unavailable(this.#store, error, { open: () => true, local: () => this.#twin().tryTake(n) }),
    )
  }

  /**
   * Waits for `n` tokens (1..capacity), in order with every other take in
   * every process. Rejects with `signal.reason` if the signal aborts first
   * (the tokens go back), or at once with a `TimeoutError` if they would
   * come after `timeout` ms.
   */
  take(n = 1, options?: TakeOptions): Promise<void> {
    try {
      validateInteger(n, 'n', 1, this.capacity)
    } catch (error) {
      return Promise.reject(error)
    }
    return this.#gcra.take(this.#cell, n, options, {
      open: () => Promise.resolve(),
      local: () => this.#twin().take(n, options),
    })
  }
}
