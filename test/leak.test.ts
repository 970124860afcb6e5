import { execFile } from 'node:child_process'
import { fileURLToPath } from 'node:url'
import { promisify } from 'node:util'
import { describe, expect, it } from 'vitest'

const run = promisify(execFile)

describe('memory', () => {
  it('a million semaphore cycles and a million channel messages leave heap and RSS flat', async () => {
    // The young generation is pinned small (2 MB semi-spaces): otherwise V8
    // grows it under allocation pressure up to 32 MB, which is not a leak but
    // would hide one. Bounds: JS heap in use +1 MB, RSS +8 MB.
    const script = fileURLToPath(new URL('./fixtures/leak-check.mjs', import.meta.url))
    const { stdout } = await run(process.execPath, ['--expose-gc', '--max-semi-space-size=2', script, '1'], {
      timeout: 110_000,
    })
    const { before, after, available, length } = JSON.parse(stdout)
    expect(available).toBe(4)
    expect(length).toBe(0)
    expect(after.heap - before.heap).toBeLessThan(1)
    expect(after.rss - before.rss).toBeLessThan(8)
  }, 120_000)
})
