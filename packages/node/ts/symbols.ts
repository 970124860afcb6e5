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

/** `Semaphore[kRelease](weight)`: gives back permits a `Permit` held. */
export const kRelease: unique symbol = Symbol('sluice.release')

/** `Semaphore[kForget](weight)`: gives up held permits for good. */
export const kForget: unique symbol = Symbol('sluice.forget')

/** `Semaphore[kInternals]`: what the compat adapters and a queued acquire reach. */
export const kInternals: unique symbol = Symbol('sluice.internals')
