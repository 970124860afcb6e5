// The reference service (examples/service/server.mjs) on a throwaway Postgres:
// 2 node:cluster processes whose INSERTs share one named semaphore and whose
// requests share one rate limit per API key, and a circuit breaker in front
// of a dependency that fails. Bounded loads, no speed asserted. Needs
// PostgreSQL (`bash scripts/setup.sh postgres`).
import { fork, type ChildProcess } from 'node:child_process'
import { once } from 'node:events'
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import pg from 'pg'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { freePort, startPostgres } from '../examples/service/postgres.mjs'

const server = new URL('../examples/service/server.mjs', import.meta.url)
const shmDir = mkdtempSync(join(tmpdir(), 'sluice-service-shm-'))
let postgres: Awaited<ReturnType<typeof startPostgres>>
const services: ChildProcess[] = []

beforeAll(async () => {
  postgres = await startPostgres()
})

afterAll(async () => {
  await Promise.all(services.map(stopService))
  await postgres?.stop()
  rmSync(shmDir, { recursive: true, force: true })
})

async function stopService(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return
  const exited = once(child, 'exit')
  child.kill('SIGTERM')
  const timer = setTimeout(() => child.kill('SIGKILL'), 10_000)
  await exited
  clearTimeout(timer)
}

/** Starts the service with `env` on a free port; resolves to its URL once every process listens. */
async function startService(name: string, env: Record<string, string>): Promise<string> {
  const port = await freePort()
  const child = fork(server, {
    env: {
      ...process.env,
      DATABASE_URL: postgres.url,
      PORT: String(port),
      WORKERS: '2',
      SLUICE_NAME: `${name}-${process.pid}`,
      SLUICE_SHM_DIR: shmDir,
      ...env,
    },
    stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
  })
  services.push(child)
  await Promise.race([
    once(child, 'message'),
    once(child, 'exit').then(([code]) => Promise.reject(new Error(`server.mjs exited (${code}) before listening`))),
  ])
  return `http://127.0.0.1:${port}`
}

async function order(url: string, key: string): Promise<number> {
  const response = await fetch(`${url}/orders`, {
    method: 'POST',
    headers: { 'x-api-key': key, 'content-type': 'application/json' },
    body: JSON.stringify({ item: 'tea', qty: 1 }),
  })
  await response.arrayBuffer()
  return response.status
}

/** Sends `keys.length` orders, `concurrency` at a time; resolves to their statuses. */
async function load(url: string, keys: string[], concurrency: number): Promise<number[]> {
  const statuses: number[] = []
  let next = 0
  const sender = async () => {
    while (next < keys.length) statuses.push(await order(url, keys[next++]!))
  }
  await Promise.all(Array.from({ length: concurrency }, sender))
  return statuses
}

/** Polls pg_stat_activity every 5 ms until `done` settles: the most INSERTs seen running at once. */
async function mostConcurrentInserts(done: Promise<unknown>): Promise<number> {
  const client = new pg.Client({ connectionString: postgres.url })
  await client.connect()
  let settled = false
  const finished = done.finally(() => (settled = true))
  let most = 0
  try {
    while (!settled) {
      const { rows } = await client.query(
        "select count(*)::int as n from pg_stat_activity where state = 'active' and query like 'insert into orders%'",
      )
      most = Math.max(most, rows[0].n as number)
      await new Promise((resolve) => setTimeout(resolve, 5))
    }
  } finally {
    await client.end()
  }
  await finished
  return most
}

const count = (statuses: number[], status: number) => statuses.filter((s) => s === status).length

describe('examples/service', () => {
  const permits = 2
  const rate = 2
  const burst = 5
  let url: string

  beforeAll(async () => {
    url = await startService('db', {
      DB_PERMITS: String(permits),
      QUERY_MS: '40', // long enough that 20 waiting requests overlap in Postgres
      RATE_PER_KEY: String(rate),
      BURST_PER_KEY: String(burst),
      CPU_ROUNDS: '10',
      FAIL_PERCENT: '0',
      OUTAGE_MS: '0',
    })
  }, 120_000)

  it('two processes never run more INSERTs at once than the one shared limit, and every created order is in the table', async () => {
    // 60 orders on 30 keys (2 each, within the burst), 20 at a time over 2 processes
    const keys = Array.from({ length: 60 }, (_, i) => `db-key-${i % 30}`)
    const sent = load(url, keys, 20)
    const most = await mostConcurrentInserts(sent)
    const statuses = await sent
    expect(count(statuses, 201)).toBe(60)
    expect(most).toBeLessThanOrEqual(permits)
    // the limit was reached, not trivially met: queries did overlap
    expect(most).toBe(permits)
    const client = new pg.Client({ connectionString: postgres.url })
    await client.connect()
    try {
      const { rows } = await client.query("select count(*)::int as n from orders where api_key like 'db-key-%'")
      expect(rows[0].n).toBe(60)
    } finally {
      await client.end()
    }
  }, 60_000)

  it('a key over its limit gets 429s, and both processes together let through no more than one budget allows', async () => {
    const started = performance.now()
    const statuses = await load(url, Array(40).fill('hot-key'), 4)
    const seconds = (performance.now() - started) / 1000
    const admitted = statuses.length - count(statuses, 429)
    expect(count(statuses, 429)).toBeGreaterThan(0)
    expect(statuses.every((s) => s === 201 || s === 429)).toBe(true)
    // one budget for the machine: the burst plus the refill over the run (a
    // budget per process would allow twice that)
    expect(admitted).toBeLessThanOrEqual(burst + Math.ceil(rate * seconds))
    // another key is unaffected
    expect(await order(url, 'cold-key')).toBe(201)
  }, 60_000)
})

describe('examples/service with a failing dependency', () => {
  it('answers 502 while the breaker counts failures, then 503 without calling the dependency once it opens', async () => {
    const url = await startService('breaker', { WORKERS: '1', FAIL_PERCENT: '100', CPU_ROUNDS: '10', RATE_PER_KEY: '1000', BURST_PER_KEY: '1000' })
    // minimumCalls is 20: the first 20 failures all reach the dependency;
    // then it opens (a half-open trial after openDuration may fail again: 502)
    const statuses = await load(url, Array(40).fill('breaker-key'), 1)
    expect(statuses.slice(0, 20)).toEqual(Array(20).fill(502))
    expect(count(statuses, 503)).toBeGreaterThan(0)
    expect(count(statuses, 502) + count(statuses, 503)).toBe(40)
  }, 60_000)
})
