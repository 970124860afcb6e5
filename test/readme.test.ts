// Runs every ```js block of README.md as a reader who copies it into files
// would, on every supported Node (the running Node 20, then 22 and 24), so
// that the README cannot rot. Build first (`npm run build`).
//
// The convention for README.md:
// - Every ```js block is code that runs. Signatures, fragments and anything
//   else that cannot run stand in ```ts blocks (not run); shell in ```sh.
//   Any other fence language fails this test, so nothing slips past it.
// - A block's first line may be a header comment. `// task.js` (any text may
//   follow the name) saves the block under that name; `Node 24+` in it runs
//   the block only on Node 24 and later (for `using`, a SyntaxError before).
// - The blocks under one heading share a directory. A block named anything
//   but `main.js` is a companion (a worker or task file an example loads):
//   it is not run, and some example under its heading must name it. Every
//   other block is an example, run there as `node <file>`; it must exit 0
//   within EXAMPLE_TIMEOUT_MS by itself (close pools, end workers).
// - The directory has a package.json with "type": "module" and
//   node_modules/sluice linked to packages/node, as after `npm install sluice`;
//   FRAMEWORKS (the web frameworks the middleware examples use) are linked
//   beside it from this repository's devDependencies.
// - PLACEHOLDERS are the names the examples use for what only the reader has.
//   Each is defined on the first line of every file that uses it and does not
//   declare it. Everything else an example needs, it defines itself.
import { execFile } from 'node:child_process'
import { mkdirSync, mkdtempSync, readFileSync, symlinkSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { NODE_VERSIONS, nodeBinary } from '../scripts/fetch-node.mjs'
import { startRedis, type RedisServer } from './support/redis-server.js'

const root = fileURLToPath(new URL('..', import.meta.url))
const EXAMPLE_TIMEOUT_MS = 20_000
/** Packages the examples may import besides sluice, as a reader would `npm install` them. */
const FRAMEWORKS = ['express', 'fastify', 'ioredis']

/** name -> its definition; README.md's Usage section tells the reader. */
const PLACEHOLDERS: Record<string, string> = {
  // Your database client (pg's Pool, mysql2, ...): a query takes 5 ms.
  client:
    'const client = { async query(sql) { await new Promise((resolve) => setTimeout(resolve, 5)); return { rows: [{ sql }] } } };',
}

interface Block {
  /** 1-based line of the opening fence in README.md. */
  line: number
  heading: string
  lang: string
  code: string
}

interface Example {
  file: string
  line: number
  heading: string
  dir: string
  minNode: number
}

function readBlocks(markdown: string): Block[] {
  const blocks: Block[] = []
  const lines = markdown.split('\n')
  let heading = ''
  for (let i = 0; i < lines.length; i++) {
    const line = lines[i]!
    const open = /^```(\S*)\s*$/.exec(line)
    if (open === null) {
      const title = /^#+\s+(.*)$/.exec(line)
      if (title !== null) heading = title[1]!
      continue
    }
    const start = i
    const body: string[] = []
    for (i++; i < lines.length && !/^```\s*$/.test(lines[i]!); i++) body.push(lines[i]!)
    if (i === lines.length) throw new Error(`README.md:${start + 1}: unclosed code fence`)
    blocks.push({ line: start + 1, heading, lang: open[1]!, code: `${body.join('\n')}\n` })
  }
  return blocks
}

function withPlaceholders(code: string): string {
  const defined = Object.entries(PLACEHOLDERS).filter(
    ([name]) =>
      new RegExp(`\\b${name}\\b`).test(code) && !new RegExp(`\\b(?:const|let|var|function|class)\\s+${name}\\b`).test(code),
  )
  return defined.length === 0 ? code : `${defined.map(([, definition]) => definition).join(' ')}\n${code}`
}

/** Writes each heading's blocks into a directory of its own; returns the examples to run. */
function writeExamples(blocks: Block[]): Example[] {
  const work = mkdtempSync(join(tmpdir(), 'sluice-readme-'))
  const dirs = new Map<string, string>()
  const files = new Map<string, Block>()
  const examples: Example[] = []
  const companions: (Block & { file: string; dir: string })[] = []
  for (const block of blocks.filter((b) => b.lang === 'js')) {
    let dir = dirs.get(block.heading)
    if (dir === undefined) {
      dir = join(work, String(dirs.size))
      mkdirSync(join(dir, 'node_modules'), { recursive: true })
      writeFileSync(join(dir, 'package.json'), JSON.stringify({ type: 'module', private: true }))
      symlinkSync(join(root, 'packages', 'node'), join(dir, 'node_modules', 'sluice'), 'dir')
      for (const name of FRAMEWORKS) symlinkSync(join(root, 'node_modules', name), join(dir, 'node_modules', name), 'dir')
      dirs.set(block.heading, dir)
    }
    const header = /^\/\/(.*)/.exec(block.code)?.[1] ?? ''
    const named = /^\s*([\w.-]+\.m?js)\b/.exec(header)?.[1]
    const file = named ?? `example-${block.line}.js`
    const clash = files.get(join(dir, file))
    if (clash !== undefined) {
      throw new Error(`README.md:${block.line}: ${file} is already the block at line ${clash.line} under "${block.heading}"`)
    }
    files.set(join(dir, file), block)
    writeFileSync(join(dir, file), withPlaceholders(block.code))
    if (named !== undefined && named !== 'main.js') {
      companions.push({ ...block, file, dir })
    } else {
      const minNode = Number(/\bNode (\d+)\+/.exec(header)?.[1] ?? 0)
      examples.push({ file, line: block.line, heading: block.heading, dir, minNode })
    }
  }
  for (const companion of companions) {
    const used = [...files].some(
      ([path, block]) => path.startsWith(`${companion.dir}/`) && block.line !== companion.line && block.code.includes(companion.file),
    )
    if (!used) throw new Error(`README.md:${companion.line}: no example under "${companion.heading}" loads ${companion.file}`)
  }
  return examples
}

function runExample(node: string, example: Example): Promise<{ code: number | null; output: string }> {
  return new Promise((resolve) => {
    // The Redis examples read REDIS_URL, as a reader's deployment would: here, this file's own server.
    const env = { ...process.env, REDIS_URL: redisServer?.url }
    execFile(node, [example.file], { cwd: example.dir, env, timeout: EXAMPLE_TIMEOUT_MS, killSignal: 'SIGKILL' }, (error, stdout, stderr) => {
      const timedOut = error !== null && error.killed ? `(killed after ${EXAMPLE_TIMEOUT_MS} ms: it does not end by itself)\n` : ''
      resolve({ code: error === null ? 0 : typeof error.code === 'number' ? error.code : null, output: timedOut + stdout + stderr })
    })
  })
}

// SLUICE_README=<path> runs another copy instead (to mutation-check this test
// without touching the README).
const readme = readFileSync(process.env.SLUICE_README ?? join(root, 'README.md'), 'utf8')
const blocks = readBlocks(readme)
const examples = writeExamples(blocks)

let redisServer: RedisServer | undefined

describe('README.md', () => {
  beforeAll(async () => {
    redisServer = await startRedis()
  })
  afterAll(async () => {
    await redisServer?.stop()
  })

  it('has only js (run), ts (not run) and sh code blocks', () => {
    const others = blocks.filter((b) => !['js', 'ts', 'sh'].includes(b.lang)).map((b) => `README.md:${b.line} \`\`\`${b.lang}`)
    expect(others).toEqual([])
  })

  it('has examples for this test to run, and uses every placeholder', () => {
    expect(examples.length).toBeGreaterThanOrEqual(5)
    const code = blocks.filter((b) => b.lang === 'js').map((b) => b.code)
    for (const name of Object.keys(PLACEHOLDERS)) {
      expect(code.some((c) => new RegExp(`\\b${name}\\b`).test(c)), `placeholder ${name} is used`).toBe(true)
    }
  })

  // The running Node, and the other supported ones where fetch-node.mjs can
  // get them (linux x64); under test:js:node24 the running one is 24.
  const current = Number(process.versions.node.split('.')[0])
  const others = process.platform === 'linux' && process.arch === 'x64' ? Object.keys(NODE_VERSIONS).map(Number) : []
  const versions = [
    { major: current, node: () => process.execPath },
    ...others.filter((major) => major !== current).map((major) => ({ major, node: () => nodeBinary(String(major)) })),
  ]
  describe.each(versions)('on Node $major', ({ major, node }) => {
    it.concurrent.for(examples.map((example) => ({ ...example, name: `README.md:${example.line} (${example.heading})` })))(
      'the example at $name exits 0 by itself',
      { timeout: EXAMPLE_TIMEOUT_MS + 10_000 },
      async (example, { expect, skip }) => {
        skip(major < example.minNode, `marked Node ${example.minNode}+`)
        const { code, output } = await runExample(node(), example)
        expect(code, `node ${example.file} under "${example.heading}":\n${output}`).toBe(0)
      },
    )
  })
})
