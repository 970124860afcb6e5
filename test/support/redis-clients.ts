// Clients of both kinds for the Redis tests, a suite's server and clients,
// and a forked child helper.
import { fork, type ChildProcess } from 'node:child_process'
import { once } from 'node:events'
import { Redis } from 'ioredis'
import { createClient } from 'redis'
import { redis } from 'sluice/redis'
import { afterAll, beforeAll } from 'vitest'
import { startRedis, type RedisServer } from './redis-server.js'

export type ClientKind = 'ioredis' | 'node-redis'
export const CLIENT_KINDS: ClientKind[] = ['ioredis', 'node-redis']

export interface TestClient {
  /** The client itself, to give to `redis(...)`. */
  readonly client: unknown
  /** A raw command, for the test's own checks. */
  command(...args: (string | number)[]): Promise<unknown>
  close(): Promise<void>
}

export async function openClient(kind: ClientKind, port: number): Promise<TestClient> {
  if (kind === 'ioredis') {
    const client = new Redis({ port, host: '127.0.0.1' })
    client.on('error', () => {})
    return {
      client,
      command: (name, ...args) => client.call(String(name), ...args.map(String)),
      close: async () => {
        await client.quit().catch(() => client.disconnect())
      },
    }
  }
  const client = createClient({ url: `redis://127.0.0.1:${port}` })
  client.on('error', () => {})
  await client.connect()
  return {
    client,
    command: (...args) => client.sendCommand(args.map(String)),
    close: async () => {
      await client.close().catch(() => client.destroy())
    },
  }
}

/** What `redisSuite` gives a test file. */
export interface RedisSuite {
  /** The suite's own redis-server (started in `beforeAll`). */
  readonly server: RedisServer
  /** A new client of `kind` on that server, closed after the suite. */
  client(kind?: ClientKind): Promise<TestClient>
  /** Runs `close` after the suite, before the clients close (in the order added). */
  onClose(close: () => Promise<void>): void
  /** A sluice store on `c`, closed after the suite (before the clients). */
  store(c: TestClient, options?: Parameters<typeof redis>[1]): ReturnType<typeof redis>
}

/**
 * Starts a redis-server for the calling test file and, after it, kills the
 * children still running, runs the `onClose` callbacks, closes every client
 * and stops the server.
 */
export function redisSuite(): RedisSuite {
  let server: RedisServer | undefined
  const clients: TestClient[] = []
  const closers: (() => Promise<void>)[] = []
  beforeAll(async () => {
    server = await startRedis()
  })
  afterAll(async () => {
    await killAllChildren()
    for (const close of closers) await close()
    await Promise.all(clients.map((c) => c.close()))
    await server?.stop()
  })
  return {
    get server() {
      if (server === undefined) throw new Error('the suite has not started its redis-server yet (beforeAll)')
      return server
    },
    async client(kind = 'ioredis') {
      const c = await openClient(kind, this.server.port)
      clients.push(c)
      return c
    },
    onClose(close) {
      closers.push(close)
    },
    store(c, options) {
      const store = redis(c.client, options)
      closers.push(() => store.close())
      return store
    },
  }
}

const childScript = new URL('../fixtures/redis-child.mjs', import.meta.url).pathname

interface Inbox {
  readonly messages: unknown[]
  readonly waiting: ((message: unknown) => void)[]
}

const inboxes = new WeakMap<ChildProcess, Inbox>()
const forked = new Set<ChildProcess>()

/** Kills every child still running (afterAll: a timed-out test never reaches its `finally`). */
export async function killAllChildren(): Promise<void> {
  await Promise.all([...forked].map(killChild))
  forked.clear()
}

/** Forks the fixture with `config`; every message it sends is kept for `nextMessage`, none lost. */
export function forkChild(config: Record<string, unknown>): ChildProcess {
  const child = fork(childScript, [JSON.stringify(config)], { stdio: ['ignore', 'inherit', 'inherit', 'ipc'] })
  const inbox: Inbox = { messages: [], waiting: [] }
  inboxes.set(child, inbox)
  forked.add(child)
  child.on('message', (message) => {
    const waiter = inbox.waiting.shift()
    if (waiter !== undefined) waiter(message)
    else inbox.messages.push(message)
  })
  return child
}

/** The next message `child` sent (or sends); rejects if it exits first. */
export function nextMessage<T = unknown>(child: ChildProcess): Promise<T> {
  const inbox = inboxes.get(child)!
  if (inbox.messages.length > 0) return Promise.resolve(inbox.messages.shift() as T)
  return new Promise((resolve, reject) => {
    const onExit = (code: number | null): void => reject(new Error(`the child exited (${code}) before sending`))
    child.once('exit', onExit)
    inbox.waiting.push((message) => {
      child.off('exit', onExit)
      resolve(message as T)
    })
  })
}

export async function killChild(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return
  const exited = once(child, 'exit')
  child.kill('SIGKILL')
  await exited
}

/** The server's clock, in ms (TIME). */
export async function serverTime(client: TestClient): Promise<number> {
  const [s, us] = (await client.command('TIME')) as [string, string]
  return Number(s) * 1000 + Number(us) / 1000
}
