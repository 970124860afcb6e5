// Issue 15: one limit for every process of the machine. Four node:cluster
// worker processes contend for a Semaphore.open of 1 and of 16 permits,
// against a coordinator in the primary over process.send (how Node services
// share a limit today, as rate-limiter-flexible's cluster mode does) and, for
// the mutex, proper-lockfile (a lock file polled by its retry loop).
// Acquisitions per second from 'go' until every worker is done, and, with
// one permit, the hand-off latency: from the release in one process to the
// grant seen in the next holder (both stamped with process.hrtime, which is
// CLOCK_MONOTONIC and so comparable across processes), p50 and p99; and
// for every contender the wait (from the acquire call to the grant) p50,
// p99, p99.9 and longest, in the suite's notes. The `sluice (eventual)` rows
// open the semaphore with `fairness: 'eventual'` (issue 13): a releaser
// takes its permit back unless the longest waiter has waited 0.5 ms; the
// `sluice (eventual-head)` rows count that 0.5 ms from the first release
// that finds a waiter first in line (`fairness: 'eventual-head'`).
import cluster from 'node:cluster'
import { once } from 'node:events'
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { RateLimiterClusterMaster } from 'rate-limiter-flexible'
import { coordinate } from './baselines/coordinator.mjs'
import { RateLimiter, Semaphore } from 'sluice'

const contender = new URL('./workers/named-contender.mjs', import.meta.url).pathname
const keyedWorker = new URL('./workers/named-keyed.mjs', import.meta.url).pathname
const KEYS = 10_000
const PROCESSES = 4

let runs = 0

async function contend(mode, permits, cycles, fairness = 'fifo') {
  const dir = mkdtempSync(join(tmpdir(), 'sluice-bench-named-'))
  const name = `bench-${process.pid}-${++runs}`
  const lockPath = join(dir, 'lock')
  writeFileSync(lockPath, '')
  // The primary keeps the semaphore open, as a service's primary would: the
  // workers then attach to a live segment instead of racing to create it.
  const semaphore = mode === 'sluice' ? Semaphore.open(name, { permits, fairness, dir }) : undefined
  cluster.setupPrimary({ exec: contender, silent: false })
  const env = { SLUICE_BENCH_NAMED: JSON.stringify({ mode, name, dir, permits, cycles, lockPath, fairness }) }
  const workers = Array.from({ length: PROCESSES }, () => cluster.fork(env))
  const ready = Promise.all(workers.map((worker) => new Promise((resolve) => worker.on('message', (m) => m === 'ready' && resolve()))))
  await Promise.all(workers.map((worker) => once(worker, 'online')))
  if (mode === 'ipc') coordinate(workers, permits, (worker, message) => worker.send(message))
  const done = workers.map((worker) => new Promise((resolve) => worker.on('message', (m) => m?.done && resolve(m.done))))
  // Each worker says 'ready' once its 'go' listener is on: a 'go' sent
  // before would be dropped, and that worker would wait forever (a fixed
  // delay was not enough on a loaded machine).
  await ready
  const started = performance.now()
  for (const worker of workers) worker.send('go')
  const times = await Promise.all(done)
  const seconds = (performance.now() - started) / 1000
  await Promise.all(workers.map((worker) => (worker.isDead() ? undefined : once(worker, 'exit'))))
  if (semaphore !== undefined) {
    if (semaphore.available !== permits) throw new Error(`sluice: ${semaphore.available} of ${permits} permits back`)
    Semaphore.unlink(name, { dir })
  }
  rmSync(dir, { recursive: true, force: true })
  const row = { opsPerSecond: (PROCESSES * cycles) / seconds, ...waits(times) }
  if (permits === 1) Object.assign(row, handOff(times))
  return row
}

/** Percentile `p` of a sorted array. */
const pick = (sorted, p) => sorted[Math.min(sorted.length - 1, Math.floor(p * sorted.length))]

/** The waits, from each acquire call to its grant, of every process. */
function waits(times) {
  const all = times.flatMap((list) => {
    const out = []
    for (let i = 0; i < list.length; i += 3) out.push(list[i + 1] - list[i])
    return out
  })
  const sorted = Float64Array.from(all).sort()
  return { waitP50Ns: pick(sorted, 0.5), waitP99Ns: pick(sorted, 0.99), waitP999Ns: pick(sorted, 0.999), waitMaxNs: sorted[sorted.length - 1] }
}

/**
 * With one permit the holds never overlap: sorted by acquisition, each
 * hold's start minus the previous hold's end is one hand-off. Only those
 * between two processes count (a process re-taking its own release is not
 * a cross-process hand-off).
 */
function handOff(times) {
  const holds = times.flatMap((list, process) => {
    const out = []
    for (let i = 0; i < list.length; i += 3) out.push([list[i + 1], list[i + 2], process])
    return out
  })
  holds.sort((a, b) => a[0] - b[0])
  const gaps = []
  for (let i = 1; i < holds.length; i++) {
    if (holds[i][2] !== holds[i - 1][2]) gaps.push(holds[i][0] - holds[i - 1][1])
  }
  const sorted = Float64Array.from(gaps).sort()
  return { p50Ns: pick(sorted, 0.5), p99Ns: pick(sorted, 0.99), handOffMaxNs: sorted[sorted.length - 1], handOffs: gaps.length }
}

/** rate-limiter-flexible's cluster mode needs its master in the primary, once per process. */
let master

/**
 * Keyed decisions from PROCESSES cluster workers on one limiter: decisions/s
 * from 'go' until all are done, and the p50/p99 of a decision's latency
 * (sampled: every 16th call).
 */
async function keyed(mode, decisions) {
  const dir = mkdtempSync(join(tmpdir(), 'sluice-bench-keyed-'))
  const name = `keyed-${process.pid}-${++runs}`
  const limiter = mode === 'sluice' ? RateLimiter.open(name, { capacity: 100, refillPerSecond: 10, maxKeys: 2 * KEYS, dir }) : undefined
  if (mode === 'rlf') master ??= new RateLimiterClusterMaster()
  cluster.setupPrimary({ exec: keyedWorker, silent: false })
  const env = { SLUICE_BENCH_KEYED: JSON.stringify({ mode, name, dir, decisions, keys: KEYS }) }
  const workers = Array.from({ length: PROCESSES }, () => cluster.fork(env))
  await Promise.all(workers.map((worker) => once(worker, 'online')))
  const done = workers.map((worker) => new Promise((resolve) => worker.on('message', (m) => m?.done && resolve(m))))
  await new Promise((resolve) => setTimeout(resolve, 300))
  const started = performance.now()
  for (const worker of workers) worker.send('go')
  const reports = await Promise.all(done)
  const seconds = (performance.now() - started) / 1000
  await Promise.all(workers.map((worker) => (worker.isDead() ? undefined : once(worker, 'exit'))))
  if (limiter !== undefined) RateLimiter.unlink(name, { dir })
  rmSync(dir, { recursive: true, force: true })
  const sorted = Float64Array.from(reports.flatMap((r) => r.latencies)).sort()
  const at = (p) => sorted[Math.min(sorted.length - 1, Math.floor(p * sorted.length))]
  const total = reports.reduce((sum, r) => sum + r.done, 0)
  return { opsPerSecond: total / seconds, p50Ns: at(0.5), p99Ns: at(0.99) }
}

export function suites({ quick }) {
  const cycles = quick ? 300 : 5_000
  const suite = (permits) => {
    const contention = {
      name: `${PROCESSES} cluster processes contending for Semaphore.open of ${permits} (acquisitions/s${permits === 1 ? '; latency = hand-off from a release in one process to the grant in another' : ''})`,
      baseline: 'IPC coordinator (process.send)',
      async run() {
        const rows = [
          { name: 'IPC coordinator (process.send)', ...(await contend('ipc', permits, Math.ceil(cycles / 2))) },
          { name: 'sluice', ...(await contend('sluice', permits, cycles)) },
          { name: 'sluice (eventual)', ...(await contend('sluice', permits, cycles, 'eventual')) },
          { name: 'sluice (eventual-head)', ...(await contend('sluice', permits, cycles, 'eventual-head')) },
        ]
        if (permits === 1) {
          // Polling a lock file is the slowest by far: fewer cycles keep the run short.
          rows.splice(1, 0, { name: 'proper-lockfile', ...(await contend('lockfile', 1, Math.ceil(cycles / 25))) })
        }
        // The tails: what a releaser re-taking its permit costs the others.
        const ms = (ns) => (ns / 1e6).toFixed(ns < 1e6 ? 3 : 1)
        contention.notes = [
          'Wait for a permit, from the acquire call to the grant, every acquisition of every process:',
          '',
          ...rows.map(
            (row) =>
              `- ${row.name}: p50 ${ms(row.waitP50Ns)} ms, p99 ${ms(row.waitP99Ns)} ms, p99.9 ${ms(row.waitP999Ns)} ms, longest ${ms(row.waitMaxNs)} ms` +
              (row.handOffs === undefined ? '' : `; ${row.handOffs} cross-process hand-offs, longest ${ms(row.handOffMaxNs)} ms`),
          ),
        ]
        return rows
      },
    }
    return contention
  }
  const decisions = quick ? 2_000 : 1_000_000
  const keyedSuite = {
    name: `${PROCESSES} cluster processes, keyed tryTake over ${KEYS.toLocaleString('en')} keys on one limiter (decisions/s; latency per decision)`,
    baseline: 'rate-limiter-flexible RateLimiterCluster',
    async run() {
      return [
        // Its decisions go through the primary over IPC: far fewer keep the run short.
        { name: 'rate-limiter-flexible RateLimiterCluster', ...(await keyed('rlf', Math.ceil(decisions / 100))) },
        { name: 'sluice', ...(await keyed('sluice', decisions)) },
      ]
    },
  }
  return [keyedSuite, suite(1), suite(16)]
}
