import { spawnSync } from 'node:child_process'
import { describe, expect, it } from 'vitest'
import { fixture } from './helpers.js'

describe('a host whose worker threads alone load sluice', () => {
  // The first thread to allocate in the addon was a worker that then ended;
  // with mimalloc v3 (3.x before its fix) the next worker reusing that
  // thread's id crashed the whole process (SIGSEGV) on its first allocation.
  // In a child process, so that a crash fails this test, not the runner.
  it('survives workers that load it, use it and end, one after another, returning or terminated', () => {
    const child = spawnSync(process.execPath, [fixture('workers-only-host.mjs').pathname, '8'], {
      encoding: 'utf8',
      timeout: 60_000,
    })
    expect({ status: child.status, signal: child.signal, stderr: child.stderr }).toEqual({
      status: 0,
      signal: null,
      stderr: '',
    })
    expect(child.stdout.trim()).toBe('done')
  })
})
