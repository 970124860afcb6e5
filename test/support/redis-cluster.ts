// A local 3-node Redis Cluster (3 masters, no replicas) on free loopback
// ports, for the hash-slot claims: every key of one primitive in one slot.
// The CLI is the server's own (redis-cli, or valkey-cli under
// SLUICE_REDIS_SERVER=valkey-server), so a Valkey run needs no redis-tools.
import { execFile } from 'node:child_process'
import { promisify } from 'node:util'
import { cliBinary, startRedis, type RedisServer } from './redis-server.js'

const run = promisify(execFile)

export interface RedisCluster {
  readonly nodes: RedisServer[]
  stop(): Promise<void>
}

export async function startCluster(): Promise<RedisCluster> {
  const nodes: RedisServer[] = []
  try {
    for (let i = 0; i < 3; i++) nodes.push(await startRedis(['--cluster-enabled', 'yes', '--cluster-node-timeout', '2000']))
    const addresses = nodes.map((n) => `127.0.0.1:${n.port}`)
    await run(cliBinary(), ['--cluster', 'create', ...addresses, '--cluster-replicas', '0', '--cluster-yes'], { timeout: 30_000 })
    // Bounded wait for every node to agree that the cluster is up.
    for (let i = 0; i < 100; i++) {
      const states = await Promise.all(
        nodes.map((n) => run(cliBinary(), ['-p', String(n.port), 'CLUSTER', 'INFO']).then((r) => /cluster_state:ok/.test(r.stdout))),
      )
      if (states.every(Boolean)) break
      await new Promise((resolve) => setTimeout(resolve, 100))
    }
  } catch (error) {
    await Promise.all(nodes.map((n) => n.stop()))
    throw error
  }
  return { nodes, stop: async () => void (await Promise.all(nodes.map((n) => n.stop()))) }
}
