// The ES module entry point, as a user's `import` reaches it.
import assert from 'node:assert/strict'
import { createServer } from 'node:http'
import { RateLimiter, Semaphore, TimeoutError } from 'sluice'
import { rateLimit } from 'sluice/http'
import { rateLimit as fastifyRateLimit } from 'sluice/fastify'
import { Mutex, E_CANCELED } from 'sluice/compat/async-mutex'
import pLimit from 'sluice/compat/p-limit'
import * as cjs from 'sluice/package.json' with { type: 'json' }

const sem = new Semaphore(1)
const permit = await sem.acquire()
await assert.rejects(sem.acquire({ timeout: 10 }), TimeoutError)
permit.release()
assert.equal(sem.available, 1)
assert.equal(cjs.default.name, 'sluice')

// The drop-in adapters' subpath exports.
const mutex = new Mutex()
const release = await mutex.acquire()
const waiting = mutex.acquire()
mutex.cancel()
await assert.rejects(waiting, (error) => error === E_CANCELED)
release()
assert.deepEqual(await Promise.all([1, 2, 3].map((n) => pLimit(2)(() => n * 2))), [2, 4, 6])

// The keyed limiter and its middleware subpaths: a real request over loopback.
const limiter = new RateLimiter({ limit: 1, windowMs: 60_000 })
const limit = rateLimit({ limiter, key: () => 'everyone' })
const server = createServer(async (req, res) => {
  if (await limit(req, res)) res.end('ok')
})
await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve))
const url = `http://127.0.0.1:${server.address().port}/`
assert.deepEqual([(await fetch(url)).status, (await fetch(url)).status], [200, 429])
server.close()
// A fastify plugin (fastify itself is the user's to install).
assert.equal(typeof fastifyRateLimit, 'function')
assert.equal(fastifyRateLimit[Symbol.for('skip-override')], true)
console.log(`import ok on ${process.version}`)
