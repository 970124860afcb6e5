// Helpers for the named-primitive tests: a private segment directory per
// test file, and child processes running test/fixtures/named-semaphore-child.mjs.
import { spawn, type ChildProcess } from 'node:child_process'
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { fixture } from './helpers.js'

/** `Semaphore.open`'s `fairness` option. */
export type Fairness = 'fifo' | 'eventual' | 'eventual-head'

/** A fresh directory for segments (mode 0700, as the segment layer requires). */
export function segmentDir(): { dir: string; remove: () => void } {
  const dir = mkdtempSync(join(tmpdir(), 'sluice-named-'))
  return { dir, remove: () => rmSync(dir, { recursive: true, force: true }) }
}

export interface Child {
  process: ChildProcess
  /** Resolves with the rest of the first stdout line starting with `prefix`. */
  line(prefix: string): Promise<string>
  /** Resolves with the exit code (or the signal's name). */
  exited: Promise<number | string>
  stderr(): string
}

const children = new Set<ChildProcess>()

/** Kills every child still running (call in afterEach/afterAll). */
export function killChildren(): void {
  for (const child of children) child.kill('SIGKILL')
  children.clear()
}

/** Runs the child fixture with `role` on the semaphore `name` in `dir` (opened with `fairness`, default 'fifo'). */
export function child(role: string, dir: string, name: string, permits: number, arg?: string | number, fairness?: Fairness): Child {
  const args = [fixture('named-semaphore-child.mjs').pathname, role, dir, name, String(permits)]
  if (arg !== undefined || fairness !== undefined) args.push(String(arg ?? ''))
  if (fairness !== undefined) args.push(fairness)
  return spawnNode(args)
}

/** Runs `node <args>` as a child, reading its stdout by lines. */
export function spawnNode(args: string[]): Child {
  const proc = spawn(process.execPath, args, { stdio: ['ignore', 'pipe', 'pipe'] })
  children.add(proc)
  let out = ''
  let err = ''
  const waiters: Array<{ prefix: string; resolve: (rest: string) => void }> = []
  const lines: string[] = []
  const check = (): void => {
    for (let i = waiters.length - 1; i >= 0; i--) {
      const waiter = waiters[i]!
      const found = lines.find((line) => line.startsWith(waiter.prefix))
      if (found !== undefined) {
        waiters.splice(i, 1)
        waiter.resolve(found.slice(waiter.prefix.length).trim())
      }
    }
  }
  proc.stdout!.on('data', (chunk: Buffer) => {
    out += chunk.toString()
    const parts = out.split('\n')
    out = parts.pop()!
    lines.push(...parts)
    check()
  })
  proc.stderr!.on('data', (chunk: Buffer) => (err += chunk.toString()))
  const exited = new Promise<number | string>((resolve) => {
    proc.on('exit', (code, signal) => {
      children.delete(proc)
      resolve(code ?? signal ?? -1)
    })
  })
  return {
    process: proc,
    exited,
    stderr: () => err,
    line: (prefix) =>
      new Promise((resolve, reject) => {
        waiters.push({ prefix, resolve })
        check()
        void exited.then((code) => reject(new Error(`child exited (${code}) before printing "${prefix}": ${err}`)))
      }),
  }
}
