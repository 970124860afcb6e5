// Runs inside a folder where sluice was installed from its tarballs, as a user
// would: require it, use a Semaphore in this thread and across a worker.
const assert = require('node:assert/strict')
const { Worker } = require('node:worker_threads')
const { RateLimiter, Semaphore } = require('sluice')
const { rateLimit } = require('sluice/http')
const { rateLimit: fastifyRateLimit } = require('sluice/fastify')

async function main() {
  const sem = new Semaphore(2)
  const permit = sem.tryAcquire(2)
  assert.equal(sem.available, 0)
  const worker = new Worker(
    `const { parentPort, workerData } = require('node:worker_threads')
     const { RateLimiter, Semaphore } = require('sluice')
const { rateLimit } = require('sluice/http')
const { rateLimit: fastifyRateLimit } = require('sluice/fastify')
     Semaphore.from(workerData).acquire().then((p) => { parentPort.postMessage('got'); p.release() })`,
    { eval: true, workerData: sem.handle },
  )
  const got = new Promise((resolve) => worker.once('message', resolve))
  // Listened for now, not after 'got': if this thread handles the worker's
  // exit first, Node emits its last message and 'exit' in one tick, and a
  // listener added after `await got` would never hear it.
  const exited = new Promise((resolve) => worker.once('exit', resolve))
  // The worker queues behind our permits; wait until it has (it may take a
  // while to start on a loaded machine).
  for (const deadline = Date.now() + 20_000; sem.waiting !== 1; ) {
    assert.ok(Date.now() < deadline, 'the worker never queued')
    await new Promise((resolve) => setTimeout(resolve, 5))
  }
  permit.release()
  assert.equal(await got, 'got')
  await exited
  assert.equal(sem.available, 2)
  const limiter = new RateLimiter({ limit: 1, windowMs: 60_000 })
  assert.deepEqual([limiter.tryTake(7).allowed, limiter.tryTake(7).allowed], [true, false])
  assert.equal(typeof rateLimit({ limiter }), 'function')
  assert.equal(typeof fastifyRateLimit, 'function')
  console.log(`require ok on ${process.version}`)
}

main().catch((error) => {
  console.error(error)
  process.exit(1)
})
