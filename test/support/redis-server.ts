// Starts a real `redis-server` on a free loopback port in a temporary
// directory, for one test file, and stops it. A suite that cannot start one
// fails (scripts/setup.sh installs redis-server): it is never skipped.
// SLUICE_REDIS_SERVER names another server binary for every suite (npm run
// test:js:valkey sets it to valkey-server, which takes the same arguments).
import { spawn, type ChildProcess } from 'node:child_process'
import { once } from 'node:events'
import { mkdtempSync, rmSync } from 'node:fs'
import { createServer } from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'

/** The server binary the suites start: `$SLUICE_REDIS_SERVER`, else `redis-server`. */
export const serverBinary = process.env.SLUICE_REDIS_SERVER || 'redis-server'

/** The CLI beside `binary` (`valkey-server` -> `valkey-cli`), for what only a CLI does (`--cluster create`). */
export function cliBinary(binary: string = serverBinary): string {
  return binary.replace(/server$/, 'cli')
}

export interface RedisServer {
  /** The binary this server runs (`redis-server`, `valkey-server`, or a path). */
  readonly binary: string
  readonly port: number
  readonly url: string
  /** Stops the server (SIGKILL: nothing is saved), waits `downMs`, and starts it again on the same port, empty. */
  restart(downMs?: number): Promise<void>
  stop(): Promise<void>
}

function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer()
    server.unref()
    server.on('error', reject)
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address() as { port: number }
      server.close(() => resolve(port))
    })
  })
}

async function launch(binary: string, port: number, dir: string, extra: string[]): Promise<ChildProcess> {
  const args = [...extra, '--port', String(port), '--bind', '127.0.0.1', '--dir', dir, '--save', '', '--appendonly', 'no']
  args.push('--enable-debug-command', 'yes', '--protected-mode', 'no', '--loglevel', 'warning')
  const child = spawn(binary, args, { stdio: ['ignore', 'pipe', 'pipe'] })
  let output = ''
  child.stdout!.on('data', (chunk) => (output += chunk))
  child.stderr!.on('data', (chunk) => (output += chunk))
  const failed = new Promise<never>((_, reject) => {
    const check = binary.includes('valkey') ? 'valkey' : 'redis'
    child.once('error', (error) => reject(new Error(`${binary} could not start (run scripts/setup.sh ${check}): ${error.message}`)))
    child.once('exit', (code) => reject(new Error(`${binary} exited (${code}): ${output}`)))
  })
  failed.catch(() => {})
  // Ready once it accepts a PING: asked by a plain socket, no client needed.
  for (let i = 0; i < 200; i++) {
    const up = await Promise.race([ping(port), failed])
    if (up) return child
    await new Promise((resolve) => setTimeout(resolve, 25))
  }
  child.kill('SIGKILL')
  throw new Error(`${binary} did not answer on port ${port} within 5 s: ${output}`)
}

async function ping(port: number): Promise<boolean> {
  const { connect } = await import('node:net')
  return new Promise((resolve) => {
    const socket = connect(port, '127.0.0.1')
    socket.setTimeout(500)
    const done = (ok: boolean): void => {
      socket.destroy()
      resolve(ok)
    }
    socket.on('connect', () => socket.write('PING\r\n'))
    socket.on('data', (data) => done(data.toString().startsWith('+PONG')))
    socket.on('error', () => done(false))
    socket.on('timeout', () => done(false))
  })
}

async function kill(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return
  const exited = once(child, 'exit')
  child.kill('SIGKILL')
  await exited
}

/** A server on a free loopback port; `extra` arguments go to the server first. */
export async function startRedis(extra: string[] = [], binary: string = serverBinary): Promise<RedisServer> {
  const dir = mkdtempSync(join(tmpdir(), 'sluice-redis-'))
  const port = await freePort()
  let child: ChildProcess
  try {
    child = await launch(binary, port, dir, extra)
  } catch (error) {
    rmSync(dir, { recursive: true, force: true })
    throw error
  }
  return {
    binary,
    port,
    url: `redis://127.0.0.1:${port}`,
    async restart(downMs = 0) {
      await kill(child)
      await new Promise((resolve) => setTimeout(resolve, downMs))
      child = await launch(binary, port, dir, extra)
    },
    async stop() {
      await kill(child)
      rmSync(dir, { recursive: true, force: true })
    },
  }
}
