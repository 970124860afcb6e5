// Across machines (issue 16): keyed rate-limit decisions against one Redis,
// 64 concurrent callers in one process (each awaits its decision, then makes
// the next), over 10,000 keys, every decision allowed. sluice's
// RateLimiter.open (GCRA, one EVALSHA per decision) against
// rate-limiter-flexible's RateLimiterRedis (a fixed window in Lua), both on
// one ioredis client, on the same redis-server that this suite starts on a
// free loopback port and stops. Decisions/s, p50/p99 latency of a decision,
// and the script calls per decision (INFO commandstats: the round trips).
import { fork, spawn } from 'node:child_process'
import { once } from 'node:events'
import { mkdtempSync, rmSync } from 'node:fs'
import { createServer, connect } from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { Redis } from 'ioredis'
import { RateLimiterRedis } from 'rate-limiter-flexible'
import { RateLimiter } from 'sluice'
import { redis } from 'sluice/redis'

const PROCESSES = 4
const contenderScript = new URL('./workers/redis-semaphore-contender.mjs', import.meta.url).pathname
const CALLERS = 64
const KEYS = 10_000
const BASELINE = 'rate-limiter-flexible RateLimiterRedis'

function freePort() {
  return new Promise((resolve, reject) => {
    const server = createServer()
    server.on('error', reject)
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address()
      server.close(() => resolve(port))
    })
  })
}

function ping(port) {
  return new Promise((resolve) => {
    const socket = connect(port, '127.0.0.1')
    const done = (ok) => {
      socket.destroy()
      resolve(ok)
    }
    socket.setTimeout(500, () => done(false))
    socket.on('connect', () => socket.write('PING\r\n'))
    socket.on('data', (data) => done(data.toString().startsWith('+PONG')))
    socket.on('error', () => done(false))
  })
}

async function startRedis() {
  const dir = mkdtempSync(join(tmpdir(), 'sluice-bench-redis-'))
  const port = await freePort()
  const child = spawn('redis-server', ['--port', String(port), '--bind', '127.0.0.1', '--dir', dir, '--save', '', '--appendonly', 'no'], {
    stdio: 'ignore',
  })
  const failed = new Promise((_, reject) => child.once('error', reject))
  for (let i = 0; i < 200; i++) {
    if (await Promise.race([ping(port), failed])) break
    await new Promise((resolve) => setTimeout(resolve, 25))
  }
  return {
    port,
    async stop() {
      const exited = once(child, 'exit')
      child.kill('SIGKILL')
      await exited
      rmSync(dir, { recursive: true, force: true })
    },
  }
}

/** Calls so far of each command (INFO commandstats): a script counts as itself, and each call inside it as that command. */
async function commandCalls(client) {
  const calls = new Map()
  for (const [, name, n] of (await client.info('commandstats')).matchAll(/^cmdstat_([^:]+):calls=(\d+)/gm)) calls.set(name, Number(n))
  return calls
}

/** Script calls so far (EVAL and EVALSHA): both contenders make one round trip per script call. */
async function commandsProcessed(client) {
  const calls = await commandCalls(client)
  return (calls.get('eval') ?? 0) + (calls.get('evalsha') ?? 0)
}

/**
 * Commands the server ran (a script counts as one plus each call inside it)
 * and the CPU the server process used, in µs (INFO commandstats and INFO
 * cpu; commandstats' own times count a script's inner calls twice).
 */
async function serverWork(client) {
  let commands = 0
  for (const [name, n] of await commandCalls(client)) if (name !== 'info') commands += n
  const cpuInfo = await client.info('cpu')
  const cpu = (field) => Number(cpuInfo.match(new RegExp(`^${field}:([\\d.]+)`, 'm'))?.[1] ?? NaN)
  return { commands, cpuUs: (cpu('used_cpu_user') + cpu('used_cpu_sys')) * 1e6 }
}

/** 64 callers, each deciding in a loop for `ms`; decisions/s and latency percentiles. */
async function measure(decide, ms) {
  const latencies = []
  let allowed = 0
  const deadline = performance.now() + ms
  const caller = async (c) => {
    // Bounded: by time, and at most 10 million decisions a caller.
    for (let i = 0; i < 1e7 && performance.now() < deadline; i++) {
      const t0 = performance.now()
      if (await decide(`user:${(c * 7919 + i) % KEYS}`)) allowed++
      latencies.push(performance.now() - t0)
    }
  }
  const started = performance.now()
  await Promise.all(Array.from({ length: CALLERS }, (_, c) => caller(c)))
  const seconds = (performance.now() - started) / 1000
  const sorted = Float64Array.from(latencies).sort()
  const at = (p) => sorted[Math.min(sorted.length - 1, Math.floor(p * sorted.length))] * 1e6
  return { decisions: latencies.length, allowed, opsPerSecond: latencies.length / seconds, p50Ns: at(0.5), p99Ns: at(0.99) }
}

/**
 * 4 processes acquiring and releasing a semaphore of 1 for `warmMs`, then
 * for `ms` measured: acquisitions/s and wait percentiles.
 */
async function handOffs(port, contender, ms, warmMs) {
  const admin = new Redis({ port, host: '127.0.0.1' })
  const children = Array.from({ length: PROCESSES }, () =>
    fork(contenderScript, [JSON.stringify({ port, contender, ms, warmMs })], { stdio: ['ignore', 'inherit', 'inherit', 'ipc'] }),
  )
  try {
    const next = (child) =>
      new Promise((resolve, reject) => {
        child.once('message', resolve)
        child.once('exit', (code) => reject(new Error(`${contender}: a contender exited (${code})`)))
      })
    await Promise.all(children.map(next))
    const reports = children.map(next)
    for (const child of children) child.send('go')
    // The server's counts from the end of the warm-up (as near as a timer gets) to the end.
    await new Promise((resolve) => setTimeout(resolve, warmMs))
    const before = await serverWork(admin)
    const done = await Promise.all(reports)
    const after = await serverWork(admin)
    const waits = done.flatMap((r) => r.waits)
    // Each process measured its own `ms`, after its own warm-up: about the same window.
    const seconds = done.reduce((sum, r) => sum + r.seconds, 0) / done.length
    // Per acquisition: what the server ran for it (a script counts as itself plus each call inside) and its time doing so.
    const commands = (after.commands - before.commands) / waits.length
    const serverUs = (after.cpuUs - before.cpuUs) / waits.length
    const sorted = Float64Array.from(waits).sort()
    const at = (p) => sorted[Math.min(sorted.length - 1, Math.floor(p * sorted.length))] * 1e6
    return { opsPerSecond: waits.length / seconds, p50Ns: at(0.5), p99Ns: at(0.99), longestMs: sorted[sorted.length - 1], commands, serverUs }
  } finally {
    for (const child of children) if (child.exitCode === null) child.kill('SIGKILL')
    admin.disconnect()
  }
}

export function suites({ quick }) {
  const ms = quick ? 300 : 3000
  const rounds = quick ? 1 : 2
  const suite = {
    name: `redis: keyed decisions, ${CALLERS} concurrent callers in one process, ${KEYS.toLocaleString('en-US')} keys (decisions/s)`,
    baseline: BASELINE,
    async run() {
      const server = await startRedis()
      const client = new Redis({ port: server.port, host: '127.0.0.1' })
      try {
        const store = redis(client)
        const ours = RateLimiter.open('bench', { capacity: 1e6, refillPerSecond: 1e6, store })
        const flexible = new RateLimiterRedis({ storeClient: client, points: 1e6, duration: 1, keyPrefix: 'rlf' })
        const contenders = {
          [BASELINE]: (key) => flexible.consume(key).then(() => true, () => false),
          'sluice RateLimiter.open (redis store)': (key) => ours.tryTake(key).then((r) => r.allowed),
        }
        // Warm-up (scripts loaded, connections up), then alternate the contenders.
        for (const decide of Object.values(contenders)) await measure(decide, 100)
        const best = {}
        const perDecision = {}
        for (let round = 0; round < rounds; round++) {
          for (const [name, decide] of Object.entries(contenders)) {
            const before = await commandsProcessed(client)
            const run = await measure(decide, ms)
            const commands = (await commandsProcessed(client)) - before
            if (run.allowed !== run.decisions) throw new Error(`${name}: ${run.decisions - run.allowed} decisions refused; every one should be allowed`)
            perDecision[name] = commands / run.decisions
            if (!best[name] || run.opsPerSecond > best[name].opsPerSecond) best[name] = run
          }
        }
        suite.notes = Object.entries(perDecision).map(([name, n]) => `${name}: ${n.toFixed(2)} script calls (round trips) per decision`)
        const mine = best['sluice RateLimiter.open (redis store)']
        const theirs = best[BASELINE]
        const toMs = (ns) => (ns / 1e6).toFixed(2)
        suite.notes.push(
          `(16.1) p99 of a decision: sluice ${toMs(mine.p99Ns)} ms, rate-limiter-flexible ${toMs(theirs.p99Ns)} ms (target: sluice's <= theirs): ${mine.p99Ns <= theirs.p99Ns ? 'met' : '**not met**'}`,
        )
        return Object.entries(best).map(([name, run]) => ({ name, opsPerSecond: run.opsPerSecond, p50Ns: run.p50Ns, p99Ns: run.p99Ns }))
      } finally {
        await client.quit().catch(() => client.disconnect())
        await server.stop()
      }
    },
  }
  const semaphore = {
    name: `redis: a semaphore of 1 shared by ${PROCESSES} processes, each acquiring and releasing in a loop (acquisitions/s)`,
    baseline: 'redis-semaphore Semaphore',
    async run() {
      const server = await startRedis()
      try {
        const rows = []
        const longest = {}
        const work = {}
        for (const [name, contender] of [
          ['redis-semaphore Semaphore', 'redis-semaphore'],
          ['sluice Semaphore.open (redis store, FIFO)', 'sluice'],
        ]) {
          const run = await handOffs(server.port, contender, quick ? 500 : 3000, quick ? 100 : 2000)
          longest[name] = run.longestMs
          work[name] = `${run.commands.toFixed(1)} commands and ${run.serverUs.toFixed(0)} µs of server CPU per acquisition`
          rows.push({ name, opsPerSecond: run.opsPerSecond, p50Ns: run.p50Ns, p99Ns: run.p99Ns })
        }
        semaphore.notes = [
          `Each process loops ${quick ? 100 : 2000} ms unmeasured first (the JIT warms up), then ${quick ? 500 : 3000} ms measured.`,
          ...Object.entries(longest).map(([name, ms]) => `${name}: longest wait ${ms.toFixed(1)} ms`),
          ...Object.entries(work).map(([name, text]) => `${name}: ${text} (INFO commandstats, INFO cpu)`),
          `(16.2) wait p99 (target <= 2 ms): sluice ${(rows[1].p99Ns / 1e6).toFixed(2)} ms`,
        ]
        return rows
      } finally {
        await server.stop()
      }
    },
  }
  return [suite, semaphore]
}
