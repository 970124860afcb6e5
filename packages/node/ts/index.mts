// The ES module entry re-exports the CommonJS build instead of compiling a
// second copy: one module instance per thread, whichever way sluice is loaded,
// so `instanceof` and the thread's pending waits are never split in two.
export * from './index.js'
