// The generated napi-rs loader picks the prebuilt binary for this platform:
// a `.node` file beside it in a development checkout, else the matching
// `sluice-<platform>` package that npm installed as an optional dependency.
import type * as Binding from '../binding.js'
import { InvalidHandleError, ThreadLimitError } from './errors.js'
import type { RateLimitKey } from './keyed-limit.js'

/** An opaque, type-tagged handle made by a native class's `fastHandle()`. */
export type FastHandle = object & { readonly __brand: 'sluice.FastHandle' }

/**
 * Outcome codes of the raw calls, exported by the binding from their one
 * source, src/raw.rs `code` (re-exported at the end of this file).
 * `NOT_NOW`: a try call could not complete now (no permits or tokens, the
 * channel full or empty); `QUEUED`: a wait call queued its wait.
 */
export type Outcome = typeof NOT_NOW | typeof QUEUED | typeof DONE | typeof CLOSED | typeof QUEUE_FULL | typeof TOO_HEAVY

/**
 * A wake list (src/wake.rs): what a native call that granted waits returns.
 * Positive numbers are tokens of this thread's waits, granted and collected;
 * `-(slot + 1)` is another thread's doorbell slot, to ring.
 */
export type WakeList = number[] | null

/**
 * The hot paths, registered as raw N-API functions (src/raw.rs explains why),
 * so the generated typings do not know them.
 */
interface RawCalls {
  semTryAcquire(handle: FastHandle, n: number): Outcome
  semAcquire(handle: FastHandle, n: number, token: number, priority?: number): Outcome
  /** A wake list; a list of one entry comes back as a bare number. */
  semRelease(handle: FastHandle, n: number): WakeList | number
  semTakeGranted(handle: FastHandle): number[] | null
  /** Eventual fairness: serves the permits parked for newcomers if this thread was nudged; a wake list. */
  semServe(handle: FastHandle): WakeList
  /** Free permits (available and reserved for the head) minus those owed. */
  semValue(handle: FastHandle): number
  /** Whether the semaphore was closed (the `closed` getter, at a raw call's cost). */
  semClosed(handle: FastHandle): boolean
  bucketTryTake(handle: FastHandle, n: number): Outcome
  /** Reserves `n` tokens; returns the nanoseconds to wait (0: taken now). */
  bucketReserve(handle: FastHandle, n: number, token: number): number
  /** The wait `token` ended: its tokens were due. */
  bucketRedeem(handle: FastHandle, token: number): null
  /** Gives back the tokens of the pending wait `token`; 1 if refunded. */
  bucketCancel(handle: FastHandle, token: number): 0 | 1
  /**
   * Takes `n` tokens from `key` if it has them now: DONE, NOT_NOW (over its
   * limit) or KEYS_FULL, with `[remaining, retryAfterMs, resetAfterMs]`
   * written into the array the handle was made with
   * (`NativeRateLimiter.decisionHandle`). Throws a TypeError or RangeError
   * naming `key` for a bad key.
   */
  limiterTryTake(handle: FastHandle, key: RateLimitKey, n: number): LimiterOutcome
  /** What `limiterTryTake` would answer, taking nothing. */
  limiterPeek(handle: FastHandle, key: RateLimitKey, n: number): LimiterOutcome
  /** Reserves `n` tokens on `key`: nanoseconds to wait (0: taken now), or null if there is no room for a new key. */
  limiterReserve(handle: FastHandle, key: RateLimitKey, n: number, token: number): number | null
  /** The wait `token` ended: its tokens were due. */
  limiterRedeem(handle: FastHandle, token: number): null
  /** Gives back the tokens of the pending wait `token`; 1 if refunded. */
  limiterCancel(handle: FastHandle, token: number): 0 | 1
  /** Forgets `key`'s state; 1 if it had any. */
  limiterReset(handle: FastHandle, key: RateLimitKey): 0 | 1
  /** Sent (null or a wake list), or NOT_NOW (full) or CLOSED. */
  chanSend(handle: FastHandle, message: Message): WakeList | typeof NOT_NOW | typeof CLOSED
  /** Sends from the front while there is room: `[sent, ...wakeList]`, or CLOSED. */
  chanSendMany(handle: FastHandle, messages: readonly Message[]): number[] | typeof CLOSED
  chanQueueSend(handle: FastHandle, token: number): typeof QUEUED | typeof DONE | typeof CLOSED
  /** Sends into the slot a granted wait holds. */
  chanPushHeld(handle: FastHandle, message: Message): WakeList | typeof CLOSED
  /**
   * A message, or `[message, ...wakeList]`; undefined if empty; null if closed
   * and drained. With a slab, `true` in place of a message: its bytes are in
   * the slab at `at`, their length in its header (see `ts/receive-slab.ts`).
   */
  chanRecv(handle: FastHandle): Received | undefined | null
  chanRecv(handle: FastHandle, slab: ArrayBuffer, at: number): Received | SlabReceived | undefined | null
  /** `[count, ...messages, ...wakeList]`; undefined if empty; null if closed and drained. */
  chanRecvMany(handle: FastHandle, max: number): unknown[] | undefined | null
  chanQueueRecv(handle: FastHandle, token: number): typeof QUEUED | typeof DONE | typeof CLOSED
  /** Receives with the item a granted wait holds; null if closed and drained. */
  chanPopHeld(handle: FastHandle): Received | null
  chanPopHeld(handle: FastHandle, slab: ArrayBuffer, at: number): Received | SlabReceived | null
  chanTakeGranted(handle: FastHandle): number[] | null
  /** Whether the channel was closed (the `closed` getter, at a raw call's cost). */
  chanClosed(handle: FastHandle): boolean
  /** Sends numbers from the front while there is room: `[sent, ...wakeList]`, or CLOSED. */
  chanSendNumbers(handle: FastHandle, numbers: Float64Array): number[] | typeof CLOSED
  /** Fills `out` from the front: a count, `[count, ...wakeList]`, or null if closed and drained. */
  chanRecvNumbers(handle: FastHandle, out: Float64Array): number | number[] | null
}

/** A rate limiter's answer: allowed (DONE), over the key's limit (NOT_NOW), or no room for a new key. */
export type LimiterOutcome = typeof DONE | typeof NOT_NOW | typeof KEYS_FULL

/** What crosses into a channel: a number, or bytes. */
export type Message = number | Uint8Array
/** A received message, alone or followed by a wake list. */
export type Received = Message | [Message, ...number[]]
/** A receive into the slab: `true` stands for the message placed there. */
export type SlabReceived = true | [true, ...number[]]

const binding = loadBinding()

function loadBinding(): typeof Binding {
  try {
    // eslint-disable-next-line @typescript-eslint/no-require-imports -- the loader is CommonJS, and so is this build
    return require('../binding.js') as typeof Binding
  } catch (error) {
    throw bindingLoadError(error)
  }
}

/**
 * napi-rs's loader says only "Cannot find native binding" and blames an npm
 * bug, whatever went wrong; the usual cause is a platform package that was
 * never installed (`--omit=optional`). Name the package and how to get it.
 */
function bindingLoadError(error: unknown): unknown {
  if (!(error instanceof Error) || !error.message.startsWith('Cannot find native binding')) return error
  // eslint-disable-next-line @typescript-eslint/no-require-imports -- read only on this path; always in the package
  const manifest = require('../package.json') as { version: string; napi: { binaryName: string; targets: string[] } }
  const prebuilt = manifest.napi.targets.map(platformArchAbi)
  let abi = ''
  if (process.platform === 'win32') abi = '-msvc'
  if (process.platform === 'linux') {
    const header = (process.report?.getReport() as { header?: { glibcVersionRuntime?: string } } | undefined)?.header
    abi = header !== undefined && header.glibcVersionRuntime === undefined ? '-musl' : '-gnu'
  }
  const platform = `${process.platform}-${process.arch}${abi}`
  const name = `${manifest.napi.binaryName}-${platform}`
  let message: string
  if (!prebuilt.includes(platform)) {
    message = `sluice has no prebuilt binary for ${platform}; prebuilt: ${prebuilt.join(', ')}`
  } else if (isInstalled(name)) {
    message = `sluice's platform package ${name} is installed but its binary did not load (see cause)`
  } else {
    message =
      `sluice's platform package ${name} is not installed: npm installs it as an optional dependency, ` +
      `so reinstall without --no-optional / --omit=optional (or npm_config_omit=optional), ` +
      `or add it: npm install ${name}@${manifest.version}`
  }
  return new Error(message, { cause: error })
}

/** `x86_64-unknown-linux-gnu` -> `linux-x64-gnu`, as napi-rs names platform packages. */
function platformArchAbi(triple: string): string {
  const [arch = '', , system = '', abi] = triple.split('-')
  const nodeArch = ({ x86_64: 'x64', aarch64: 'arm64', i686: 'ia32', armv7: 'arm' } as Record<string, string>)[arch] ?? arch
  const nodePlatform = system === 'darwin' ? 'darwin' : system === 'windows' ? 'win32' : system
  return `${nodePlatform}-${nodeArch}${abi === undefined ? '' : `-${abi}`}`
}

function isInstalled(name: string): boolean {
  try {
    require.resolve(`${name}/package.json`)
    return true
  } catch {
    return false
  }
}

const raw = binding as unknown as RawCalls
export const { semTryAcquire, semAcquire, semRelease, semTakeGranted, semServe, semValue, semClosed } = raw
export const { bucketTryTake, bucketReserve, bucketRedeem, bucketCancel } = raw
export const { limiterTryTake, limiterPeek, limiterReserve, limiterRedeem, limiterCancel, limiterReset } = raw
export const { chanSend, chanSendMany, chanQueueSend, chanPushHeld } = raw
export const { chanRecv, chanRecvMany, chanQueueRecv, chanPopHeld, chanTakeGranted, chanClosed } = raw
export const { chanSendNumbers, chanRecvNumbers } = raw
export const NativeSemaphore = binding.NativeSemaphore
export type NativeSemaphore = Binding.NativeSemaphore
export const NativeNamedSemaphore = binding.NativeNamedSemaphore
export type NativeNamedSemaphore = Binding.NativeNamedSemaphore
export const NativeNamedRateLimiter = binding.NativeNamedRateLimiter
export type NativeNamedRateLimiter = Binding.NativeNamedRateLimiter
export const NativeSharedWords = binding.NativeSharedWords
export type NativeSharedWords = Binding.NativeSharedWords
export const NativeNamedTokenBucket = binding.NativeNamedTokenBucket
export type NativeNamedTokenBucket = Binding.NativeNamedTokenBucket
export const NativeTokenBucket = binding.NativeTokenBucket
export type NativeTokenBucket = Binding.NativeTokenBucket
export const NativeRateLimiter = binding.NativeRateLimiter
export type NativeRateLimiter = Binding.NativeRateLimiter
export const NativeChannel = binding.NativeChannel
export type NativeChannel = Binding.NativeChannel
export const DOORBELL_SLOTS = binding.DOORBELL_SLOTS
export const { SEMAPHORE_QUEUED_BIT, SEMAPHORE_CLOSED_BIT, SEMAPHORE_PERMIT_SHIFT } = binding
export const MAX_CHANNEL_CAPACITY = binding.MAX_CHANNEL_CAPACITY
export const MAX_SLAB_MESSAGE = binding.MAX_SLAB_MESSAGE
export const SLAB_HEADER_BYTES = binding.SLAB_HEADER_BYTES
export const { NOT_NOW, QUEUED, DONE, CLOSED, QUEUE_FULL, TOO_HEAVY, KEYS_FULL } = binding
export const MAX_RATE_LIMIT_KEY_BYTES = binding.MAX_RATE_LIMIT_KEY_BYTES

/**
 * Attaches this thread to the live primitive with id `id` through a native
 * class's `fromId`, or throws InvalidHandleError naming `kind`, or
 * ThreadLimitError when every doorbell slot of the primitive is taken.
 */
export function attachById<T>(fromId: (id: number) => T, id: number, kind: string): T {
  try {
    return fromId(id)
  } catch (cause) {
    // src/attachment.rs fails with this status only when the slots are full.
    if ((cause as { code?: unknown } | null)?.code === 'QueueFull') {
      throw new ThreadLimitError(
        `cannot attach this thread to ${kind} ${id}: ${DOORBELL_SLOTS} threads are attached to it already, the most one primitive allows (DOORBELL_SLOTS); a thread's slot is freed when it exits`,
        { cause },
      )
    }
    throw new InvalidHandleError(`handle refers to no live ${kind} (id ${id})`, { cause })
  }
}
