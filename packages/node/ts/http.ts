/**
 * `sluice/http`: rate-limit middleware for `node:http` handlers and for
 * Express and Connect (anything that calls `(req, res, next)`).
 *
 * ```js
 * app.use(rateLimit({ capacity: 100, refillPerSecond: 10 }))  // Express
 * if (!(await limit(req, res))) return                          // node:http
 * ```
 */
import type { IncomingMessage, ServerResponse } from 'node:http'
import {
  ipKey,
  compileOptions,
  limitRequest,
  type FrameworkDefaults,
  type RateLimitOptions,
  type Responder,
} from './http-options.js'
import { JSON_CONTENT_TYPE, refusalBody } from './rate-limit-headers.js'

export { ipKey } from './http-options.js'
export type { RateLimitOptions, RateLimitBehaviour, RateLimitRefusal } from './http-options.js'
export type { RateLimiterOptions } from './rate-limiter.js'
export type { HeadersMode } from './rate-limit-headers.js'
export type { KeyedRateLimit, RateLimitKey, RateLimitReason, RateLimitResult } from './keyed-limit.js'

/**
 * The middleware. Called with `next` (Express, Connect), it calls `next()`
 * to let a request through, ends a refused one itself, and hands a failure
 * to `next(error)`. Called without (a plain `node:http` handler), it returns
 * a promise: `true` to go on, `false` once it has answered the request
 * itself; it rejects with a failure, which is yours to answer (a 500).
 */
export interface HttpRateLimit<Req extends IncomingMessage = IncomingMessage, Res extends ServerResponse = ServerResponse> {
  (req: Req, res: Res, next: (error?: unknown) => void): void
  (req: Req, res: Res): Promise<boolean>
}

/** The request as Express extends it: `ip` honours its `trust proxy` setting. */
type MaybeExpressRequest = IncomingMessage & { ip?: unknown }

const defaults: FrameworkDefaults<MaybeExpressRequest> = {
  key: (req) => ipKey(typeof req.ip === 'string' ? req.ip : req.socket.remoteAddress),
  // Seconds since the epoch, as express-rate-limit sends it.
  legacyReset: 'epoch',
}

const responder: Responder<ServerResponse> = {
  set: (res, name, value) => res.setHeader(name, value),
  append: (res, name, value) => res.appendHeader(name, value),
  sent: (res) => res.headersSent || res.writableEnded,
  // node:http begins a reply synchronously (writeHead, write, end).
  watch: (res) => () => res.headersSent || res.writableEnded,
  refuse(res, result) {
    res.statusCode = 429
    res.setHeader('Content-Type', JSON_CONTENT_TYPE)
    res.end(refusalBody(result))
  },
}

const ignore = (): void => {}

/**
 * Makes the middleware. `options` give a `limiter` (any `KeyedRateLimit`:
 * a `RateLimiter`, one shared with workers, a remote one), or the
 * parameters of a `RateLimiter` to make, plus how requests are counted.
 * The default key is the client's address: Express's `req.ip` where it
 * exists (it honours `trust proxy`), else `req.socket.remoteAddress`.
 *
 * @throws {TypeError} for options that are not valid, at once.
 */
export function rateLimit<Req extends IncomingMessage = IncomingMessage, Res extends ServerResponse = ServerResponse>(
  options: RateLimitOptions<Req, Res>,
): HttpRateLimit<Req, Res> {
  const limit = compileOptions<Req, Res>(options, defaults as FrameworkDefaults<Req>, 'options')
  const respond = responder as Responder<Res>
  function middleware(req: Req, res: Res, next?: (error?: unknown) => void): void | Promise<boolean> {
    if (next !== undefined) return limitRequest(limit, respond, req, res, next, ignore)
    return new Promise<boolean>((resolve, reject) => {
      limitRequest(
        limit,
        respond,
        req,
        res,
        (error) => (error === undefined ? resolve(true) : reject(error)),
        () => resolve(false),
      )
    })
  }
  return middleware as HttpRateLimit<Req, Res>
}
