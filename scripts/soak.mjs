#!/usr/bin/env node
// Soak: random operations on every primitive from 4 workers and the main
// thread for --minutes N, with invariants checked every second and at the
// end, and RSS / heap sampled every second. Exits 1 on a broken invariant or
// on memory growth beyond the stated bounds.
//
//   npm run soak -- --minutes 10
import { once } from 'node:events'
import { parseArgs } from 'node:util'
import { Worker } from 'node:worker_threads'
import { Channel, Mutex, Semaphore, TokenBucket } from 'sluice'
import { CAPACITY, CELLS, F, most, mostInMutex, operate, row, total } from './soak-ops.mjs'

const { values } = parseArgs({ options: { minutes: { type: 'string', default: '1' } } })
const minutes = Number(values.minutes)
if (!(minutes > 0)) throw new RangeError(`--minutes must be a positive number, got ${values.minutes}`)
const WORKERS = 4
const RATE = 2_000
const BOUND_RSS_MB = 64 // growth of RSS after the warm-up
const BOUND_HEAP_MB = 16 // growth of the main thread's JS heap after the warm-up

const sem = new Semaphore(CAPACITY)
const mutex = new Mutex()
const bucket = new TokenBucket({ capacity: 50, refillPerSecond: RATE })
const ch = new Channel({ capacity: 64, codec: 'number' })
const handles = { sem: sem.handle, mutex: mutex.handle, bucket: bucket.handle, ch: ch.handle }
const counters = new Float64Array(new SharedArrayBuffer(CELLS * 8))
const started = Date.now()
const workers = Array.from(
  { length: WORKERS },
  (_, index) =>
    new Worker(new URL('./soak-worker.mjs', import.meta.url), {
      workerData: { handles, counters: counters.buffer, index },
      // Pinned small, as for the main thread (npm run soak passes
      // --max-semi-space-size): V8 otherwise grows each isolate's young
      // generation under this allocation rate, which is not a leak.
      resourceLimits: { maxYoungGenerationSizeMb: 6 },
    }),
)
const exits = workers.map((worker) => once(worker, 'exit'))
for (const worker of workers) worker.on('error', (error) => fail(`worker error: ${error.stack ?? error}`))

const failures = []
function fail(message) {
  failures.push(message)
  console.error(`INVARIANT BROKEN: ${message}`)
}

const mb = (bytes) => Math.round((bytes / 1048576) * 10) / 10
const samples = []
let baseline
const sampler = setInterval(() => {
  const { rss, heapUsed } = process.memoryUsage()
  const elapsed = (Date.now() - started) / 1000
  samples.push({ t: Math.round(elapsed), rss: mb(rss), heap: mb(heapUsed) })
  if (baseline === undefined && elapsed >= Math.min(30, minutes * 15)) baseline = { rss: mb(rss), heap: mb(heapUsed) }
  if (most(counters, F.MOST_HELD) > CAPACITY) fail(`${most(counters, F.MOST_HELD)} permits held at once (capacity ${CAPACITY})`)
  if (mostInMutex(counters) > 1) fail(`${mostInMutex(counters)} threads inside the mutex at once`)
  const limit = 50 + RATE * elapsed * 1.02 + 10
  const tokens = total(counters, F.TOKENS)
  if (tokens > limit) fail(`bucket granted ${tokens} tokens, at most ${Math.round(limit)} possible`)
  if (samples.length % 60 === 0) {
    console.log(`${Math.round(elapsed)} s: ${total(counters, F.OPS)} ops, rss ${mb(rss)} MB, heap ${mb(heapUsed)} MB`)
  }
}, 1_000)

const deadline = started + minutes * 60_000
while (Date.now() < deadline && failures.length === 0) {
  await operate({ sem, mutex, bucket, ch }, counters, WORKERS)
  if (Math.random() < 0.1) await new Promise((resolve) => setImmediate(resolve))
}
for (const worker of workers) worker.postMessage('stop')
// A worker blocked in a send or recv needs the other side to move: drain and
// feed the channel until every worker has stopped.
let stopped = false
void Promise.all(exits).then(() => (stopped = true))
const mine = row(counters, WORKERS)
const drain = () => {
  for (let value = ch.tryRecv(); value !== undefined; value = ch.tryRecv()) {
    mine[F.RECEIVED]++
    mine[F.RECEIVED_SUM] += value
  }
}
while (!stopped) {
  drain()
  await new Promise((resolve) => setTimeout(resolve, 5))
}
drain()
clearInterval(sampler)

const [sent, received] = [total(counters, F.SENT), total(counters, F.RECEIVED)]
if (sent !== received) fail(`sent ${sent} messages, received ${received}`)
if (total(counters, F.SENT_SUM) !== total(counters, F.RECEIVED_SUM)) fail('the sums of sent and received messages differ')
if (sem.available !== CAPACITY || sem.waiting !== 0) fail(`semaphore left at ${sem.available} free, ${sem.waiting} waiting`)
if (mutex.isLocked) fail('mutex left locked')
const last = samples.at(-1)
if (baseline !== undefined && last !== undefined) {
  const peakRss = Math.max(...samples.filter((s) => s.t >= 30).map((s) => s.rss), last.rss)
  if (peakRss - baseline.rss > BOUND_RSS_MB) fail(`RSS grew ${peakRss - baseline.rss} MB (bound ${BOUND_RSS_MB})`)
  if (last.heap - baseline.heap > BOUND_HEAP_MB) fail(`heap grew ${last.heap - baseline.heap} MB (bound ${BOUND_HEAP_MB})`)
}

const summary = {
  minutes,
  threads: WORKERS + 1,
  operations: total(counters, F.OPS),
  cancelled: total(counters, F.CANCELLED),
  messages: sent,
  tokens: total(counters, F.TOKENS),
  mostPermitsHeld: most(counters, F.MOST_HELD),
  mostInMutex: mostInMutex(counters),
  memory: { baseline, last, peakRss: Math.max(...samples.map((s) => s.rss)) },
  bounds: { rssGrowthMB: BOUND_RSS_MB, heapGrowthMB: BOUND_HEAP_MB },
  failures,
}
console.log(JSON.stringify(summary, null, 2))
process.exit(failures.length === 0 ? 0 : 1)
