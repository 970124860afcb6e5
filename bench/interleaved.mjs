// Contenders that take turns: `rounds` slices each, in alternating
// order, and each row is the median slice. tinybench runs one task after the
// other, so a later task inherits the garbage and the JIT state of the
// earlier ones; for contenders a few percent apart (the cost of a check that
// is not taken) that order effect is larger than the difference measured.

/**
 * Measures `contenders` taking turns for `time` ms each in all; resolves with
 * their rows for bench/run.mjs. A contender's `fn` is one timed call
 * (awaited when it returns a promise) of `opsPerCall` operations; its
 * `before` and `after` run around each of its slices, untimed.
 */
export async function takeTurns(contenders, { time, opsPerCall = 1, rounds = 15 }) {
  const sliceMs = Math.max(time / rounds, 2)
  const slices = contenders.map(() => [])
  // Calls per slice, from a first short run of each contender (also its warm-up).
  const calls = []
  for (const contender of contenders) {
    const { ns, count } = await slice(contender, Math.max(sliceMs / 4, 1))
    calls.push(Math.max(1, Math.round((count * sliceMs * 1e6) / Math.max(ns, 1))))
  }
  for (let round = 0; round < rounds; round++) {
    const order = contenders.map((_, i) => i)
    if (round % 2 === 1) order.reverse()
    for (const i of order) {
      const { ns, count } = await slice(contenders[i], undefined, calls[i])
      slices[i].push(ns / (count * opsPerCall))
    }
  }
  return contenders.map((contender, i) => {
    const nsPerOp = median(slices[i])
    return { name: contender.name, opsPerSecond: 1e9 / nsPerOp, nsPerOp, p50Ns: nsPerOp, samples: rounds, rawSlicesNs: slices[i] }
  })
}

/** Runs `contender.fn` for `ms` (calibration) or `count` times; resolves with the time taken and the calls made. */
async function slice(contender, ms, count) {
  contender.before?.()
  try {
    let done = 0
    const start = process.hrtime.bigint()
    const limit = ms === undefined ? undefined : start + BigInt(Math.round(ms * 1e6))
    for (;;) {
      const result = contender.fn()
      if (result instanceof Promise) await result
      done++
      if (count !== undefined ? done >= count : (done & 63) === 0 && process.hrtime.bigint() >= limit) break
    }
    return { ns: Number(process.hrtime.bigint() - start), count: done }
  } finally {
    contender.after?.()
  }
}

function median(values) {
  const sorted = [...values].sort((a, b) => a - b)
  const mid = sorted.length >> 1
  return sorted.length % 2 ? sorted[mid] : (sorted[mid - 1] + sorted[mid]) / 2
}
