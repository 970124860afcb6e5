/**
 * The clock of wait times in metrics: milliseconds on the monotonic clock
 * (uv_hrtime, which `performance.now()` reads too, from another zero).
 * `process.hrtime()` costs ~35 ns here against ~52 ns for `performance.now()`,
 * and V8 drops its array once the call is inlined; a queued wait reads the
 * clock twice, so this is ~3% of a 100,000-task `run` loop.
 */
const hrtime = process.hrtime

/** Milliseconds since an arbitrary zero, on the monotonic clock. */
export function monotonicMs(): number {
  const [seconds, nanos] = hrtime()
  return seconds * 1e3 + nanos / 1e6
}
