import { execFile } from 'node:child_process'
import { fileURLToPath } from 'node:url'
import { promisify } from 'node:util'
import { describe, expect, it } from 'vitest'

const run = promisify(execFile)

interface Sample {
  heap: number
  heapTotal: number
  rss: number
}

describe('memory', () => {
  it('rounds of a million semaphore cycles and a million channel messages leave heap and RSS flat', async () => {
    // After a warm-up round, three more rounds, measured after each (MB). The
    // young generation is pinned small: otherwise V8 grows it under this
    // allocation rate up to 32 MB, which is not a leak but would hide one.
    // Node 24's RSS also steps up once (~30 MB, allocator arenas) and then
    // stays flat, so growth is bounded per round after the first:
    //   JS heap in use: +1 MB over all rounds;
    //   RSS: +4 MB over the last two rounds (4 million operations: a leak of
    //   one byte per operation would show), +64 MB over all.
    const script = fileURLToPath(new URL('./fixtures/leak-check.mjs', import.meta.url))
    const { stdout } = await run(process.execPath, ['--expose-gc', '--max-semi-space-size=2', script, '3'], {
      timeout: 170_000,
    })
    const { samples, available, length } = JSON.parse(stdout) as { samples: Sample[]; available: number; length: number }
    expect(available).toBe(4)
    expect(length).toBe(0)
    const [first, second, , last] = samples as [Sample, Sample, Sample, Sample]
    expect(last.heap - first.heap).toBeLessThan(1)
    expect(last.rss - second.rss).toBeLessThan(4)
    expect(last.rss - first.rss).toBeLessThan(64)
  }, 180_000)
})
