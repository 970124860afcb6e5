// A Rust panic surfaces as a JS Error, and the addon keeps working after it.
// Builds the binding with the test-only `test-panic` cargo feature (a debug
// build, into its own target directory) and loads it directly.
import { execFile } from 'node:child_process'
import { copyFileSync, mkdtempSync } from 'node:fs'
import { createRequire } from 'node:module'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { promisify } from 'node:util'
import { beforeAll, describe, expect, it } from 'vitest'

const run = promisify(execFile)
const root = fileURLToPath(new URL('..', import.meta.url))

interface PanicAddon {
  panicForTest(message: string): void
  rawPanicForTest(): void
  NativeSemaphore: new (permits: number) => { fastHandle(): object; available: number }
  semTryAcquire(handle: object, n: number): number
  semRelease(handle: object, n: number): unknown
}

describe.runIf(process.platform === 'linux')('a Rust panic', () => {
  let addon: PanicAddon

  beforeAll(async () => {
    const targetDir = join(root, 'target', 'test-panic')
    await run('cargo', ['build', '-p', 'sluice-node', '--features', 'test-panic', '--target-dir', targetDir], { cwd: root })
    const copy = join(mkdtempSync(join(tmpdir(), 'sluice-panic-')), 'sluice_panic.node')
    copyFileSync(join(targetDir, 'debug', 'libsluice_node.so'), copy)
    addon = createRequire(import.meta.url)(copy) as PanicAddon
  }, 300_000)

  it('in a napi-rs function becomes a JS Error', () => {
    expect(() => addon.panicForTest('boom')).toThrow(/boom/)
  })

  it('in a raw hot-path callback becomes a JS Error with a code', () => {
    let error: unknown
    try {
      addon.rawPanicForTest()
    } catch (e) {
      error = e
    }
    expect(error).toBeInstanceOf(Error)
    expect(error).toMatchObject({ code: 'ERR_SLUICE_PANIC', message: expect.stringContaining('raw panic for test') })
  })

  it('leaves the addon working', () => {
    for (let i = 0; i < 3; i++) expect(() => addon.rawPanicForTest()).toThrow()
    const sem = new addon.NativeSemaphore(2)
    const handle = sem.fastHandle()
    expect(addon.semTryAcquire(handle, 2)).toBe(1)
    expect(sem.available).toBe(0)
    addon.semRelease(handle, 2)
    expect(sem.available).toBe(2)
  })
})
