// Does what a user's `npm install sluice` does: pack the main package and the
// linux-x64-gnu platform package, install both tarballs into an empty folder
// offline, with no Rust toolchain on PATH, and use sluice from there on every
// supported Node. Proves the optionalDependencies wiring, the generated loader
// and that one N-API binary serves Node 20, 22 and 24.
import { execFile, execFileSync } from 'node:child_process'
import { cpSync, existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, realpathSync, symlinkSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { promisify } from 'node:util'
import { beforeAll, describe, expect, it } from 'vitest'
import { nodeBinary } from '../scripts/fetch-node.mjs'

const run = promisify(execFile)
const root = fileURLToPath(new URL('..', import.meta.url))
const pkg = join(root, 'packages', 'node')
const platformPackage = 'linux-x64-gnu'
const supported = process.platform === 'linux' && process.arch === 'x64'

describe.runIf(supported)('the packed package, installed as a user installs it', () => {
  let work: string
  let mainTarball: string
  let app: string
  let bin: string

  beforeAll(async () => {
    work = mkdtempSync(join(tmpdir(), 'sluice-install-'))
    // The platform package gets the freshly built binary, as CI's artifacts step does.
    const stage = join(work, 'stage')
    cpSync(join(pkg, 'npm', platformPackage), stage, { recursive: true })
    cpSync(join(pkg, `sluice.${platformPackage}.node`), join(stage, `sluice.${platformPackage}.node`))
    await run('npm', ['pack', '--pack-destination', work], { cwd: stage })
    // The main package as `napi prepublish` leaves it at release time: with an
    // optional dependency on every platform package of napi.targets.
    const main = join(work, 'main')
    mkdirSync(main)
    for (const file of ['binding.js', 'binding.d.ts', 'dist']) cpSync(join(pkg, file), join(main, file), { recursive: true })
    const manifest = JSON.parse(readFileSync(join(pkg, 'package.json'), 'utf8'))
    const platforms = readdirSync(join(pkg, 'npm'))
    expect(platforms).toHaveLength(manifest.napi.targets.length)
    manifest.optionalDependencies = Object.fromEntries(platforms.map((p) => [`sluice-${p}`, manifest.version]))
    writeFileSync(join(main, 'package.json'), JSON.stringify(manifest, null, 2))
    const { stdout: packed } = await run('npm', ['pack', '--pack-destination', work], { cwd: main })
    mainTarball = join(work, packed.trim().split('\n').at(-1)!)
    const tarballs = readdirSync(work)
      .filter((f) => f.endsWith('.tgz'))
      .map((f) => join(work, f))
    expect(tarballs).toHaveLength(2)

    // PATH holds node and npm only: no cargo, no rustc, no compiler.
    bin = join(work, 'bin')
    mkdirSync(bin)
    symlinkSync(process.execPath, join(bin, 'node'))
    // The machine's npm, whichever Node runs this test (Node 24's package has none).
    const npmCli = realpathSync(execFileSync('sh', ['-c', 'command -v npm'], { encoding: 'utf8' }).trim())
    symlinkSync(npmCli, join(bin, 'npm'))
    app = join(work, 'app')
    mkdirSync(app)
    writeFileSync(join(app, 'package.json'), JSON.stringify({ name: 'app', private: true }))
    cpSync(join(root, 'test', 'package'), app, { recursive: true })
    // sluice's one runtime dependency comes from the registry into the
    // empty cache first; the install itself is then offline.
    const manifestDeps = Object.entries(manifest.dependencies ?? {}) as [string, string][]
    for (const [name, version] of manifestDeps) {
      await run('npm', ['cache', 'add', `${name}@${version}`, '--cache', join(work, 'cache')], { cwd: work })
    }
    await run('npm', ['install', '--offline', '--no-audit', '--no-fund', '--cache', join(work, 'cache'), ...tarballs], {
      cwd: app,
      env: { HOME: work, PATH: bin },
    })
  }, 300_000)

  it('installs the binary from the platform package, not from a build', () => {
    expect(existsSync(join(app, 'node_modules', 'piscina', 'package.json'))).toBe(true)
    const modules = join(app, 'node_modules')
    expect(existsSync(join(modules, `sluice-${platformPackage}`, `sluice.${platformPackage}.node`))).toBe(true)
    expect(readdirSync(join(modules, 'sluice')).filter((f) => f.endsWith('.node'))).toEqual([])
    expect(existsSync(join(modules, 'sluice', 'dist', 'index.mjs'))).toBe(true)
  })

  it.each(['current', '22', '24'])('require and import work on Node %s', async (major) => {
    const node = major === 'current' ? process.execPath : nodeBinary(major)
    const env = { HOME: app, PATH: bin }
    const { stdout: required } = await run(node, ['smoke.cjs'], { cwd: app, env })
    const { stdout: imported } = await run(node, ['smoke.mjs'], { cwd: app, env })
    const version = major === 'current' ? process.version : `v${major}.`
    expect(required).toContain(`require ok on ${version}`)
    expect(imported).toContain(`import ok on ${version}`)
  }, 300_000)

  it('names the platform package and how to get it when it was not installed', async () => {
    // As `npm install --omit=optional sluice` leaves it: the main package only.
    const bare = join(work, 'bare')
    mkdirSync(bare)
    writeFileSync(join(bare, 'package.json'), JSON.stringify({ name: 'bare', private: true }))
    const env = { HOME: work, PATH: bin }
    await run('npm', ['install', '--offline', '--omit=optional', '--no-audit', '--no-fund', '--cache', join(work, 'cache'), mainTarball], {
      cwd: bare,
      env,
    })
    expect(existsSync(join(bare, 'node_modules', `sluice-${platformPackage}`))).toBe(false)
    const probe = `try { require('sluice') } catch (e) { console.log(JSON.stringify({ message: e.message, cause: e.cause?.message })) }`
    const { stdout } = await run(process.execPath, ['-e', probe], { cwd: bare, env })
    const { message, cause } = JSON.parse(stdout) as { message: string; cause: string }
    expect(message).toContain(`sluice-${platformPackage} is not installed`)
    expect(message).toContain('--omit=optional')
    expect(message).toContain(`npm install sluice-${platformPackage}@`)
    expect(message).not.toContain('npm has a bug')
    // napi-rs's own error, with every path it tried, stays on as the cause.
    expect(cause).toContain('Cannot find native binding')
  }, 300_000)
})

