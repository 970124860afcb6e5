// The CPU work of an order, run in a worker thread (sluice's WorkerPool in
// server.mjs, piscina in baseline.mjs): its JSON, hashed `rounds` times with
// SHA-256, a few milliseconds that would otherwise stall the event loop.
import { createHash } from 'node:crypto'

export default function hash({ key, order, quote, rounds }) {
  let digest = JSON.stringify({ key, order, quote })
  for (let i = 0; i < rounds; i++) digest = createHash('sha256').update(digest).digest('hex')
  return digest
}
