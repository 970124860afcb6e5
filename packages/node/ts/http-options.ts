// The options sluice/http and sluice/fastify share, validated in one place,
// and the one decision both make per request: skip? which key? what cost?
// then `tryTake`. Each step may answer with a promise (a key looked up in a
// database, a remote limiter); the chain awaits only those that do, so a
// synchronous limiter decides within the call, without a microtask.
import { isIPv4, isIPv6 } from 'node:net'
import type { KeyedRateLimit, RateLimitKey, RateLimitResult } from './keyed-limit.js'
import {
  defaultPolicyName,
  headerPlan,
  retryAfterSeconds,
  validatePolicyName,
  writeHeaders,
  type HeaderPlan,
  type HeaderSink,
  type HeadersMode,
  type LegacyReset,
} from './rate-limit-headers.js'
import { RateLimiter, type RateLimiterOptions } from './rate-limiter.js'
import { show, validateOptions } from './validate.js'

/** What `onLimited` is told about a refused request. */
export interface RateLimitRefusal {
  /** The key that was refused. */
  readonly key: RateLimitKey
  /** The tokens the request asked for. */
  readonly cost: number
  /** The limiter's answer (`reason` says why: `'limited'`, or `'keys-full'`). */
  readonly result: RateLimitResult
  /** The `Retry-After` sent, in whole seconds (at least 1). */
  readonly retryAfter: number
}

/** The options that say how requests are limited, whatever the limiter. */
export interface RateLimitBehaviour<Req, Res> {
  /** The client a request counts against. Default: its IP address, an IPv6 one by its /64. */
  key?(req: Req): RateLimitKey | PromiseLike<RateLimitKey>
  /** Tokens a request takes. Default: 1. */
  cost?(req: Req): number | PromiseLike<number>
  /** Return true to let a request through uncounted and without headers. */
  skip?(req: Req): boolean | PromiseLike<boolean>
  /**
   * Called on a refusal, after the headers are set, to send a reply of your
   * own (or only to log it). If it began no reply by the time it returns
   * (or its promise settles), the default 429 reply is sent. What
   * it returns is awaited if it is a promise (or another thenable), and
   * otherwise ignored; the response itself (a fastify reply, which is
   * thenable) is not awaited, so send on it before returning it.
   */
  onLimited?(req: Req, res: Res, refusal: RateLimitRefusal): unknown
  /** Which rate-limit headers to send. Default: `'draft'`. */
  headers?: HeadersMode
  /** The policy's name in the draft headers. Default: quota and window, e.g. `100-in-1min`. */
  policyName?: string
}

/** Either a `limiter` (any `KeyedRateLimit`, e.g. one shared with workers), or the parameters of a `RateLimiter` to make. */
export type RateLimitOptions<Req, Res> =
  | (RateLimitBehaviour<Req, Res> & { limiter: KeyedRateLimit })
  | (RateLimitBehaviour<Req, Res> & RateLimiterOptions & { limiter?: undefined })

/** Options validated once, at setup; what `decide` runs on. */
export interface CompiledLimit<Req, Res> {
  readonly limiter: KeyedRateLimit
  readonly key: (req: Req) => RateLimitKey | PromiseLike<RateLimitKey>
  readonly cost: ((req: Req) => number | PromiseLike<number>) | undefined
  readonly skip: ((req: Req) => boolean | PromiseLike<boolean>) | undefined
  readonly onLimited: ((req: Req, res: Res, refusal: RateLimitRefusal) => unknown) | undefined
  readonly policyName: string
  readonly plan: HeaderPlan
}

/** What differs between the frameworks. */
export interface FrameworkDefaults<Req> {
  readonly key: (req: Req) => RateLimitKey
  readonly legacyReset: LegacyReset
}

const kDefaultOptions = { headers: 'draft', cost: 1 } as const

const BEHAVIOUR = new Set(['limiter', 'key', 'cost', 'skip', 'onLimited', 'headers', 'policyName'])
/** Every field of any form of `RateLimiterOptions` (the type checks the names, not that none is missing). */
type LimiterField = RateLimiterOptions extends infer O ? (O extends unknown ? keyof O : never) : never
const LIMITER_FIELDS = new Set<string>([
  'limit',
  'windowMs',
  'capacity',
  'refillPerSecond',
  'tokensPerInterval',
  'interval',
  'algorithm',
  'maxKeys',
  'whenFull',
] satisfies LimiterField[])
const HEADERS_MODES: readonly unknown[] = ['draft', 'legacy', 'both', false]

function validateLimiter(value: unknown, name: string): KeyedRateLimit {
  const limiter = value as Partial<KeyedRateLimit> | null
  if (
    typeof limiter !== 'object' ||
    limiter === null ||
    typeof limiter.tryTake !== 'function' ||
    typeof limiter.capacity !== 'number' ||
    !(limiter.capacity >= 1) ||
    typeof limiter.windowMs !== 'number' ||
    !(limiter.windowMs > 0)
  ) {
    throw new TypeError(`${name} must be a KeyedRateLimit (tryTake, capacity and windowMs), got ${show(value)}`)
  }
  return limiter as KeyedRateLimit
}

function validateFunction<F>(value: unknown, name: string): F | undefined {
  if (value === undefined) return undefined
  if (typeof value !== 'function') throw new TypeError(`${name} must be a function, got ${show(value)}`)
  return value as F
}

/**
 * Validates `options` (or a route's override of them, over `inherit`). A
 * limiter is made here, once: an override that names neither a `limiter`
 * nor parameters keeps counting in the inherited limiter.
 */
export function compileOptions<Req, Res>(
  value: unknown,
  defaults: FrameworkDefaults<Req>,
  name: string,
  inherit?: CompiledLimit<Req, Res>,
): CompiledLimit<Req, Res> {
  const options = validateOptions<RateLimitBehaviour<Req, Res> & { limiter?: unknown }>(value, name)
  const parameters: Record<string, unknown> = {}
  let hasParameters = false
  for (const field of Object.keys(options)) {
    if (BEHAVIOUR.has(field)) continue
    // A misspelt option, or one of another library's (max, keyGenerator):
    // better refused than silently ignored.
    if (!LIMITER_FIELDS.has(field)) {
      throw new TypeError(`${name}.${field} is not an option of the rate-limit middleware nor of RateLimiter`)
    }
    parameters[field] = (options as Record<string, unknown>)[field]
    hasParameters = true
  }
  let limiter: KeyedRateLimit
  if (options.limiter !== undefined) {
    if (hasParameters) {
      const extra = Object.keys(parameters).map((field) => `${name}.${field}`)
      throw new TypeError(`${extra.join(', ')} cannot be given with ${name}.limiter (they are the parameters of a limiter it would make)`)
    }
    limiter = validateLimiter(options.limiter, `${name}.limiter`)
  } else if (hasParameters || inherit === undefined) {
    // RateLimiter validates its own parameters (its messages say `options.`).
    limiter = new RateLimiter(parameters as unknown as RateLimiterOptions)
  } else {
    limiter = inherit.limiter
  }
  if (options.headers !== undefined && !HEADERS_MODES.includes(options.headers)) {
    throw new TypeError(`${name}.headers must be 'draft', 'legacy', 'both' or false, got ${show(options.headers)}`)
  }
  const mode = options.headers ?? inherit?.plan.mode ?? kDefaultOptions.headers
  const policyName =
    options.policyName !== undefined
      ? validatePolicyName(options.policyName, `${name}.policyName`)
      : limiter === inherit?.limiter
        ? inherit.policyName
        : defaultPolicyName(limiter)
  return {
    limiter,
    key: validateFunction(options.key, `${name}.key`) ?? inherit?.key ?? defaults.key,
    cost: validateFunction(options.cost, `${name}.cost`) ?? inherit?.cost,
    skip: validateFunction(options.skip, `${name}.skip`) ?? inherit?.skip,
    onLimited: validateFunction(options.onLimited, `${name}.onLimited`) ?? inherit?.onLimited,
    policyName,
    plan: headerPlan(limiter, mode, defaults.legacyReset, policyName),
  }
}

/**
 * The key of a client address, as the default `key` makes it (exported for
 * a key of your own that falls back to the address): an IPv4 address as it
 * is (an IPv4-mapped IPv6 one too), an IPv6 one by its /64 prefix, because
 * one IPv6 client usually holds a whole /64 and could take a fresh address
 * per request (as @fastify/rate-limit does; express-rate-limit groups by
 * /56). No address at all is the key `'unknown'`.
 */
export function ipKey(address: string | undefined): string {
  // No address: the socket is gone already, and whatever is answered will
  // not reach anyone. One shared key beats failing the request with a 500.
  if (address === undefined || address === '') return 'unknown'
  if (isIPv4(address)) return address
  const zoneless = address.replace(/%.*$/, '')
  if (!isIPv6(zoneless)) return address
  const mapped = /^::ffff:(\d+\.\d+\.\d+\.\d+)$/i.exec(zoneless)
  if (mapped !== null) return mapped[1]!
  const [head = '', tail] = zoneless.split('::')
  const groups = (part: string): string[] => (part === '' ? [] : part.split(':'))
  // An embedded IPv4 address (only ever in the last 32 bits) counts as two groups.
  const count = (parts: string[]): number => parts.reduce((n, group) => n + (group.includes('.') ? 2 : 1), 0)
  const first = groups(head)
  const last = tail === undefined ? [] : groups(tail)
  const all = tail === undefined ? first : [...first, ...Array<string>(8 - count(first) - count(last)).fill('0'), ...last]
  return `${all
    .slice(0, 4)
    .map((group) => parseInt(group, 16).toString(16))
    .join(':')}::/64`
}

/** What `decide` found: the limiter's answer, and what it was asked. */
export interface Decision {
  readonly key: RateLimitKey
  readonly cost: number
  readonly result: RateLimitResult
}

export function isThenable<T>(value: T | PromiseLike<T>): value is PromiseLike<T> {
  return typeof (value as { then?: unknown } | null | undefined)?.then === 'function'
}

/**
 * Runs skip, key, cost and `tryTake` for one request: `undefined` when
 * skipped. Synchronous steps stay synchronous; the first promise makes the
 * rest follow it. A step that throws throws (or rejects) out of here.
 */
export function decide<Req, Res>(limit: CompiledLimit<Req, Res>, req: Req): Decision | undefined | Promise<Decision | undefined> {
  if (limit.skip !== undefined) {
    const skip = limit.skip(req)
    if (isThenable(skip)) return Promise.resolve(skip).then((skipped) => (skipped ? undefined : keyed(limit, req)))
    if (skip) return undefined
  }
  return keyed(limit, req)
}

function keyed<Req, Res>(limit: CompiledLimit<Req, Res>, req: Req): Decision | Promise<Decision> {
  const key = limit.key(req)
  return isThenable(key) ? Promise.resolve(key).then((k) => costed(limit, req, k)) : costed(limit, req, key)
}

function costed<Req, Res>(limit: CompiledLimit<Req, Res>, req: Req, key: RateLimitKey): Decision | Promise<Decision> {
  const cost = limit.cost === undefined ? kDefaultOptions.cost : limit.cost(req)
  return isThenable(cost) ? Promise.resolve(cost).then((n) => take(limit, key, n)) : take(limit, key, cost)
}

function take<Req, Res>(limit: CompiledLimit<Req, Res>, key: RateLimitKey, cost: number): Decision | Promise<Decision> {
  const result = limit.limiter.tryTake(key, cost)
  return isThenable(result) ? Promise.resolve(result).then((r) => ({ key, cost, result: r })) : { key, cost, result }
}

/** How a framework's response is written to. */
export interface Responder<Res> extends HeaderSink<Res> {
  /** Whether a reply is under way already (then the default one is not sent). */
  sent(res: Res): boolean
  /** Sends the default refusal: 429 and a small JSON body. */
  refuse(res: Res, result: RateLimitResult): void
  /**
   * Watches for a reply begun on `res` (by `onLimited`): the function
   * returned stops watching and says whether one was begun since, sent
   * yet or not (a fastify reply can still be in its async onSend hooks).
   */
  watch(res: Res): () => boolean
}

/**
 * Limits one request: `proceed()` lets it through, `proceed(error)` hands a
 * failure (of a step, the limiter or `onLimited`) to the framework's error
 * path, and `refused()` says a refusal was sent. Exactly one of them is
 * called, once; nothing here rejects unobserved.
 */
export function limitRequest<Req, Res>(
  limit: CompiledLimit<Req, Res>,
  responder: Responder<Res>,
  req: Req,
  res: Res,
  proceed: (error?: unknown) => void,
  refused: () => void,
): void {
  let outcome: Decision | undefined | Promise<Decision | undefined>
  try {
    outcome = decide(limit, req)
  } catch (error) {
    proceed(error)
    return
  }
  if (isThenable(outcome)) outcome.then((decision) => settle(limit, responder, req, res, decision, proceed, refused), proceed)
  else settle(limit, responder, req, res, outcome, proceed, refused)
}

function settle<Req, Res>(
  limit: CompiledLimit<Req, Res>,
  responder: Responder<Res>,
  req: Req,
  res: Res,
  decision: Decision | undefined,
  proceed: (error?: unknown) => void,
  refused: () => void,
): void {
  if (decision === undefined) return proceed()
  const { result } = decision
  // Headers can be added only to a response not yet under way (another
  // handler may have answered while an async limiter decided).
  if (!responder.sent(res)) writeHeaders(limit.plan, result, responder, res)
  if (result.allowed) return proceed()
  if (limit.onLimited === undefined) {
    if (!responder.sent(res)) responder.refuse(res, result)
    return refused()
  }
  const begun = responder.watch(res)
  const finish = (): void => {
    // Not over a reply of onLimited's own, even one not yet sent.
    if (!begun() && !responder.sent(res)) responder.refuse(res, result)
    refused()
  }
  let handled: unknown
  try {
    handled = limit.onLimited(req, res, { key: decision.key, cost: decision.cost, result, retryAfter: retryAfterSeconds(result) })
  } catch (error) {
    begun()
    return proceed(error)
  }
  // A fastify reply is thenable but settles only once sent: returned as it
  // is (a chained `reply.header(...)`, or `return reply.send(...)`), it is
  // not awaited, or an unsent one would hold the request forever.
  if (isThenable(handled) && handled !== res) {
    Promise.resolve(handled).then(finish, (error: unknown) => {
      begun()
      proceed(error)
    })
  } else finish()
}
