// ES module entry of `sluice/compat/p-limit`, with p-limit's default export.
// It loads the CommonJS build (one instance per thread): importing CommonJS
// from ESM yields `module.exports` as the default, not `exports.default`.
import { createRequire } from 'node:module'
import type * as PLimit from './p-limit.js'

const cjs = createRequire(import.meta.url)('./p-limit.js') as typeof PLimit
export type { LimitFunction, Options } from './p-limit.js'
export const limitFunction = cjs.limitFunction
export default cjs.default
