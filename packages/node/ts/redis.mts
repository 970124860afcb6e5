// ES module entry of `sluice/redis`: the CommonJS build, one instance per thread.
export * from './redis.js'
