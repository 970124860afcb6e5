// Benchmark task for piscina and WorkerPool: trivial (a number) or CPU-bound
// ({ spin: ms } busy-loops for that long).
export default function task(input) {
  if (typeof input === 'number') return input * 2
  const until = performance.now() + input.spin
  let x = 0
  while (performance.now() < until) x++
  return x
}
