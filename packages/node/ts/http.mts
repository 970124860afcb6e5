// ES module entry of `sluice/http`: the CommonJS build, one instance per thread.
export * from './http.js'
