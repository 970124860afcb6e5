// CircuitBreaker.open across real processes: one breaker for every process
// of the machine, its words in a shared-memory segment, moved by the same
// state machine as between threads. Children are
// test/fixtures/breaker-process-child.mjs (driven on stdin) and
// breaker-process-hammer.mjs (the atomicity check).
import { spawn, type ChildProcess } from 'node:child_process'
import { closeSync, openSync, writeSync } from 'node:fs'
import { join } from 'node:path'
import { createInterface } from 'node:readline'
import { setTimeout as sleep } from 'node:timers/promises'
import {
  BrokenCircuitError,
  CircuitBreaker,
  MismatchError,
  type CircuitBreakerHandle,
  type CircuitBreakerOptions,
  type NamedCircuitBreakerHandle,
  type OpenCircuitBreakerOptions,
} from 'sluice'
import { afterAll, afterEach, describe, expect, expectTypeOf, it } from 'vitest'
import { breakerConfig } from '../packages/node/dist/circuit-breaker-options.js'
import { openWords } from '../packages/node/dist/circuit-breaker-named.js'
import { NativeSharedWords } from '../packages/node/dist/native.js'
import { fixture } from './helpers.js'
import { segmentDir } from './named-support.js'

const { dir, remove } = segmentDir()
const running = new Set<ChildProcess>()
afterEach(() => {
  for (const child of running) child.kill('SIGKILL')
  running.clear()
})
afterAll(remove)

interface Driven {
  process: ChildProcess
  /** Sends `command` and resolves with the child's next line. */
  ask(command: string): Promise<string>
  /** Sends `command` without waiting for an answer. */
  send(command: string): void
  exited: Promise<number | string>
}

/** Starts a breaker child on `name` with `options`; resolves once it printed its first line. */
async function child(name: string, options: CircuitBreakerOptions): Promise<{ child: Driven; first: string }> {
  const proc = spawn(process.execPath, [fixture('breaker-process-child.mjs').pathname, dir, name, JSON.stringify(options)], {
    stdio: ['pipe', 'pipe', 'pipe'],
  })
  running.add(proc)
  let stderr = ''
  proc.stderr!.on('data', (chunk: Buffer) => (stderr += chunk.toString()))
  const exited = new Promise<number | string>((resolve) => proc.on('exit', (code, signal) => resolve(code ?? signal ?? -1)))
  const lines: string[] = []
  const takers: Array<(line: string) => void> = []
  createInterface({ input: proc.stdout! }).on('line', (line) => {
    const take = takers.shift()
    if (take !== undefined) take(line)
    else lines.push(line)
  })
  const next = (): Promise<string> =>
    new Promise((resolve, reject) => {
      const line = lines.shift()
      if (line !== undefined) return resolve(line)
      takers.push(resolve)
      void exited.then((code) => reject(new Error(`child exited (${code}): ${stderr}`)))
    })
  const send = (command: string): void => void proc.stdin!.write(`${command}\n`)
  const driven: Driven = {
    process: proc,
    exited,
    send,
    ask: (command) => {
      send(command)
      return next()
    },
  }
  return { child: driven, first: await next() }
}

async function opened(name: string, options: CircuitBreakerOptions): Promise<Driven> {
  const { child: driven, first } = await child(name, options)
  expect(first).toBe('opened')
  return driven
}

const fail = (): Promise<never> => Promise.reject(new Error('down'))

describe('CircuitBreaker.open across processes', () => {
  it('failures in one process open it for the others; exactly halfOpenTrials trials are admitted across 3 racing processes; success closes it for all', async () => {
    const options = { consecutiveFailures: 5, openDuration: 300, halfOpenTrials: 3, trialTimeout: 10_000 }
    // Held open here: a segment that every process left starts clean.
    const here = CircuitBreaker.open('trio', { ...options, dir })
    const [a, b, c] = await Promise.all([opened('trio', options), opened('trio', options), opened('trio', options)])
    expect(await a!.ask('fail 5')).toBe('failed 0')
    expect(here.state).toBe('open')
    expect(await b!.ask('probe')).toBe('refused BrokenCircuitError')
    expect(await c!.ask('probe')).toBe('refused BrokenCircuitError')
    await expect(here.run(() => 1)).rejects.toBeInstanceOf(BrokenCircuitError)

    await sleep(350)
    const raced = await Promise.all([a!, b!, c!].map((p) => p.ask('race 150')))
    const admitted = raced.map((line) => Number(line.split(' ')[1]))
    const refused = raced.map((line) => Number(line.split(' ')[2]))
    expect(admitted.reduce((x, y) => x + y)).toBe(3)
    expect(refused.reduce((x, y) => x + y)).toBeGreaterThan(30)
    expect(here.state).toBe('halfOpen')

    expect(await Promise.all([a!, b!, c!].map((p) => p.ask('release')))).toEqual(['released', 'released', 'released'])
    expect(here.state).toBe('closed')
    expect(await c!.ask('probe')).toBe('ran')
    // Each transition happened once, in the process that performed it.
    const states = await Promise.all([a!, b!, c!].map((p) => p.ask('state')))
    const counts = states.map((line) => line.split(' ').slice(2).map(Number))
    expect(states.every((line) => line.startsWith('state closed '))).toBe(true)
    expect(counts.reduce((sum, [open, half, close]) => [sum[0]! + open!, sum[1]! + half!, sum[2]! + close!], [0, 0, 0])).toEqual([1, 1, 1])
    expect(counts[0]![0]).toBe(1) // a's failures opened it
  })

  it('a process SIGKILLed in the middle of calls, or holding the only trial, does not wedge the breaker', async () => {
    const options = { consecutiveFailures: 3, openDuration: 50, halfOpenTrials: 1, trialTimeout: 500 }
    const here = CircuitBreaker.open('killed', { ...options, dir })
    const survivor = await opened('killed', options)
    for (let round = 0; round < 3; round++) {
      const victim = await opened('killed', options)
      victim.send('storm')
      await sleep(40 + round * 30)
      victim.process.kill('SIGKILL')
      await victim.exited
      expect(await survivor.ask('until-closed 3000')).toBe('closed')
    }
    // The only trial slot taken by a process that then dies: the trial times
    // out, the next refused call reopens, and a later trial closes.
    await here.run(fail).catch(() => {})
    await here.run(fail).catch(() => {})
    await here.run(fail).catch(() => {})
    expect(here.state).toBe('open')
    const holder = await opened('killed', options)
    await sleep(60)
    expect(await holder.ask('race 20')).toMatch(/^raced 1 /)
    holder.process.kill('SIGKILL')
    await holder.exited
    expect(await survivor.ask('probe')).toBe('refused BrokenCircuitError')
    expect(await survivor.ask('until-closed 3000')).toBe('closed')
    expect(here.state).toBe('closed')
  })

  it('Atomics on the segment lose no update between processes (and the same loop with plain reads and writes does: the check can see it)', async () => {
    const run = async (mode: 'atomic' | 'plain'): Promise<{ expected: number; added: number; exchanged: bigint }> => {
      const name = `hammer-${mode}`
      const native = NativeSharedWords.open(name, 16, [0, 0, 0, 0, 0, 0, 0], dir)
      const words = new Int32Array(native.buffer())
      const wide = new BigInt64Array(words.buffer)
      const hammers = [1, 2, 3].map(() => {
        const proc = spawn(process.execPath, [fixture('breaker-process-hammer.mjs').pathname, dir, name, '300', mode], {
          stdio: ['ignore', 'pipe', 'inherit'],
        })
        running.add(proc)
        const lines = createInterface({ input: proc.stdout! })[Symbol.asyncIterator]()
        return { lines, exited: new Promise((resolve) => proc.on('exit', resolve)) }
      })
      for (const { lines } of hammers) expect((await lines.next()).value).toBe('ready')
      Atomics.store(words, 0, 1)
      let expected = 0
      for (const { lines } of hammers) expected += Number(String((await lines.next()).value).split(' ')[1])
      await Promise.all(hammers.map(({ exited }) => exited))
      const result = { expected, added: Atomics.load(words, 1), exchanged: Atomics.load(wide, 1) }
      NativeSharedWords.unlink(name, dir)
      return result
    }
    const atomic = await run('atomic')
    expect(atomic.expected).toBeGreaterThan(100_000)
    expect(atomic.added).toBe(atomic.expected)
    expect(atomic.exchanged).toBe(BigInt(atomic.expected))
    const plain = await run('plain')
    expect(plain.added).toBeLessThan(plain.expected)
    expect(plain.exchanged).toBeLessThan(BigInt(plain.expected))
  })

  it('other shared options are refused naming both values, in this thread and in another process', async () => {
    const here = CircuitBreaker.open('strict', { consecutiveFailures: 3, openDuration: 500, dir })
    expect(CircuitBreaker.open('strict', { consecutiveFailures: 3, openDuration: 500, dir })).toBe(here)
    expect(() => CircuitBreaker.open('strict', { consecutiveFailures: 4, openDuration: 500, dir })).toThrow(
      /options\.consecutiveFailures is 4 here, but 'strict' exists with consecutiveFailures 3/,
    )
    expect(() => CircuitBreaker.open('strict', { consecutiveFailures: 3, dir })).toThrow(MismatchError)
    expect(() => CircuitBreaker.open('strict', { consecutiveFailures: 3, openDuration: 500, isFailure: () => true, dir })).toThrow(
      /options\.isFailure differs/,
    )
    const cases: Array<[CircuitBreakerOptions, RegExp]> = [
      [{ consecutiveFailures: 4, openDuration: 500 }, /options\.consecutiveFailures is 4 here, but 'strict' exists with consecutiveFailures 3/],
      [{ consecutiveFailures: 3, openDuration: 250.5 }, /options\.openDuration is 250\.5 here, but 'strict' exists with openDuration 500/],
      [{ failureRate: 0.5, openDuration: 500 }, /options\.failureRate is 0\.5 here, but 'strict' exists with consecutiveFailures 3/],
      [{ failureRate: 0.5, buckets: 20, openDuration: 500 }, /options\.buckets is 20 here, but 'strict' exists with buckets 10/],
      [{ consecutiveFailures: 3, openDuration: 500, halfOpenTrials: 2 }, /options\.halfOpenTrials is 2 here, but 'strict' exists with halfOpenTrials 1/],
    ]
    const answers = await Promise.all(cases.map(([options]) => child('strict', options).then(({ first }) => first)))
    answers.forEach((answer, i) => {
      expect(answer).toMatch(/^error MismatchError CircuitBreaker\.open\('strict'\)/)
      expect(answer).toMatch(cases[i]![1])
    })
    const rate = CircuitBreaker.open('strict-rate', { failureRate: 0.25, window: 2000, minimumCalls: 4, dir })
    const { first } = await child('strict-rate', { failureRate: 0.25, window: 3000, minimumCalls: 4 })
    expect(first).toMatch(/options\.window is 3000 here, but 'strict-rate' exists with window 2000/)
    expect(rate.state).toBe('closed')
  })

  it('bad names and options are refused naming the field, before touching a segment', () => {
    expect(() => CircuitBreaker.open(42 as unknown as string)).toThrow(TypeError)
    expect(() => CircuitBreaker.open(42 as unknown as string)).toThrow(/^name must be a string, got 42/)
    for (const bad of ['', 'a/b', '.hidden', 'x'.repeat(65)]) {
      expect(() => CircuitBreaker.open(bad, { dir })).toThrow(RangeError)
      expect(() => CircuitBreaker.open(bad, { dir })).toThrow(/^name must be 1 to 64 characters/)
    }
    expect(() => CircuitBreaker.open('opts', { dir, openDuration: -1 })).toThrow(/^options\.openDuration must be between 0/)
    expect(() => CircuitBreaker.open('opts', { dir: 7 as unknown as string })).toThrow(/^options\.dir must be a string/)
    expect(() => CircuitBreaker.open('opts', { dir, isFailure: 1 as unknown as () => boolean })).toThrow(/^options\.isFailure must be a function/)
    expect(() => CircuitBreaker.unlink('a/b', { dir })).toThrow(/^name must be 1 to 64/)
  })

  it('unlink frees the name: breakers already open keep their state, the next open starts closed', async () => {
    const options = { consecutiveFailures: 1, openDuration: 60_000 }
    const old = CircuitBreaker.open('gone', { ...options, dir })
    await old.run(fail).catch(() => {})
    expect(old.state).toBe('open')
    expect(CircuitBreaker.unlink('gone', { dir })).toBe(true)
    expect(CircuitBreaker.unlink('gone', { dir })).toBe(false)
    expect(old.state).toBe('open')
    const fresh = CircuitBreaker.open('gone', { ...options, dir })
    expect(fresh).not.toBe(old)
    expect(fresh.state).toBe('closed')
    expect(await fresh.run(() => 'ok')).toBe('ok')
    expect(CircuitBreaker.unlink('gone', { dir })).toBe(true)
  })

  it('types: open takes the options plus dir and returns a CircuitBreaker; a named handle is a CircuitBreakerHandle', () => {
    expectTypeOf(CircuitBreaker.open).parameter(1).toEqualTypeOf<OpenCircuitBreakerOptions | undefined>()
    expectTypeOf(CircuitBreaker.open).returns.toEqualTypeOf<CircuitBreaker>()
    expectTypeOf(CircuitBreaker.unlink).returns.toEqualTypeOf<boolean>()
    expectTypeOf<NamedCircuitBreakerHandle>().toMatchTypeOf<CircuitBreakerHandle>()
    expectTypeOf<OpenCircuitBreakerOptions['dir']>().toEqualTypeOf<string | undefined>()
  })

  it("a named breaker's handle opens the same breaker by name in a worker thread", async () => {
    const { Worker } = await import('node:worker_threads')
    const breaker = CircuitBreaker.open('by-handle', { consecutiveFailures: 2, openDuration: 60_000, dir })
    expect(breaker.handle).toEqual({
      kind: 'sluice:NamedCircuitBreaker',
      name: 'by-handle',
      dir,
      options: expect.objectContaining({ consecutiveFailures: 2, openDuration: 60_000 }),
    })
    const worker = new Worker(
      `const { CircuitBreaker } = require('sluice'); const { workerData, parentPort } = require('node:worker_threads');
       const b = CircuitBreaker.from(workerData);
       Promise.all([b.run(() => Promise.reject(new Error('x'))).catch(() => {}), b.run(() => Promise.reject(new Error('x'))).catch(() => {})])
         .then(() => parentPort.postMessage(b.state))`,
      { eval: true, workerData: breaker.handle },
    )
    const [state] = await new Promise<unknown[]>((resolve) => worker.once('message', (m) => resolve([m])))
    await new Promise((resolve) => worker.once('exit', resolve))
    expect(state).toBe('open')
    expect(breaker.state).toBe('open')
  })
})

describe('damaged words', () => {
  const options = { consecutiveFailures: 3, openDuration: 20, maxOpenDuration: 80, trialTimeout: 40, halfOpenTrials: 2 }
  const rateOptions = { failureRate: 0.5, window: 200, buckets: 4, minimumCalls: 4, openDuration: 20, trialTimeout: 40 }

  /** The breaker's own words, through a second mapping view (white-box). */
  const wordsOf = (name: string, shared: CircuitBreakerOptions): Uint8Array =>
    new Uint8Array(openWords('test', name, dir, breakerConfig(shared, 'options')).buffer)

  function randomBytes(seed: number, into: Uint8Array): void {
    let a = seed >>> 0
    for (let i = 0; i < into.length; i++) {
      a = (Math.imul(a ^ (a >>> 15), 0x2c1b3c6d) + 0x6d2b79f5) >>> 0
      into[i] = a & 0xff
    }
  }

  it('random bytes in the words never throw anything but BrokenCircuitError and never wedge it (200 seeds, this thread)', async () => {
    for (const [name, shared] of [['dmg-here', options], ['dmg-here-rate', rateOptions]] as const) {
      const breaker = CircuitBreaker.open(name, { ...shared, dir })
      const bytes = wordsOf(name, shared)
      for (let seed = 1; seed <= 100; seed++) {
        randomBytes(seed * 7919, bytes)
        expect(['closed', 'open', 'halfOpen'], `seed ${seed}`).toContain(breaker.state)
        const until = performance.now() + 1500
        let ran = false
        while (!ran && performance.now() < until) {
          try {
            ran = await breaker.run(() => true)
          } catch (error) {
            expect(error, `seed ${seed}`).toBeInstanceOf(BrokenCircuitError)
            await sleep(2)
          }
        }
        expect(ran, `seed ${seed}: still refusing in state ${breaker.state}`).toBe(true)
      }
    }
  })

  it('state bits 3 read as closed and are reset; a deadline decades away counts as passed', async () => {
    const breaker = CircuitBreaker.open('dmg-exact', { ...options, dir })
    const status = new BigInt64Array(wordsOf('dmg-exact', options).buffer, 0, 1)
    Atomics.store(status, 0, (5n << 2n) | 3n)
    expect(breaker.state).toBe('closed')
    expect(await breaker.run(() => 'ran')).toBe('ran')
    expect(Number(Atomics.load(status, 0) & 3n)).toBe(0)
    // OPEN until 2^40 ms (35 years) after the origin: no transition sets that.
    Atomics.store(status, 0, ((1n << 40n) << 22n) | (9n << 2n) | 1n)
    expect(breaker.state).toBe('open')
    expect(await breaker.run(() => 'trial')).toBe('trial')
    expect(breaker.state).toBe('halfOpen')
  })

  it('a damaged origin (beside the words, not theirs to repair) is refused at open with a SegmentError saying so', async () => {
    const shared = { consecutiveFailures: 2 }
    // Held open here, so the child finds the damaged segment rather than starting clean.
    CircuitBreaker.open('dmg-origin', { ...shared, dir })
    // White-box (crates/shm header.rs Geometry, words.rs): the header page,
    // the mutex and state blocks (64 B each), 256 process slots and 1 owner
    // slot of 64 B, then the region, whose first word is the origin.
    const fd = openSync(join(dir, 'dmg-origin'), 'r+')
    writeSync(fd, Buffer.alloc(8, 0xff), 0, 8, 4096 + 64 + 64 + 256 * 64 + 64)
    closeSync(fd)
    const { first } = await child('dmg-origin', shared)
    expect(first).toMatch(/^error SegmentError CircuitBreaker\.open\('dmg-origin'\): segment damaged: origin \d+ ns is not a past CLOCK_MONOTONIC reading/)
  })

  it('random bytes written between rounds: 2 processes churning through the breaker see only their own errors or BrokenCircuitError, and get it closed', async () => {
    for (let round = 0; round < 6; round++) {
      const name = `dmg-${round}`
      const shared = round % 2 === 0 ? options : rateOptions
      // Kept open here between the damage and the children's opens.
      CircuitBreaker.open(name, { ...shared, dir })
      randomBytes(round * 104_729 + 17, wordsOf(name, shared))
      const pair = await Promise.all([opened(name, shared), opened(name, shared)])
      const churned = await Promise.all(pair.map((p, i) => p.ask(`churn 200 ${round * 2 + i}`)))
      expect(churned, `round ${round}`).toEqual(['churned', 'churned'])
      randomBytes(round * 7 + 3, wordsOf(name, shared))
      const closed = await Promise.all(pair.map((p) => p.ask('until-closed 3000')))
      expect(closed, `round ${round}`).toEqual(['closed', 'closed'])
      for (const p of pair) p.process.kill('SIGKILL')
    }
  })
})
