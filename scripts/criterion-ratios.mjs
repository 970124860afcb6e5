#!/usr/bin/env node
// Prints, for every criterion group in <target>/criterion, each of our rows
// against the anchor of the same group (crossbeam, tokio, governor): the
// ratio is anchor time / our time, so above 1.0 means sluice is faster.
// <target> is CARGO_TARGET_DIR when set (as cargo itself reads it, relative
// to the working directory), else the workspace's target/.
//
// Two ratios per row: of the medians and of the means of the per-iteration
// times. On a machine shared with other work a sample that lost its core
// drags the mean of that contender alone; the median does not move, so it is
// the ratio to read there (the mean is kept beside it so neither is hidden).
import { existsSync, readdirSync, readFileSync } from 'node:fs'
import { join, resolve } from 'node:path'
import { fileURLToPath } from 'node:url'

const target = process.env.CARGO_TARGET_DIR
  ? resolve(process.env.CARGO_TARGET_DIR)
  : join(fileURLToPath(new URL('..', import.meta.url)), 'target')
const root = join(target, 'criterion')
const ANCHORS = ['crossbeam', 'tokio', 'governor']

/** Every benchmark under `dir`, as [path segments, { median, mean } ns]. */
function* estimates(dir, path = []) {
  const file = join(dir, 'new', 'estimates.json')
  if (existsSync(file)) {
    const { median, mean } = JSON.parse(readFileSync(file, 'utf8'))
    yield [path, { median: median.point_estimate, mean: mean.point_estimate }]
  }
  for (const entry of readdirSync(dir, { withFileTypes: true })) {
    if (entry.isDirectory() && entry.name !== 'new' && entry.name !== 'base' && entry.name !== 'report') {
      yield* estimates(join(dir, entry.name), [...path, entry.name])
    }
  }
}

if (!existsSync(root)) {
  console.error(`no criterion results in ${root}: run \`cargo bench -p sluice-core\` first`)
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
  rows.push({
    benchmark: name,
    'sluice ns (median)': ns.median.toFixed(1),
    'anchor ns (median)': twin[1].median.toFixed(1),
    'anchor/sluice (median)': (twin[1].median / ns.median).toFixed(2),
    'anchor/sluice (mean)': (twin[1].mean / ns.mean).toFixed(2),
  })
}
console.table(rows)
