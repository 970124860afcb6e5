// The best of `repeats` runs of `measure` (each resolving with operations per
// second), with every run kept as raw data for the results file.
export async function bestOf(repeats, measure) {
  const runs = []
  for (let i = 0; i < repeats; i++) runs.push(await measure())
  return { opsPerSecond: Math.max(...runs), runs }
}
