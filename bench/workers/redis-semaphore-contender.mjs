// One of 4 processes contending for a semaphore of 1 in Redis (bench/redis.bench.mjs):
// after 'go', acquires and releases in a loop for `warmMs` unmeasured (the
// JIT warms up: a cold run flatters whichever contender runs more
// JavaScript per acquisition less than it costs later), then for `ms`,
// timing each wait for the permit. argv[2]: JSON { port, contender, ms, warmMs }.
import { Redis } from 'ioredis'
import { Semaphore as RedisSemaphoreLock } from 'redis-semaphore'
import { Semaphore } from 'sluice'
import { redis } from 'sluice/redis'

const { port, contender, ms, warmMs = 0 } = JSON.parse(process.argv[2])
const client = new Redis({ port, host: '127.0.0.1' })
const store = redis(client)
const ours = Semaphore.open('handoff', { permits: 1, store })
const acquire =
  contender === 'sluice'
    ? async () => {
        const permit = await ours.acquire()
        return () => permit.release()
      }
    : async () => {
        // redis-semaphore's defaults: waiters retry every 10 ms.
        const lock = new RedisSemaphoreLock(client, 'handoff-rs', 1, { acquireTimeout: 60_000 })
        await lock.acquire()
        return () => lock.release()
      }
await ours.ready()
process.send('ready')
await new Promise((resolve) => process.once('message', resolve))
const warmUntil = performance.now() + warmMs
// Bounded: by time, and at most 1,000,000 acquisitions.
for (let i = 0; i < 1e6 && performance.now() < warmUntil; i++) {
  const release = await acquire()
  await release()
}
const waits = []
const cpu0 = process.cpuUsage()
const started = performance.now()
const deadline = started + ms
// Bounded: by time, and at most 1,000,000 acquisitions.
for (let i = 0; i < 1e6 && performance.now() < deadline; i++) {
  const t0 = performance.now()
  const release = await acquire()
  waits.push(performance.now() - t0)
  await release()
}
const cpu = process.cpuUsage(cpu0)
process.send({ seconds: (performance.now() - started) / 1000, waits, extra: process.env.PROF ? { cpuUsPerAcq: ((cpu.user + cpu.system) / waits.length).toFixed(1), user: cpu.user, sys: cpu.system } : undefined })
await store.close()
await client.quit()
