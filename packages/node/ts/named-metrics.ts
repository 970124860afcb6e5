// The `metrics()` counters of a named primitive, in a companion block in
// shared memory: `<name>.m` in the primitive's directory (a sluice-shm words
// segment, kind 5), so that `metrics()` in any process counts every process.
// User names cannot contain '.', so no primitive can take a companion's name.
//
// The first opener creates the block, zeroed; it lives as long as some
// process has it open (as the primitive does), and `unlink` of the primitive
// unlinks it too. The segment compares the layout at every open:
//
//   bytes  metricsBytes(slots, lanes)
//   p1     LAYOUT, the layout's version
//   p2     slots: a named semaphore's owner slots (per-thread counters)
//   p3     lanes: process lanes (the waiting gauge of buckets and limiters)
//   p4..p7 0
import { LanedMetrics, laneOffset, metricsBytes, SlottedMetrics } from './metrics.js'
import { callNative } from './named.js'
import { NativeSharedWords } from './native.js'

/** Version of the companion's layout: a later sluice with another one refuses to mix with it. */
const LAYOUT = 1
/** A words segment's process slots (crates/shm words.rs `max_procs`): one lane each. */
export const LANES = 256

/** The companion block of `name`: its name (a suffix no user name can have), size and parameters. */
export function companionOf(name: string, slots: number, lanes: number): { name: string; bytes: number; params: number[] } {
  return { name: `${name}.m`, bytes: metricsBytes(slots, lanes), params: [LAYOUT, slots, lanes, 0, 0, 0, 0] }
}

function open(caller: string, name: string, dir: string | undefined, slots: number, lanes: number): NativeSharedWords {
  const block = companionOf(name, slots, lanes)
  return callNative(caller, name, () => NativeSharedWords.open(block.name, block.bytes, block.params, dir))
}

/**
 * A named semaphore's metrics for this thread: per-thread counters in its
 * owner slot (`slot`, below `owners`), unique machine-wide while it holds it.
 */
export function openSemaphoreMetrics(caller: string, name: string, dir: string | undefined, owners: number, slot: number): SlottedMetrics {
  const native = open(caller, name, dir, owners, 0)
  return new SlottedMetrics(callNative(caller, name, () => native.buffer()), owners, slot)
}

/**
 * A named bucket's or limiter's metrics for this thread: the atomic
 * counters, and the waiting gauge in this process's lane.
 */
export function openLanedMetrics(caller: string, name: string, dir: string | undefined): LanedMetrics {
  const native = open(caller, name, dir, 0, LANES)
  const lane = native.procSlot
  callNative(caller, name, () => native.claimLane(laneOffset(lane)))
  const buffer = callNative(caller, name, () => native.buffer())
  return new LanedMetrics(buffer, LANES, lane, () => native.liveProcs())
}

/** Unlinks `name`'s companion, if any; before the primitive, so a new primitive never meets old counts. */
export function unlinkMetrics(caller: string, name: string, dir: string | undefined): void {
  callNative(caller, name, () => NativeSharedWords.unlink(companionOf(name, 0, 0).name, dir))
}
