// The generated napi-rs loader picks the prebuilt binary for this platform:
// a `.node` file beside it in a development checkout, else the matching
// `sluice-<platform>` package that npm installed as an optional dependency.
// eslint-disable-next-line @typescript-eslint/no-require-imports -- the loader is CommonJS, and so is this build
import binding = require('../binding.js')

export const NativeSemaphore = binding.NativeSemaphore
export type NativeSemaphore = binding.NativeSemaphore
export const DOORBELL_SLOTS = binding.DOORBELL_SLOTS
