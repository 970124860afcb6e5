#!/usr/bin/env node
// Prints, for every criterion group in target/criterion, each of our rows
// against the anchor of the same group (crossbeam, tokio, governor): the
// ratio is anchor time / our time, so above 1.0 means sluice is faster.
import { existsSync, readdirSync, readFileSync } from 'node:fs'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'

const root = join(fileURLToPath(new URL('..', import.meta.url)), 'target', 'criterion')
const ANCHORS = ['crossbeam', 'tokio', 'governor']

/** Every benchmark under `dir`, as [path segments, mean ns]. */
function* estimates(dir, path = []) {
  const file = join(dir, 'new', 'estimates.json')
  if (existsSync(file)) yield [path, JSON.parse(readFileSync(file, 'utf8')).mean.point_estimate]
  for (const entry of readdirSync(dir, { withFileTypes: true })) {
    if (entry.isDirectory() && entry.name !== 'new' && entry.name !== 'base' && entry.name !== 'report') {
      yield* estimates(join(dir, entry.name), [...path, entry.name])
    }
  }
}

if (!existsSync(root)) {
  console.error('no criterion results: run `cargo bench -p sluice-core` first')
  process.exit(1)
}
const rows = []
for (const [path, ns] of estimates(root)) {
  const name = path.join('/')
  const anchor = ANCHORS.find((a) => name.includes(a))
  if (anchor !== undefined) continue
  // Our row and its anchor differ only in the contender's name; a variant
  // of ours (`sluice-sliding-window`) pairs with the same anchor.
  const ours = name.replace(/\/sluice-[^/]*$/, '/sluice')
  const twin = [...estimates(root)].find(([p]) => {
    const other = p.join('/')
    return ANCHORS.some((a) => other.includes(a) && other.replace(a, 'sluice') === ours)
  })
  if (twin === undefined) continue
  rows.push({ benchmark: name, 'sluice ns': ns.toFixed(1), 'anchor ns': twin[1].toFixed(1), 'anchor/sluice': (twin[1] / ns).toFixed(2) })
}
console.table(rows)
