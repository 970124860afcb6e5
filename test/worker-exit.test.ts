// Tests that wait for a worker's last message and then for its exit must
// listen for the exit from the start (`evalWorker`): when this thread handles
// the exit first, Node delivers the last messages and emits 'exit' in one
// tick, before the code after `await message` runs. Listening for 'exit' only
// then hung test/semaphore-switch-over.test.ts in most runs on a loaded
// machine. This forces that order: the worker is gone before this thread
// takes its message.
import { once } from 'node:events'
import { describe, expect, it } from 'vitest'
import { evalWorker } from './helpers.js'

describe('waiting for a worker to exit', () => {
  it('sees the exit of a worker that exited before its last message was taken', async () => {
    const gone = new Int32Array(new SharedArrayBuffer(4))
    const { worker, exited } = evalWorker(
      `const { parentPort, workerData } = require('node:worker_threads')
       process.on('exit', () => {
         Atomics.store(workerData.gone, 0, 1)
         Atomics.notify(workerData.gone, 0)
       })
       parentPort.postMessage('done')`,
      { gone },
    )
    // Block this thread (briefly, bounded) until the worker is tearing down,
    // then long enough for its thread to end: its message and its exit are
    // then both pending when this thread's event loop next turns.
    expect(Atomics.wait(gone, 0, 0, 5_000)).not.toBe('timed-out')
    Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, 200)
    const [message] = await once(worker, 'message')
    expect(message).toBe('done')
    let timer: NodeJS.Timeout | undefined
    const missed = new Promise<string>((resolve) => {
      timer = setTimeout(() => resolve('no exit seen within 2 s'), 2_000)
    })
    try {
      expect(await Promise.race([exited, missed])).toBe(0)
    } finally {
      clearTimeout(timer)
    }
  })
})
