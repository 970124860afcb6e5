/**
 * Internal symbols (piscina's `symbols.ts` style): keys of members that other
 * sluice modules use and users should not. Not exported from the package.
 */

/**
 * First constructor argument that makes a primitive adopt a native object
 * already attached to this thread (by `from(handle)`) instead of creating
 * one: `new Semaphore(kAttach, attached)`.
 */
export const kAttach: unique symbol = Symbol('sluice.attach')

/**
 * First constructor argument that makes a semaphore start from a state kept
 * in JavaScript (`new Semaphore(kLocal, localSemaphore)`): `internal.create`.
 */
export const kLocal: unique symbol = Symbol('sluice.local')

/** `Semaphore[kRelease](weight)`: gives back permits a `Permit` held. */
export const kRelease: unique symbol = Symbol('sluice.release')

/** `Semaphore[kForget](weight)`: gives up held permits for good. */
export const kForget: unique symbol = Symbol('sluice.forget')

/** `Semaphore[kInternals]`: what the compat adapters and a queued acquire reach. */
export const kInternals: unique symbol = Symbol('sluice.internals')

/**
 * `store[kOpenSemaphore](name, options)` and its siblings: how
 * `Semaphore.open` and the others hand a named primitive to a store
 * (`sluice/redis`) when `options.store` is given.
 */
export const kOpenSemaphore: unique symbol = Symbol('sluice.openSemaphore')
export const kOpenMutex: unique symbol = Symbol('sluice.openMutex')
export const kOpenTokenBucket: unique symbol = Symbol('sluice.openTokenBucket')
export const kOpenRateLimiter: unique symbol = Symbol('sluice.openRateLimiter')
