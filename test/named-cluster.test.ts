// Named semaphores under load across real processes: node:cluster workers,
// and a storm of processes killed with SIGKILL at random moments.
import { Semaphore } from 'sluice'
import { afterAll, afterEach, describe, expect, it } from 'vitest'
import { fixture } from './helpers.js'
import { child, killChildren, segmentDir, spawnNode, type Fairness } from './named-support.js'

const { dir, remove } = segmentDir()
afterEach(killChildren)
afterAll(remove)

// Every setting of `fairness`: the eventual modes let a releaser take its
// permit back while others wait, which must not change either bound.
describe.each<Fairness>(['fifo', 'eventual', 'eventual-head'])('named semaphore across processes (fairness %s)', (fairness) => {
  it('node:cluster, 4 workers x 1,000 cycles on permits 3: never more than 3 holders, every permit back', async () => {
    const args = [dir, `cluster-${fairness}`, '3', '4', '1000', fairness]
    const primary = spawnNode([fixture('named-cluster.mjs').pathname, ...args])
    const report = JSON.parse(`{${await primary.line('{')}`) as {
      most: number
      cycles: number
      failed: number
      available: number
    }
    expect(await primary.exited).toBe(0)
    expect(report.failed).toBe(0)
    expect(report.cycles).toBe(4_000)
    expect(report.most).toBeLessThanOrEqual(3)
    // Holders did overlap: the limit was exercised, not trivially met.
    expect(report.most).toBeGreaterThan(1)
    expect(report.available).toBe(3)
  }, 120_000)

  it('a kill storm: 50 processes killed with SIGKILL while holding, waiting or cancelling; every permit comes back', async () => {
    const permits = 3
    const name = `storm-${fairness}`
    const semaphore = Semaphore.open(name, { permits, fairness, dir })
    const rounds = 10
    const perRound = 5
    for (let round = 0; round < rounds; round++) {
      const storm = Array.from({ length: perRound }, (_, i) => child('storm', dir, name, permits, round * 100 + i + 1, fairness))
      await Promise.all(storm.map((c) => c.line('storming')))
      // Kill each at its own random moment while the storm runs.
      await Promise.all(
        storm.map(
          (c) =>
            new Promise<void>((resolve) =>
              setTimeout(
                () => {
                  c.process.kill('SIGKILL')
                  resolve()
                },
                5 + Math.random() * 60,
              ),
            ),
        ),
      )
      const codes = await Promise.all(storm.map((c) => c.exited))
      // Killed, not crashed: a child that threw would exit 1 first.
      expect(codes).toEqual(Array(perRound).fill('SIGKILL'))
    }
    // Every permit back and no wait left, within the sweep's bound (the
    // sweep runs in this process's safety poll while it waits).
    const started = performance.now()
    const all = await semaphore.acquire({ weight: permits, timeout: 5_000 })
    const recovered = performance.now() - started
    all.release()
    expect(semaphore.available).toBe(permits)
    expect(semaphore.waiting).toBe(0)
    expect(recovered).toBeLessThan(5_000)
  }, 120_000)
})
