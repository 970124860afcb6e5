// ES module entry of `sluice/fastify`: the CommonJS build, one instance per thread.
export * from './fastify.js'
