// HTTP rate limiting (issue 14): fastify 5 with no limiter, with
// @fastify/rate-limit (memory store) and with sluice/fastify, under autocannon,
// 100 connections, keyed by the `x-api-key` header. Each connection is one
// client with its own key; half of them (the odd ones) ask /tight, limited to
// a few requests per hour, so they are over their limit after their first
// few; the other half ask /generous, whose limit no run reaches. The server
// runs in a child process (bench/workers/rate-limit-server.mjs), one per
// contender, and autocannon here.
//
// Correctness: every connection counts its own responses by status. A /tight
// key is allowed exactly min(its requests, TIGHT) and refused the rest; a
// /generous key is never refused. The tolerance is zero: the window (1 hour)
// is hundreds of times longer than a run, so a fixed window
// (@fastify/rate-limit) never rolls over and a GCRA bucket (sluice) refills
// TIGHT / 3600 s x run seconds < 1 token; one request is in flight per
// connection (no pipelining), so every decision the server made before the
// run ended reached the client, and a connection error or timeout (which
// could lose one) fails the check rather than being tolerated.
import autocannon from 'autocannon'
import { fork } from 'node:child_process'
import { once } from 'node:events'

const CONNECTIONS = 100
const TIGHT = 10
const GENEROUS = 1e9
const WINDOW_MS = 3_600_000
const server = new URL('./workers/rate-limit-server.mjs', import.meta.url).pathname
const contenders = ['no limiter', '@fastify/rate-limit', 'sluice/fastify']

function startServer(contender) {
  const child = fork(server, [contender, JSON.stringify({ generous: GENEROUS, tight: TIGHT, windowMs: WINDOW_MS })], {
    execArgv: [],
    stdio: ['ignore', 'inherit', 'pipe', 'ipc'],
  })
  let stderr = ''
  child.stderr.on('data', (chunk) => (stderr += chunk))
  return new Promise((resolve, reject) => {
    const fail = (why) => {
      clearTimeout(timer)
      child.kill('SIGKILL')
      const error = stderr.split('\n').find((line) => /Error/.test(line))
      reject(new Error(`${why}${error ? `: ${error.trim()}` : ''}`))
    }
    const timer = setTimeout(() => fail('the server did not start in 15 s'), 15_000)
    child.once('exit', (code) => fail(`the server exited (${code})`))
    child.once('message', ({ port }) => {
      clearTimeout(timer)
      child.removeAllListeners('exit')
      resolve({ child, port })
    })
  })
}

async function stopServer(child) {
  if (child.exitCode !== null || child.signalCode !== null) return
  const exited = once(child, 'exit')
  child.send('stop')
  const timer = setTimeout(() => child.kill('SIGKILL'), 5_000)
  await exited
  clearTimeout(timer)
}

/**
 * Runs autocannon for `seconds` (whole seconds: it stops on its 1 s tick)
 * with keys `<prefix>-<connection>`; resolves with its result and the
 * responses of each connection by status.
 */
function load(port, prefix, seconds) {
  const clients = []
  return new Promise((resolve, reject) => {
    const tracker = autocannon(
      {
        url: `http://127.0.0.1:${port}`,
        connections: CONNECTIONS,
        duration: seconds,
        setupClient(client) {
          const index = clients.length
          const tight = index % 2 === 1
          const counts = { tight, responses: 0, ok: 0, limited: 0, other: 0 }
          clients.push(counts)
          client.setRequests([{ method: 'GET', path: tight ? '/tight' : '/generous', headers: { 'x-api-key': `${prefix}-${index}` } }])
          client.on('response', (status) => {
            counts.responses++
            if (status === 200) counts.ok++
            else if (status === 429) counts.limited++
            else counts.other++
          })
        },
      },
      (error, result) => {
        clearTimeout(bound)
        if (error) reject(error)
        else resolve({ result, clients })
      },
    )
    // Bounded: autocannon stops itself after `seconds`; this is in case it does not.
    const bound = setTimeout(() => tracker.stop(), (seconds + 15) * 1000)
  })
}

/** What each connection should have been answered, against what it was; an error message or undefined. */
function check(result, clients, limited) {
  let expectedOk = 0
  let expectedLimited = 0
  let ok = 0
  let refused = 0
  let other = 0
  for (const c of clients) {
    const allowed = limited && c.tight ? Math.min(c.responses, TIGHT) : c.responses
    expectedOk += allowed
    expectedLimited += c.responses - allowed
    ok += c.ok
    refused += c.limited
    other += c.other
  }
  const counted = ok + refused + other
  const problems = []
  if (ok !== expectedOk || refused !== expectedLimited) problems.push(`${ok} 2xx / ${refused} 429, expected ${expectedOk} / ${expectedLimited}`)
  if (other > 0) problems.push(`${other} other statuses`)
  if (result.errors > 0 || result.timeouts > 0) problems.push(`${result.errors} connection errors, ${result.timeouts} timeouts`)
  // The connections' own counts and autocannon's must agree.
  const total = result['1xx'] + result['2xx'] + result['3xx'] + result['4xx'] + result['5xx']
  if (counted !== total) problems.push(`the connections counted ${counted} responses, autocannon ${total}`)
  const tightClients = clients.filter((c) => c.tight)
  if (limited && tightClients.some((c) => c.responses <= TIGHT)) problems.push('a /tight connection never got over its limit')
  return { ok, refused, expectedLimited, other, problem: problems.length > 0 ? problems.join('; ') : undefined }
}

export function suites({ quick }) {
  // autocannon stops on whole seconds. Rounds alternate the contenders'
  // order (A B C, C B A, ...) against servers that stay up, so that a burst
  // of load from elsewhere on this shared machine lands on all of them, not
  // on whichever ran then; each row is its best round, as bestOf elsewhere.
  const rounds = quick ? 1 : 3
  const seconds = 2
  const warmup = 1
  const suite = {
    name: `fastify 5, ${CONNECTIONS} connections keyed by x-api-key, half over their limit (requests/s)`,
    baseline: '@fastify/rate-limit',
    async run() {
      const servers = new Map()
      const errors = new Map()
      const runs = new Map(contenders.map((name) => [name, []]))
      const totals = new Map(contenders.map((name) => [name, { requests: 0, ok: 0, refused: 0, expectedLimited: 0, problems: [] }]))
      try {
        for (const name of contenders) {
          try {
            const started = await startServer(name)
            servers.set(name, started)
            // Warm-up keys are not the measured ones: the measured /tight keys start with their full quota.
            await load(started.port, 'warm', warmup)
          } catch (error) {
            errors.set(name, error.message)
          }
        }
        for (let round = 0; round < rounds; round++) {
          const order = round % 2 === 0 ? contenders : [...contenders].reverse()
          for (const name of order) {
            const server = servers.get(name)
            if (!server || errors.has(name)) continue
            try {
              // Fresh keys each round: every /tight key starts with its full quota.
              const { result, clients } = await load(server.port, `key-${round}`, seconds)
              const verdict = check(result, clients, name !== 'no limiter')
              const requests = verdict.ok + verdict.refused + verdict.other
              runs.get(name).push(requests / result.duration)
              const total = totals.get(name)
              total.requests += requests
              total.ok += verdict.ok
              total.refused += verdict.refused
              total.expectedLimited += verdict.expectedLimited
              if (verdict.problem) total.problems.push(`round ${round + 1}: ${verdict.problem}`)
            } catch (error) {
              errors.set(name, error.message)
            }
          }
        }
      } finally {
        await Promise.all([...servers.values()].map(({ child }) => stopServer(child)))
      }
      const rows = contenders.map((name) => {
        if (errors.has(name)) return { name, error: errors.get(name) }
        const { problems } = totals.get(name)
        return {
          name,
          // Context, not a contender; and not a ceiling: every one of its
          // requests runs the route handler, where a limiter's 429 skips it.
          reference: name === 'no limiter' || undefined,
          opsPerSecond: Math.max(...runs.get(name)),
          runs: runs.get(name),
          ...(problems.length > 0 ? { error: `count check failed: ${problems.join('; ')}` } : {}),
        }
      })
      const number = (n) => n.toLocaleString('en-US')
      suite.notes = [
        `autocannon, ${rounds} round${rounds > 1 ? 's' : ''} of ${seconds} s per contender (the best counts; the order alternates between rounds, against servers that stay up), after ${warmup} s of warm-up on other keys; ${CONNECTIONS} connections, one request in flight each; each server in its own child process. ` +
          `${CONNECTIONS / 2} connections ask /generous (limit ${GENEROUS.toExponential(0)} per hour: never reached), ${CONNECTIONS / 2} ask /tight (${TIGHT} per hour), each with its own key, fresh each round. ` +
          `Both limiters send X-RateLimit-Limit/Remaining/Reset on every response and Retry-After on a 429. ` +
          `No limiter is context, not a ceiling: it runs the route handler for every request, where a 429 from an onRequest hook skips the handler (@fastify/rate-limit's 429 is a thrown Error through fastify's error handler; sluice/fastify sends its 429 from the hook).`,
        `Check: each /tight key is allowed exactly min(its requests, ${TIGHT}), each /generous key always; tolerance 0, since the 1-hour window cannot roll over or refill a token within a run and every response is counted by the connection that got it (a connection error or timeout fails the check).`,
        '',
        '| contender | requests (all rounds) | 2xx | 429 | expected 429 | check |',
        '| --- | ---: | ---: | ---: | ---: | --- |',
        ...contenders
          .filter((name) => !errors.has(name))
          .map((name) => {
            const t = totals.get(name)
            return `| ${name} | ${number(t.requests)} | ${number(t.ok)} | ${number(t.refused)} | ${number(t.expectedLimited)} | ${t.problems.length > 0 ? t.problems.join('; ') : 'ok'} |`
          }),
      ]
      return rows
    },
  }
  return [suite]
}
