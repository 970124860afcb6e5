// ES module entry of `sluice/compat/p-limit`, with p-limit's default export.
// It loads the CommonJS build (one instance per thread): importing CommonJS
// from ESM yields `module.exports` as the default, not `exports.default`.
import { createRequire } from 'node:module'
import type { LimitFunction, Options } from './p-limit.js'

interface PLimitModule {
  default: (options: number | Options) => LimitFunction
  limitFunction: <Arguments extends unknown[], ReturnType>(
    fn: (...arguments_: Arguments) => PromiseLike<ReturnType> | ReturnType,
    options: Options,
  ) => ((...arguments_: Arguments) => Promise<ReturnType>) & { clearQueue(): void }
}

const cjs = createRequire(import.meta.url)('./p-limit.js') as PLimitModule
export type { LimitFunction, Options } from './p-limit.js'
export const limitFunction = cjs.limitFunction
const pLimit = cjs.default
export default pLimit
