// The ES module entry point, as a user's `import` reaches it.
import assert from 'node:assert/strict'
import { Semaphore, TimeoutError } from 'sluice'
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
console.log(`import ok on ${process.version}`)
