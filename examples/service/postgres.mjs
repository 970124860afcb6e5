// A throwaway PostgreSQL cluster for the reference service, its bench and its
// test: `initdb` in a temporary directory, `pg_ctl start` on a free loopback
// port (no TCP beyond 127.0.0.1, the socket in that directory), the `orders`
// table, and `stop()`, which stops the server and removes the directory.
// PostgreSQL refuses to run as root, so as root every command runs as the
// `postgres` user (Debian's package creates it).
//
//   node examples/service/postgres.mjs   (starts one, prints its URL, stops it on Ctrl-C)
import { execFile } from 'node:child_process'
import { existsSync, readdirSync } from 'node:fs'
import { chown, mkdtemp, rm } from 'node:fs/promises'
import { createServer } from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { pathToFileURL } from 'node:url'
import { promisify } from 'node:util'
import pg from 'pg'

const run = promisify(execFile)

export const ORDERS_TABLE = `create table orders (
  id bigserial primary key,
  api_key text not null,
  item text not null,
  qty integer not null,
  digest text not null,
  created_at timestamptz not null default now()
)`

/** The directory of PostgreSQL's programs: Debian's newest under /usr/lib/postgresql, else PATH. */
export function postgresBin() {
  const root = '/usr/lib/postgresql'
  const versions = existsSync(root) ? readdirSync(root).filter((v) => /^\d+$/.test(v)) : []
  versions.sort((a, b) => Number(b) - Number(a))
  for (const version of versions) {
    const bin = join(root, version, 'bin')
    if (existsSync(join(bin, 'initdb'))) return bin
  }
  return '' // on PATH, if anywhere
}

export function freePort() {
  return new Promise((resolve, reject) => {
    const server = createServer()
    server.once('error', reject)
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address()
      server.close(() => resolve(port))
    })
  })
}

/**
 * Starts a cluster and creates the `orders` table. Resolves to
 * `{ url, port, dir, stop }`; `stop()` is safe to call twice.
 */
export async function startPostgres({ maxConnections = 100 } = {}) {
  const bin = postgresBin()
  const tool = (name) => (bin ? join(bin, name) : name)
  const asRoot = process.getuid?.() === 0
  const as = (file, args) => (asRoot ? run('runuser', ['-u', 'postgres', '--', file, ...args]) : run(file, args))
  const dir = await mkdtemp(join(tmpdir(), 'sluice-pg-'))
  if (asRoot) {
    const { stdout } = await run('id', ['-u', 'postgres'])
    const { stdout: gid } = await run('id', ['-g', 'postgres'])
    await chown(dir, Number(stdout), Number(gid))
  }
  const data = join(dir, 'data')
  let started = false
  const stop = async () => {
    if (started) {
      started = false
      // immediate: the data is thrown away, so no checkpoint is worth waiting for
      await as(tool('pg_ctl'), ['-D', data, '-m', 'immediate', '-w', 'stop']).catch(() => {})
    }
    await rm(dir, { recursive: true, force: true })
  }
  try {
    await as(tool('initdb'), ['-D', data, '-U', 'postgres', '-A', 'trust', '--no-sync', '-E', 'UTF8', '--locale=C'])
    const port = await freePort()
    const options = [
      `-p ${port}`,
      `-k ${dir}`,
      "-c listen_addresses='127.0.0.1'",
      `-c max_connections=${maxConnections}`,
      // a benchmark's scratch database: durability would only measure the disk
      '-c fsync=off -c synchronous_commit=off -c full_page_writes=off',
    ].join(' ')
    started = true
    await as(tool('pg_ctl'), ['-D', data, '-o', options, '-l', join(dir, 'log'), '-w', '-t', '60', 'start'])
    const url = `postgres://postgres@127.0.0.1:${port}/postgres`
    const client = new pg.Client({ connectionString: url })
    await client.connect()
    try {
      await client.query(ORDERS_TABLE)
    } finally {
      await client.end()
    }
    return { url, port, dir, stop }
  } catch (error) {
    await stop()
    throw error
  }
}

if (import.meta.url === pathToFileURL(process.argv[1]).href) {
  const db = await startPostgres()
  console.log(db.url)
  const done = () => db.stop().then(() => process.exit(0))
  process.once('SIGINT', done)
  process.once('SIGTERM', done)
}
