import { execFile } from 'node:child_process'
import { fileURLToPath } from 'node:url'
import { promisify } from 'node:util'
import { MeterProvider, MetricReader, type DataPoint } from '@opentelemetry/sdk-metrics'
import { describe, expect, it } from 'vitest'
import { Mutex, Semaphore, TimeoutError, TokenBucket } from 'sluice'
import { observeSluice } from '../examples/otel-metrics.mjs'

const example = fileURLToPath(new URL('../examples/otel-metrics.mjs', import.meta.url))

/** A reader that collects on demand, as an exporter's would. */
class TestReader extends MetricReader {
  protected async onForceFlush(): Promise<void> {}
  protected async onShutdown(): Promise<void> {}
}

/** Every data point collected now, as `name{primitive[ statistic]}` -> value. */
async function collect(reader: TestReader): Promise<Map<string, number>> {
  const { resourceMetrics, errors } = await reader.collect()
  expect(errors).toEqual([])
  const points = new Map<string, number>()
  for (const { metrics } of resourceMetrics.scopeMetrics) {
    for (const { descriptor, dataPoints } of metrics) {
      for (const { attributes, value } of dataPoints as DataPoint<number>[]) {
        points.set(`${descriptor.name}{${Object.values(attributes).join(' ')}}`, value)
      }
    }
  }
  return points
}

describe('examples/otel-metrics.mjs', () => {
  it('exports each primitive’s metrics() as OpenTelemetry counters and gauges, read at every collection', async () => {
    const reader = new TestReader()
    const provider = new MeterProvider({ readers: [reader] })
    const db = new Semaphore(1)
    const lock = new Mutex()
    const bucket = new TokenBucket({ capacity: 1, refillPerSecond: 0.001 })
    const stop = observeSluice({ db, lock, bucket }, provider.getMeter('test'))
    try {
      const held = db.tryAcquire()!
      await expect(db.acquire({ timeout: 5 })).rejects.toBeInstanceOf(TimeoutError)
      const waiting = db.acquire()
      bucket.tryTake()
      bucket.tryTake()
      let points = await collect(reader)
      expect(points.get('sluice.acquired{db}')).toBe(1)
      expect(points.get('sluice.timed_out{db}')).toBe(1)
      expect(points.get('sluice.waiting{db}')).toBe(1)
      expect(points.get('sluice.in_use{db}')).toBe(1)
      expect(points.get('sluice.acquired{lock}')).toBe(0)
      expect(points.get('sluice.acquired{bucket}')).toBe(1)
      expect(points.get('sluice.refused{bucket}')).toBe(1)
      expect(points.has('sluice.in_use{bucket}')).toBe(false)
      expect(points.get('sluice.wait_time{db max}')).toBe(0)
      setTimeout(() => held.release(), 20)
      ;(await waiting).release()
      points = await collect(reader)
      expect(points.get('sluice.acquired{db}')).toBe(2)
      expect(points.get('sluice.waiting{db}')).toBe(0)
      expect(points.get('sluice.in_use{db}')).toBe(0)
      expect(points.get('sluice.wait_time{db max}')).toBeGreaterThanOrEqual(15)
    } finally {
      stop()
      await provider.shutdown()
    }
  })

  it('runs as a demo that prints one collection and exits by itself', async () => {
    const { stdout } = await promisify(execFile)(process.execPath, [example], { timeout: 20_000 })
    expect(stdout).toMatch(/^sluice\.acquired\{db\} 8$/m)
    expect(stdout).toMatch(/^sluice\.refused\{perKey\} 3$/m)
  })
})
