/**
 * CLOCK_MONOTONIC in milliseconds, as `process.hrtime()` reads it: the same
 * reading in every thread and every process of the machine (not
 * `performance.timeOrigin + now()`: each thread's timeOrigin is its own start
 * on the wall clock, which may have stepped in between). Metrics' wait times
 * and circuit breakers' deadlines use it. It is also the cheaper read here:
 * ~35 ns against ~52 ns for `performance.now()` (which reads uv_hrtime too,
 * from this thread's start), and V8 drops `hrtime`'s array once the call is
 * inlined; a queued wait reads the clock twice.
 */
const hrtime = process.hrtime

/** Milliseconds since an arbitrary zero, on CLOCK_MONOTONIC. */
export function monotonicMs(): number {
  const [seconds, nanos] = hrtime()
  return seconds * 1e3 + nanos / 1e6
}
