// `Semaphore.open(name, { ..., store })` and its siblings hand the primitive
// to the store (today `sluice/redis`), through one symbol per kind.
import { show, validateName, validateOptions } from './validate.js'

/** A store that can open a primitive of one kind (the key `K`), as an `S`. */
export type Store<K extends symbol, S> = { readonly [P in K]: (name: string, options: never) => S }

/**
 * The primitive `options.store` opens under `name`, or `undefined` when no
 * store is given. Checks `name` (the rule every reach shares) and the store.
 */
export function openInStore(kind: symbol, name: unknown, options: unknown): unknown {
  validateName(name)
  const { store } = validateOptions<{ store: unknown }>(options, 'options')
  if (store === undefined) return undefined
  if (typeof store !== 'object' || store === null || typeof (store as Record<symbol, unknown>)[kind] !== 'function') {
    throw new TypeError(`options.store must be a store (redis(client) from 'sluice/redis'), got ${show(store)}`)
  }
  return (store as Record<symbol, (name: unknown, options: unknown) => unknown>)[kind]!(name, options)
}
