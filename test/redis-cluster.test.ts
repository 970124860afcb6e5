// The Redis reach on a local 3-node Redis Cluster (ioredis's Cluster
// client): every script touches keys of one hash slot only, so it runs on
// whichever node owns the primitive's tag; waiters are woken by pub/sub,
// which a cluster relays between nodes.
import { Cluster } from 'ioredis'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { RateLimiter, Semaphore } from 'sluice'
import { redis } from 'sluice/redis'
import { startCluster, type RedisCluster } from './support/redis-cluster.js'

let cluster: RedisCluster
let client: Cluster

beforeAll(async () => {
  cluster = await startCluster()
  client = new Cluster(cluster.nodes.map((n) => ({ host: '127.0.0.1', port: n.port })))
  client.on('error', () => {})
})

afterAll(async () => {
  await client?.quit().catch(() => client.disconnect())
  await cluster?.stop()
})

describe('on a 3-node Redis Cluster', () => {
  it('rate limits on many names (spread over the nodes) keep their limits', async () => {
    const store = redis(client)
    for (let i = 0; i < 6; i++) {
      const limiter = RateLimiter.open(`cl${i}`, { capacity: 2, refillPerSecond: 0.01, store })
      const verdicts = await Promise.all(['a', 'b{x}', 'a', 'b{x}', 'a'].map((key) => limiter.tryTake(key)))
      expect(verdicts.map((v) => v.allowed)).toEqual([true, true, true, true, false])
    }
    const slots = new Set(await Promise.all([0, 1, 2, 3, 4, 5].map((i) => client.cluster('KEYSLOT', `{sluice:cl${i}}`))))
    // The names landed on more than one slot, so more than one node served them.
    expect(slots.size).toBeGreaterThan(1)
  })

  it('a semaphore hands its permit to a waiter through the cluster’s pub/sub', async () => {
    const store = redis(client)
    const semaphore = Semaphore.open('clsem', { permits: 1, store })
    const held = await semaphore.acquire()
    const waiting = semaphore.acquire({ timeout: 5000 })
    await new Promise((resolve) => setTimeout(resolve, 50))
    await held.release()
    const permit = await waiting
    await permit.release()
    await store.close()
  })
})
