// Benchmark task for piscina and WorkerPool: trivial (a number) or CPU-bound
// ({ work: n } runs n rounds of xorshift). A fixed amount of work, not a
// spin until a deadline: a deadline passes while a thread is descheduled, so
// more threads than cores would look like more throughput.
export default function task(input) {
  if (typeof input === 'number') return input * 2
  let x = 2463534242
  for (let i = 0; i < input.work; i++) {
    x ^= x << 13
    x ^= x >>> 17
    x ^= x << 5
  }
  return x
}
