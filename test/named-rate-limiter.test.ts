// RateLimiter.open across real processes: the per-key bound
// `capacity + rate × elapsed` holds over every process together, with
// processes killed by SIGKILL mid-take.
import { spawn } from 'node:child_process'
import { MismatchError, RateLimiter, TokenBucket } from 'sluice'
import { afterAll, afterEach, describe, expect, it } from 'vitest'
import { fixture } from './helpers.js'
import { killChildren, segmentDir, spawnNode } from './named-support.js'

const { dir, remove } = segmentDir()
afterEach(killChildren)
afterAll(remove)

const CAPACITY = 10
const RATE = 200

/** Runs a hammering child; resolves with the tokens it reported. */
function hammer(name: string, ms: number, seed: number) {
  const child = spawnNode([fixture('named-limiter-child.mjs').pathname, dir, name, `${CAPACITY}`, `${RATE}`, `${ms}`, `${seed}`])
  let granted = 0
  child.process.stdout!.on('data', (chunk: Buffer) => {
    for (const byte of chunk) if (byte === 0x67 /* g */) granted++
  })
  return { child, granted: () => granted }
}

describe('RateLimiter.open', () => {
  it('the same thread gets the same limiter; other parameters are refused naming both values', () => {
    const limiter = RateLimiter.open('same', { capacity: 5, refillPerSecond: 1, dir })
    expect(RateLimiter.open('same', { capacity: 5, refillPerSecond: 1, dir })).toBe(limiter)
    expect(() => RateLimiter.open('same', { capacity: 6, refillPerSecond: 1, dir })).toThrow(MismatchError)
    expect(() => RateLimiter.open('same', { capacity: 6, refillPerSecond: 1, dir })).toThrow(/capacity is 6 here.*capacity 5/)
    expect(() => RateLimiter.open('sw', { limit: 5, windowMs: 1000, algorithm: 'sliding-window', dir })).toThrow(RangeError)
    expect(() => RateLimiter.open('bad.name', { capacity: 5, refillPerSecond: 1, dir })).toThrow(/^name must be/)
    expect(limiter.tryTake('a', 5).allowed).toBe(true)
    expect(limiter.tryTake('a').allowed).toBe(false)
    expect(limiter.tryTake('b').remaining).toBe(4)
  })

  it('another process sees the tokens this one took', async () => {
    const limiter = RateLimiter.open('seen', { capacity: 3, refillPerSecond: 0.001, dir })
    expect(limiter.tryTake('user', 3).allowed).toBe(true)
    const script = `const { RateLimiter } = require('sluice'); const l = RateLimiter.open('seen', { capacity: 3, refillPerSecond: 0.001, dir: ${JSON.stringify(dir)} }); console.log(JSON.stringify([l.tryTake('user').allowed, l.tryTake('other').allowed]))`
    const child = spawn(process.execPath, ['-e', script], { stdio: ['ignore', 'pipe', 'inherit'] })
    let out = ''
    child.stdout.on('data', (chunk: Buffer) => (out += chunk.toString()))
    await new Promise((resolve) => child.on('exit', resolve))
    expect(JSON.parse(out)).toEqual([false, true])
  })

  it('4 processes on one key never get more than capacity + rate x elapsed, with 20 more killed by SIGKILL mid-take', async () => {
    const name = 'bound'
    // Opened here first and kept open, so the killed processes never leave
    // the limiter without an attached process (which would start it clean).
    const limiter = RateLimiter.open(name, { capacity: CAPACITY, refillPerSecond: RATE, dir })
    const started = performance.now()
    const steady = [1, 2, 3, 4].map((seed) => hammer(name, 1_500, seed))
    const victims: ReturnType<typeof hammer>[] = []
    for (let i = 0; i < 20; i++) {
      const victim = hammer(name, 10_000, 100 + i)
      victims.push(victim)
      await victim.child.line('started')
      await new Promise((resolve) => setTimeout(resolve, 10 + Math.random() * 40))
      victim.child.process.kill('SIGKILL')
    }
    await Promise.all(steady.map(({ child }) => child.exited))
    await Promise.all(victims.map(({ child }) => child.exited))
    const elapsed = (performance.now() - started) / 1000
    const total = [...steady, ...victims].reduce((sum, { granted }) => sum + granted(), 0)
    const bound = CAPACITY + RATE * elapsed
    expect(total).toBeLessThanOrEqual(bound)
    // The limit was exercised: the processes together got most of it.
    expect(total).toBeGreaterThan(0.5 * RATE * 1.5)
    // And the limiter is still consistent for this process.
    expect(limiter.peek('k').remaining).toBeLessThanOrEqual(CAPACITY)
  }, 60_000)
})

describe('TokenBucket.open', () => {
  it('is one bucket for every process: 3 processes taking as fast as they can stay under capacity + rate x elapsed', async () => {
    const options = { capacity: 5, refillPerSecond: 100, dir }
    const bucket = TokenBucket.open('bucket', options)
    expect(TokenBucket.open('bucket', options)).toBe(bucket)
    expect(() => TokenBucket.open('bucket', { ...options, capacity: 6 })).toThrow(MismatchError)
    const script = `
      const { TokenBucket } = require('sluice')
      const bucket = TokenBucket.open('bucket', ${JSON.stringify(options)})
      const until = Date.now() + 1000
      let taken = 0
      const loop = () => {
        for (let i = 0; i < 100; i++) if (bucket.tryTake()) taken++
        if (Date.now() < until) setImmediate(loop)
        else bucket.take(1, { timeout: 200 }).then(() => console.log(taken + 1), () => console.log(taken))
      }
      loop()
    `
    const started = performance.now()
    const counts = await Promise.all(
      [1, 2, 3].map(
        () =>
          new Promise<number>((resolve, reject) => {
            const child = spawn(process.execPath, ['-e', script], { stdio: ['ignore', 'pipe', 'inherit'] })
            let out = ''
            child.stdout.on('data', (chunk: Buffer) => (out += chunk.toString()))
            child.on('exit', (code) => (code === 0 ? resolve(Number(out)) : reject(new Error(`exit ${code}`))))
          }),
      ),
    )
    const elapsed = (performance.now() - started) / 1000
    const total = counts.reduce((a, b) => a + b, 0)
    expect(total).toBeLessThanOrEqual(5 + 100 * elapsed)
    expect(total).toBeGreaterThan(50)
    expect(bucket.tryTake(5)).toBe(false)
  })
})
