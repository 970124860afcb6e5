// ES module entry of `sluice/worker`: the CommonJS build, one instance per thread.
export * from './worker.js'
