#!/usr/bin/env node
// Runs a script under another supported Node (fetched from the npm registry
// once, see fetch-node.mjs): `node scripts/with-node.mjs 24 <script> [args...]`.
import { spawnSync } from 'node:child_process'
import { nodeBinary } from './fetch-node.mjs'

const [major, ...args] = process.argv.slice(2)
if (major === undefined || args.length === 0) {
  console.error('usage: node scripts/with-node.mjs <major> <script> [args...]')
  process.exit(2)
}
const node = nodeBinary(major)
const { status, signal } = spawnSync(node, args, { stdio: 'inherit' })
process.exit(status ?? (signal ? 1 : 0))
