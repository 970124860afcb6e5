// Exports sluice's `metrics()` to OpenTelemetry: observable counters for the
// running totals and observable gauges for what is true now, read once per
// collection for every primitive (one `metrics()` call each, in one batch
// callback). Counts are of every thread that shares a primitive, so register
// a primitive in one thread only, or the totals are exported twice.
//
//   npm install @opentelemetry/api   (and an SDK: @opentelemetry/sdk-metrics)
//   node examples/otel-metrics.mjs   (a demo: prints one collection)
import { pathToFileURL } from 'node:url'
import { metrics as otel } from '@opentelemetry/api'

/**
 * Registers the metrics of `primitives` ({ name: Semaphore | Mutex |
 * TokenBucket | RateLimiter }) with `meter`; each series has the attribute
 * `sluice.primitive` = its name. Returns the function that unregisters them.
 */
export function observeSluice(primitives, meter = otel.getMeter('sluice')) {
  const counter = (name, description) => meter.createObservableCounter(`sluice.${name}`, { description, unit: '{call}' })
  const gauge = (name, description, unit) => meter.createObservableGauge(`sluice.${name}`, { description, unit })
  const totals = {
    acquired: counter('acquired', 'Calls that got the permits or tokens they asked for'),
    refused: counter('refused', 'Calls turned away without waiting (queue full, rate limited, try calls that got nothing)'),
    timedOut: counter('timed_out', 'Waits ended by their timeout'),
    aborted: counter('aborted', 'Waits ended by their signal'),
  }
  const waiting = gauge('waiting', 'Waits queued now', '{wait}')
  const inUse = gauge('in_use', 'Permits held now (semaphores and mutexes)', '{permit}')
  const waitTime = gauge('wait_time', 'Wait from call to grant, by statistic (mean, p50, p90, p99, max)', 'ms')
  const instruments = [...Object.values(totals), waiting, inUse, waitTime]

  const callback = (result) => {
    for (const [name, primitive] of Object.entries(primitives)) {
      const snapshot = primitive.metrics()
      const attributes = { 'sluice.primitive': name }
      for (const [field, instrument] of Object.entries(totals)) result.observe(instrument, snapshot[field], attributes)
      result.observe(waiting, snapshot.waiting, attributes)
      if (snapshot.inUse !== undefined) result.observe(inUse, snapshot.inUse, attributes)
      for (const [statistic, value] of Object.entries(snapshot.waitTime)) {
        result.observe(waitTime, value, { ...attributes, 'sluice.statistic': statistic })
      }
    }
  }
  meter.addBatchObservableCallback(callback, instruments)
  return () => meter.removeBatchObservableCallback(callback, instruments)
}

/** The demo: a semaphore and a rate limiter under a little load, collected once and printed. */
async function demo() {
  const { AggregationTemporality, InMemoryMetricExporter, MeterProvider, PeriodicExportingMetricReader } = await import(
    '@opentelemetry/sdk-metrics'
  )
  const { RateLimiter, Semaphore } = await import('sluice')
  const exporter = new InMemoryMetricExporter(AggregationTemporality.CUMULATIVE)
  // A long interval: the one export is the forceFlush below.
  const reader = new PeriodicExportingMetricReader({ exporter, exportIntervalMillis: 60_000 })
  const provider = new MeterProvider({ readers: [reader] })
  const db = new Semaphore(2)
  const perKey = new RateLimiter({ limit: 5, windowMs: 1_000 })
  const stop = observeSluice({ db, perKey }, provider.getMeter('sluice-demo'))
  const query = () => new Promise((resolve) => setTimeout(resolve, 10))
  await Promise.all(Array.from({ length: 8 }, () => db.run(query)))
  for (let i = 0; i < 8; i++) perKey.tryTake('api-key-1')
  await provider.forceFlush()
  for (const { scopeMetrics } of exporter.getMetrics()) {
    for (const { metrics } of scopeMetrics) {
      for (const { descriptor, dataPoints } of metrics) {
        for (const { attributes, value } of dataPoints) {
          const labels = Object.values(attributes).join(' ')
          console.log(`${descriptor.name}{${labels}} ${Math.round(value * 1000) / 1000}`)
        }
      }
    }
  }
  stop()
  await provider.shutdown()
}

if (process.argv[1] !== undefined && import.meta.url === pathToFileURL(process.argv[1]).href) await demo()
