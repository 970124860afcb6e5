import { execFile } from 'node:child_process'
import { promisify } from 'node:util'
import { describe, expect, it } from 'vitest'

const run = promisify(execFile)

describe('process lifetime', () => {
  it('a process whose waits have all settled exits on its own', async () => {
    const script = `
      const { Semaphore } = require('sluice')
      const sem = new Semaphore(1)
      const held = sem.tryAcquire()
      const waits = [sem.acquire(), sem.acquire({ timeout: 5 }).catch(() => 'timed out')]
      setTimeout(() => held.release(), 20)
      Promise.all(waits).then(([permit, second]) => { permit.release(); console.log('settled', second) })
    `
    const started = Date.now()
    const { stdout } = await run(process.execPath, ['-e', script], { timeout: 10_000 })
    expect(stdout.trim()).toBe('settled timed out')
    expect(Date.now() - started).toBeLessThan(5_000)
  })
})
