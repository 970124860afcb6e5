// The ES module entry point, as a user's `import` reaches it.
import assert from 'node:assert/strict'
import { Semaphore, TimeoutError } from 'sluice'
import * as cjs from 'sluice/package.json' with { type: 'json' }

const sem = new Semaphore(1)
const permit = await sem.acquire()
await assert.rejects(sem.acquire({ timeout: 10 }), TimeoutError)
permit.release()
assert.equal(sem.available, 1)
assert.equal(cjs.default.name, 'sluice')
console.log(`import ok on ${process.version}`)
