// One small interface over the two Redis clients Node teams use, ioredis and
// node-redis (v4+): a raw command, a Lua script by SHA with the NOSCRIPT
// fallback, and a second connection for pub/sub (a connection in subscriber
// mode can send nothing else). Timeouts and reconnection policy live in the
// store (store.ts); reconnecting is the client library's job.
import { createHash } from 'node:crypto'
import { show } from '../validate.js'

/** The ioredis shape we use (`new Redis()`). */
interface IoRedisLike {
  call(command: string, ...args: (string | number)[]): Promise<unknown>
  duplicate(): IoRedisLike
  subscribe(channel: string): Promise<unknown>
  on(event: string, listener: (...args: never[]) => void): unknown
  quit(): Promise<unknown>
  disconnect(): void
  status: string
}

/** The node-redis (v4+) shape we use (`createClient()`). */
interface NodeRedisLike {
  sendCommand(args: string[]): Promise<unknown>
  duplicate(): NodeRedisLike
  connect(): Promise<unknown>
  subscribe(channel: string, listener: (message: string, channel: string) => void): Promise<unknown>
  on(event: string, listener: (...args: never[]) => void): unknown
  quit?(): Promise<unknown>
  close?(): Promise<unknown>
  destroy?(): void
  disconnect?(): Promise<unknown> | void
  isOpen: boolean
}

/** A Lua script and its SHA1, as EVALSHA names it. */
export interface Script {
  readonly source: string
  readonly sha: string
}

export function script(source: string): Script {
  return { source, sha: createHash('sha1').update(source).digest('hex') }
}

/** @internal What the store needs from a client, whichever it is. */
export interface Connection {
  readonly kind: 'ioredis' | 'node-redis'
  /** One command; replies as RESP2 gives them (integers, strings, arrays). */
  command(args: string[]): Promise<unknown>
  /** A second connection subscribed to `channel`, calling `onMessage` for each message. */
  subscriber(onMessage: (channel: string, message: string) => void): Promise<Subscriber>
}

/** @internal A subscriber connection: subscribes (idempotently) and closes. */
export interface Subscriber {
  subscribe(channel: string): Promise<void>
  close(): Promise<void>
}

function isIoRedis(client: object): client is IoRedisLike {
  const c = client as Partial<IoRedisLike>
  return typeof c.call === 'function' && typeof c.duplicate === 'function' && typeof c.status === 'string'
}

function isNodeRedis(client: object): client is NodeRedisLike {
  const c = client as Partial<NodeRedisLike>
  return typeof c.sendCommand === 'function' && typeof c.duplicate === 'function' && typeof c.isOpen === 'boolean'
}

/** Wraps `client` (ioredis or node-redis v4+); a TypeError naming `client` for anything else. */
export function connect(client: unknown): Connection {
  if (typeof client === 'object' && client !== null) {
    if (isIoRedis(client)) return ioredis(client)
    if (isNodeRedis(client)) return nodeRedis(client)
  }
  throw new TypeError(`client must be an ioredis client (new Redis()) or a node-redis v4+ client (createClient()), got ${show(client)}`)
}

function ioredis(client: IoRedisLike): Connection {
  return {
    kind: 'ioredis',
    command: ([name, ...args]) => client.call(name!, ...args),
    async subscriber(onMessage) {
      const sub = client.duplicate()
      // A connection error is retried by ioredis; without a listener it would
      // be an uncaught 'error' event.
      sub.on('error', () => {})
      sub.on('message', ((channel: string, message: string) => onMessage(channel, message)) as never)
      const channels = new Set<string>()
      return {
        async subscribe(channel) {
          if (channels.has(channel)) return
          channels.add(channel)
          // ioredis subscribes again by itself after a reconnect (autoResubscribe).
          await sub.subscribe(channel)
        },
        async close() {
          await sub.quit().catch(() => sub.disconnect())
        },
      }
    },
  }
}

function nodeRedis(client: NodeRedisLike): Connection {
  return {
    kind: 'node-redis',
    command: (args) => client.sendCommand(args),
    async subscriber(onMessage) {
      const sub = client.duplicate()
      sub.on('error', () => {})
      await sub.connect()
      const channels = new Set<string>()
      return {
        async subscribe(channel) {
          if (channels.has(channel)) return
          channels.add(channel)
          // node-redis subscribes again by itself after a reconnect.
          await sub.subscribe(channel, (message, ch) => onMessage(ch, message))
        },
        async close() {
          try {
            if (typeof sub.close === 'function') await sub.close()
            else await sub.quit!()
          } catch {
            if (typeof sub.destroy === 'function') sub.destroy()
            else await sub.disconnect?.()
          }
        },
      }
    },
  }
}

/** Runs `script` by SHA, loading it (EVAL) when the server does not know it (NOSCRIPT). */
export async function evalScript(conn: Connection, s: Script, keys: string[], args: string[]): Promise<unknown> {
  try {
    return await conn.command(['EVALSHA', s.sha, String(keys.length), ...keys, ...args])
  } catch (error) {
    // After a restart or SCRIPT FLUSH the cache is empty: EVAL caches it again.
    if (!String((error as Error)?.message).startsWith('NOSCRIPT')) throw error
    return conn.command(['EVAL', s.source, String(keys.length), ...keys, ...args])
  }
}
