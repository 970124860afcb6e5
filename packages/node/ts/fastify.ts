/**
 * `sluice/fastify`: a fastify 5 plugin that rate-limits every route in an
 * `onRequest` hook (so before the body is read), with the options of
 * `sluice/http`. A route's `config.sluiceRateLimit` opts it out (`false`) or
 * overrides options for it.
 *
 * ```js
 * await app.register(rateLimit, { capacity: 100, refillPerSecond: 10 })
 * app.get('/health', { config: { sluiceRateLimit: false } }, () => 'ok')
 * ```
 */
import type { FastifyPluginCallback, FastifyReply, FastifyRequest, HookHandlerDoneFunction } from 'fastify'
import fp from 'fastify-plugin'
import type { KeyedRateLimit } from './keyed-limit.js'
import type { RateLimiterOptions } from './rate-limiter.js'
import {
  ipKey,
  compileOptions,
  limitRequest,
  type CompiledLimit,
  type FrameworkDefaults,
  type RateLimitBehaviour,
  type RateLimitOptions,
  type Responder,
} from './http-options.js'
import { JSON_CONTENT_TYPE, refusalBody } from './rate-limit-headers.js'

export { ipKey } from './http-options.js'
export type { RateLimitBehaviour, RateLimitRefusal } from './http-options.js'
export type { RateLimiterOptions } from './rate-limiter.js'
export type { HeadersMode } from './rate-limit-headers.js'
export type { KeyedRateLimit, RateLimitKey, RateLimitReason, RateLimitResult } from './keyed-limit.js'

/** The plugin's options: those of `sluice/http`, with fastify's request and reply. */
export type FastifyRateLimitOptions = RateLimitOptions<FastifyRequest, FastifyReply>

/**
 * A route's override. Options it leaves out are the plugin's; without a
 * `limiter` or limiter parameters it counts in the plugin's limiter (set
 * only `cost`, say), with them in a limiter of its own.
 */
export type RouteRateLimitOptions = RateLimitBehaviour<FastifyRequest, FastifyReply> &
  ({ limiter?: KeyedRateLimit } | (RateLimiterOptions & { limiter?: undefined }))

declare module 'fastify' {
  interface FastifyContextConfig {
    /**
     * sluice/fastify for this route: `false` leaves it unlimited, an object
     * overrides the plugin's options. (Not `rateLimit`, which is
     * @fastify/rate-limit's, so both can be installed side by side.)
     */
    sluiceRateLimit?: false | RouteRateLimitOptions
  }
}

const defaults: FrameworkDefaults<FastifyRequest> = {
  // `request.ip` honours fastify's `trustProxy`.
  key: (request) => ipKey(request.ip),
  // Seconds from now, as @fastify/rate-limit sends it.
  legacyReset: 'delta',
}

const responder: Responder<FastifyReply> = {
  set(reply, name, value) {
    reply.header(name, value)
  },
  append(reply, name, value) {
    const previous = reply.getHeader(name)
    reply.header(name, previous === undefined ? value : `${String(previous)}, ${value}`)
  },
  sent: (reply) => reply.sent,
  // reply.sent turns true only once the response has ended, after any async
  // onSend hooks: a send in progress shows only as a call to reply.send,
  // which this counts (on the instance, for as long as it watches).
  watch(reply) {
    let begun = false
    const send: (this: FastifyReply, payload?: unknown) => FastifyReply = reply.send
    const own = Object.hasOwn(reply, 'send')
    reply.send = function (this: FastifyReply, payload?: unknown): FastifyReply {
      begun = true
      return send.call(this, payload)
    }
    return () => {
      if (own) reply.send = send
      else delete (reply as { send?: unknown }).send
      return begun || reply.sent
    }
  },
  refuse(reply, result) {
    reply.code(429).header('content-type', JSON_CONTENT_TYPE).send(refusalBody(result))
  },
}

/** What `register` itself takes; not options of this plugin. */
const REGISTER_OPTIONS = new Set(['prefix', 'logLevel', 'logSerializers'])

const ignore = (): void => {}

const plugin: FastifyPluginCallback<FastifyRateLimitOptions> = (fastify, options, done) => {
  type Limit = CompiledLimit<FastifyRequest, FastifyReply>
  let base: Limit
  try {
    const own = Object.fromEntries(Object.entries(options).filter(([name]) => !REGISTER_OPTIONS.has(name)))
    base = compileOptions(own, defaults, 'options')
  } catch (error) {
    done(error as Error)
    return
  }
  // One compiled override per route's options object (fastify copies a
  // route's config shallowly, so the object a request sees is the route's).
  const routes = new WeakMap<object, Limit>()
  const routeLimit = (override: RouteRateLimitOptions): Limit => {
    let limit = routes.get(override)
    if (limit === undefined) {
      limit = compileOptions(override, defaults, 'config.sluiceRateLimit', base)
      routes.set(override, limit)
    }
    return limit
  }
  // A bad override throws where its route is registered, not at each request.
  fastify.addHook('onRoute', (route) => {
    const override = route.config?.sluiceRateLimit
    if (override !== undefined && override !== false) routeLimit(override)
  })
  // A callback hook, not an async one: a synchronous limiter lets the request
  // on within this call, and only a promise from a step is awaited.
  fastify.addHook('onRequest', (request: FastifyRequest, reply: FastifyReply, next: HookHandlerDoneFunction) => {
    const override = request.routeOptions.config?.sluiceRateLimit
    if (override === false) return next()
    let limit = base
    if (override !== undefined) {
      try {
        limit = routeLimit(override)
      } catch (error) {
        return next(error as Error)
      }
    }
    limitRequest(limit, responder, request, reply, next as (error?: unknown) => void, ignore)
  })
  done()
}

/**
 * The plugin: `app.register(rateLimit, options)`. It is not encapsulated
 * (fastify-plugin), so it limits the routes of the instance it is
 * registered on and of that instance's children; register it inside a
 * child context to limit only that context's routes.
 *
 * A failure (a limiter that throws or rejects, a key or cost it refuses
 * with a TypeError or RangeError) goes to fastify's error handler: a 500
 * unless you say otherwise.
 */
export const rateLimit = fp(plugin, { fastify: '5.x', name: 'sluice-rate-limit' })
