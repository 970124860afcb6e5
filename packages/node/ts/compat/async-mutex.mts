// ES module entry of `sluice/compat/async-mutex`: re-exports the CommonJS
// build (one instance per thread, as the main entry does).
export * from './async-mutex.js'
