// Circuit breakers: what `run` adds to a trivial async call, closed (every
// call goes through) and open (every call refused), for sluice's breaker
// (state in a SharedArrayBuffer, reachable from every thread), the pure-JS
// baseline (state in plain fields), opossum and cockatiel. All in one run.
import { circuitBreaker, ConsecutiveBreaker, handleAll, SamplingBreaker } from 'cockatiel'
import Opossum from 'opossum'
import { CircuitBreaker } from 'sluice'
import { Bench } from 'tinybench'
import { LocalBreaker } from './baselines/breaker.mjs'

// 100 awaited calls per timed call: one is ~100-1,000 ns, comparable to the
// harness's own overhead, which would otherwise compress the ratios.
const CALLS = 100
const trivial = async () => 1
const failing = async () => {
  throw new Error('down')
}
const noop = () => {}
const LONG = 3_600_000

async function times(run) {
  for (let i = 0; i < CALLS; i++) await run()
}

async function refusals(run) {
  for (let i = 0; i < CALLS; i++) await run().catch(noop)
}

function contenders(fn) {
  return {
    baseline: new LocalBreaker(5, LONG),
    sluice: new CircuitBreaker({ consecutiveFailures: 5, openDuration: LONG }),
    sluiceRate: new CircuitBreaker({ failureRate: 0.5, minimumCalls: 5, openDuration: LONG }),
    // opossum times every call out by default (a timer per call); `timeout:
    // false` is the like-for-like row, the default the one most users run.
    opossum: new Opossum(fn, { timeout: false, resetTimeout: LONG, volumeThreshold: 5 }),
    opossumDefaults: new Opossum(fn, { resetTimeout: LONG, volumeThreshold: 5 }),
    cockatiel: circuitBreaker(handleAll, { halfOpenAfter: LONG, breaker: new ConsecutiveBreaker(5) }),
    cockatielSampling: circuitBreaker(handleAll, {
      halfOpenAfter: LONG,
      breaker: new SamplingBreaker({ threshold: 0.5, duration: 10_000, minimumRps: 1 }),
    }),
  }
}

export function suites({ time }) {
  const closed = contenders(trivial)
  const closedBench = new Bench({ retainSamples: true, name: 'circuit breaker run, closed (trivial async fn)', time })
    .add('direct call, no breaker', () => times(trivial))
    .add('pure-JS baseline', () => times(() => closed.baseline.run(trivial)))
    .add('opossum (timeout: false)', () => times(() => closed.opossum.fire()))
    .add('opossum (default 10 s timeout)', () => times(() => closed.opossumDefaults.fire()))
    .add('cockatiel ConsecutiveBreaker', () => times(() => closed.cockatiel.execute(trivial)))
    .add('cockatiel SamplingBreaker', () => times(() => closed.cockatielSampling.execute(trivial)))
    .add('sluice', () => times(() => closed.sluice.run(trivial)))
    .add('sluice, failure rate', () => times(() => closed.sluiceRate.run(trivial)))
  closedBench.opsPerIteration = CALLS
  // The call without a breaker is context (the floor), not a contender.
  closedBench.check = (rows) => {
    for (const row of rows) if (row.name === 'direct call, no breaker') row.reference = true
  }

  // Open: every breaker failed enough to open for an hour before the run.
  const open = contenders(failing)
  const openBench = new Bench({ retainSamples: true, name: 'circuit breaker run, open (every call refused)', time })
    .add('pure-JS baseline', () => refusals(() => open.baseline.run(failing)))
    .add('opossum (timeout: false)', () => refusals(() => open.opossum.fire()))
    .add('cockatiel ConsecutiveBreaker', () => refusals(() => open.cockatiel.execute(failing)))
    .add('sluice', () => refusals(() => open.sluice.run(failing)))
  openBench.opsPerIteration = CALLS
  const opened = (async () => {
    for (let i = 0; i < 20; i++) {
      await open.baseline.run(failing).catch(noop)
      await open.sluice.run(failing).catch(noop)
      await open.opossum.fire().catch(noop)
      await open.cockatiel.execute(failing).catch(noop)
    }
  })()
  const shutdown = () => {
    for (const set of [closed, open]) {
      set.opossum.shutdown()
      set.opossumDefaults.shutdown()
    }
  }
  // Checked after the run: a breaker that was not open measured the wrong path.
  // Then the opossum breakers' timers go (the last suite of this file).
  openBench.check = (rows) => {
    const states = { sluice: open.sluice.state, opossum: open.opossum.opened ? 'open' : 'not open', cockatiel: String(open.cockatiel.state) }
    for (const [name, state] of Object.entries(states)) {
      if (state !== 'open' && state !== '1') {
        const row = rows.find((r) => r.name.startsWith(name))
        if (row) row.error = `${name} was not open (${state})`
      }
    }
    shutdown()
  }
  const run = openBench.run.bind(openBench)
  openBench.run = async () => {
    await opened
    return run()
  }
  return [closedBench, openBench]
}
