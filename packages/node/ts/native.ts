// The generated napi-rs loader picks the prebuilt binary for this platform:
// a `.node` file beside it in a development checkout, else the matching
// `sluice-<platform>` package that npm installed as an optional dependency.
// eslint-disable-next-line @typescript-eslint/no-require-imports -- the loader is CommonJS, and so is this build
import binding = require('../binding.js')

/** An opaque, type-tagged handle made by `NativeSemaphore#fastHandle()`. */
export type FastHandle = object & { readonly __brand: 'sluice.FastHandle' }

/**
 * The hot paths, registered as raw N-API functions (src/fast.rs explains why),
 * so the generated typings do not know them.
 */
interface FastCalls {
  /** Takes `n` permits if free and nobody is queued; true if taken. */
  semTryAcquire(handle: FastHandle, n: number): boolean
  /** Takes `n` permits now (true) or queues the wait `token` (false). */
  semAcquire(handle: FastHandle, n: number, token: number): boolean
  /**
   * Releases `n` permits this thread holds. Returns what that granted: tokens
   * of this thread's waits (positive, already collected) and doorbell slots of
   * other threads to ring (as `-(slot + 1)`).
   */
  semRelease(handle: FastHandle, n: number): number[] | null
  /** Tokens of this thread's waits granted since the last call (tokens must be >= 1). */
  semTakeGranted(handle: FastHandle): number[] | null
}

const fast = binding as unknown as FastCalls
export const { semTryAcquire, semAcquire, semRelease, semTakeGranted } = fast
export const NativeSemaphore = binding.NativeSemaphore
export type NativeSemaphore = binding.NativeSemaphore
export const DOORBELL_SLOTS = binding.DOORBELL_SLOTS
