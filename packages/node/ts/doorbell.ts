/**
 * Cross-thread wake-ups: "native decides, JS rings".
 *
 * Native code keeps the FIFO of waiters of every thread and hands permits to
 * them directly; a call that grants waits returns the doorbell slots of the
 * threads that own them. Each shared primitive carries a `SharedArrayBuffer` of
 * doorbells (one Int32 per attached thread) that travels with its handle. To
 * ring a slot is `Atomics.add` + `Atomics.notify`; a thread with waits sits in
 * `Atomics.waitAsync` on its own slot, then collects its grants with one native
 * call. No native code ever calls into JS, so no thread-safe function can
 * outlive a worker, and no event loop is ever blocked.
 *
 * Two gaps are closed here:
 * - a pending `Atomics.waitAsync` does not keep a thread alive, so while this
 *   thread has waits a ref'd interval runs;
 * - permits returned by a dying thread are granted with no JS on the stack to
 *   ring anyone, so that interval also collects grants (every POLL_MS): no
 *   waiter sleeps for long next to a free permit.
 */

import { FifoBell } from './fifo-bell.js'
import type { WakeList } from './native.js'

/** What the doorbell needs from a native primitive. */
export interface NativeWaitable {
  /** This thread's doorbell slot for the primitive. */
  readonly slot: number
  /**
   * Tokens of this thread's waits granted since the last call (null for
   * none); a negated token is a wait refused instead (see `Wait.onRefused`).
   */
  takeGranted(): number[] | null
  /**
   * Only for an eventually fair semaphore: a ring may be a nudge, asking this
   * thread to hand the permits parked for newcomers to the queue. Returns a
   * wake list (this thread's grants collected, other threads to ring).
   */
  serve?: () => WakeList
  /** Whether the primitive was closed (which withdraws every queued wait). */
  isClosed(): boolean
}

/**
 * How one pending wait ends. Each ending is told its doorbell's `owner` (the
 * object the wait queued on), so a wait need not keep it. Endings must not
 * throw (a failure rejects the wait's promise): a doorbell settles a list of
 * waits in turn, already taken out of the pending set.
 */
export interface Wait {
  /** Native code granted it. */
  onGrant(owner: unknown): void
  /** The primitive was closed and the wait withdrawn. */
  onWithdrawn(owner: unknown): void
  /**
   * Native code took the wait out of the queue because it can never be
   * granted (a semaphore's capacity shrank below its weight). Only semaphore
   * waits can be refused.
   */
  onRefused?(owner: unknown): void
  /** Set by `Doorbell.wait`: the doorbell it was queued through. */
  doorbell?: Doorbell
}

/** Safety-net period for collecting grants that nobody rang for. */
const POLL_MS = 50

/** Pending waits of this thread, by token, across every primitive. */
const pending = new Map<number, Wait>()
/** Doorbells with pending waits, polled by the keep-alive interval. */
const active = new Set<Doorbell>()
let keepAlive: NodeJS.Timeout | undefined
let lastToken = 0

/** A token unique within this thread, naming one wait to native code. */
export function nextToken(): number {
  lastToken = lastToken === Number.MAX_SAFE_INTEGER ? 1 : lastToken + 1
  return lastToken
}

function poll(): void {
  for (const doorbell of active) doorbell.collect()
  if (pending.size === 0 && keepAlive !== undefined) {
    // Cleared lazily rather than on every 1 -> 0 transition, which churns
    // timers when waits come and go quickly.
    clearInterval(keepAlive)
    keepAlive = undefined
  }
}

/**
 * One thread's view of one primitive's doorbells: the slots of a
 * `SharedArrayBuffer` (threads of one process), or this thread's FIFO for a
 * named primitive (threads of every process; native code rings it).
 */
export class Doorbell {
  readonly #native: NativeWaitable
  readonly #bells: Int32Array | FifoBell
  readonly #slot: number
  /** What its waits queued on (a `Semaphore`; unset for a channel), handed to them as they end. */
  readonly #owner: unknown
  /** Waits of this thread queued through this doorbell. */
  #waiting = 0
  /** An `Atomics.waitAsync` is outstanding (or a collect loop is running). */
  #listening = false

  constructor(native: NativeWaitable, bells: Int32Array | FifoBell, owner?: unknown) {
    this.#native = native
    this.#bells = bells
    this.#slot = native.slot
    this.#owner = owner
  }

  /** The number of waits of this thread queued through this doorbell. */
  get size(): number {
    return this.#waiting
  }

  /**
   * Delivers what a native call granted (its wake list, see `WakeList`): this thread's
   * waits at once, other threads' doorbells rung.
   */
  deliver(wakeList: WakeList | readonly unknown[] | number, start = 0): void {
    if (wakeList === null) return
    if (typeof wakeList === 'number') {
      if (wakeList > 0) this.#grant(wakeList)
      else this.#ring(-wakeList - 1)
      return
    }
    // Every wait granted here leaves `pending` before any is settled:
    // settling runs user code (a codec's decode, a diagnostics subscriber)
    // that may cancel a later wait of this list. Native code has granted it
    // already, so its cancel must find nothing to withdraw (and it is
    // granted), or the permit, room or message its grant holds is lost.
    // (An array only for a second grant: most lists grant one wait or none.)
    let first: Wait | undefined
    let more: Wait[] | undefined
    for (let i = start; i < wakeList.length; i++) {
      const entry = wakeList[i] as number
      if (entry > 0) {
        const wait = Doorbell.#takePending(entry)
        if (wait === undefined) continue
        if (first === undefined) first = wait
        else (more ??= []).push(wait)
      } else this.#ring(-entry - 1)
    }
    if (first !== undefined) first.onGrant(first.doorbell!.#owner)
    if (more !== undefined) for (const wait of more) wait.onGrant(wait.doorbell!.#owner)
  }

  /** Registers a queued wait. */
  wait(token: number, wait: Wait): void {
    // The doorbell rides on the wait: no extra object per wait.
    wait.doorbell = this
    pending.set(token, wait)
    if (this.#waiting++ === 0) active.add(this)
    keepAlive ??= setInterval(poll, POLL_MS)
    this.#listen()
  }

  /**
   * Forgets a wait about to be withdrawn natively. Returns false if it had
   * already ended (granted or withdrawn), so the caller must do nothing.
   */
  forget(token: number): boolean {
    return this.#take(token) !== undefined
  }

  /** The waits queued through this doorbell, oldest first: a scan of the thread's, for rare calls. */
  waits(): Wait[] {
    return this.#queued().map(([, wait]) => wait)
  }

  /** This doorbell's entries of the thread's pending waits, as [token, wait], oldest first. */
  #queued(): [number, Wait][] {
    return [...pending].filter(([, wait]) => wait.doorbell === this)
  }

  /** Removes the wait `token` of this doorbell and returns it, if there is one. */
  #take(token: number): Wait | undefined {
    const wait = pending.get(token)
    if (wait === undefined || wait.doorbell !== this) return undefined
    this.#remove(token)
    return wait
  }

  #remove(token: number): void {
    pending.delete(token)
    if (--this.#waiting === 0) {
      active.delete(this)
      // A named primitive's FIFO keeps the event loop alive only while a
      // wait is pending, and a wait may end without a ring (a timeout, an
      // abort, a grant delivered here by a release of this thread).
      if (this.#bells instanceof FifoBell) this.#bells.idle()
    }
  }

  /** Collects this thread's grants and settles their waits. */
  collect(): void {
    if (this.#waiting === 0) return
    // Closed is read before the grants are taken, never after: a grant made
    // between the two reads would otherwise be withdrawn here while natively
    // it stays held (a permit lost for good). Closing is sticky and grants
    // nothing, so once `closed` reads true every grant made before the close
    // is in the list taken next, and whatever is still pending after it was
    // withdrawn by the close.
    const closed = this.#native.isClosed()
    // After the closed read, as any grant's collection; it may grant this
    // thread's waits and others' (rung here: no one else knows).
    const served = this.#native.serve?.()
    if (served != null) this.deliver(served)
    const tokens = this.#native.takeGranted()
    if (tokens !== null) {
      // Taken out of `pending` first, as in `deliver`: a cancel run by
      // another's settling must not withdraw a wait already decided.
      const waits = tokens.map((token) => Doorbell.#takePending(Math.abs(token)))
      for (let i = 0; i < waits.length; i++) {
        const wait = waits[i]
        if (wait === undefined) continue
        const owner = wait.doorbell!.#owner
        if (tokens[i]! > 0) wait.onGrant(owner)
        else if (wait.onRefused === undefined) wait.onWithdrawn(owner)
        else wait.onRefused(owner)
      }
    }
    if (this.#waiting > 0 && closed) {
      // Closing withdrew every queued wait (rare: a scan is fine).
      for (const [token] of this.#queued()) this.#take(token)?.onWithdrawn(this.#owner)
    }
  }

  #ring(slot: number): void {
    // This thread's own slot (a close, or a refusal, rings every owner):
    // collect this object's waits at once, and ring anyway, since other
    // objects of the same primitive in this thread (`from(handle)` twice)
    // listen on the same slot and may hold waits too.
    if (slot === this.#slot) this.collect()
    const bells = this.#bells
    // A named primitive's native calls ring every other owner themselves.
    if (bells instanceof FifoBell) return
    Atomics.add(bells, slot, 1)
    Atomics.notify(bells, slot)
  }

  #grant(token: number): void {
    const wait = Doorbell.#takePending(token)
    if (wait !== undefined) wait.onGrant(wait.doorbell!.#owner)
  }

  /**
   * Takes the pending wait `token` out of `pending`, if it is there. A token
   * granted here may have been queued through another Doorbell object of
   * the same primitive in this thread: it is looked up globally.
   */
  static #takePending(token: number): Wait | undefined {
    const wait = pending.get(token)
    if (wait !== undefined) wait.doorbell!.#remove(token)
    return wait
  }

  #listen(): void {
    const bells = this.#bells
    if (bells instanceof FifoBell) {
      this.#listenToFifo(bells)
      return
    }
    if (this.#listening) return
    this.#listening = true
    for (;;) {
      // Read the bell before collecting: a grant made after the collect rings
      // after this read, so the wait below sees a changed value and returns.
      const seen = Atomics.load(bells, this.#slot)
      this.collect()
      if (this.#waiting === 0) {
        this.#listening = false
        return
      }
      const result = Atomics.waitAsync(bells, this.#slot, seen)
      if (result.async) {
        void result.value.then(() => {
          this.#listening = false
          if (this.#waiting > 0) this.#listen()
        })
        return
      }
      // 'not-equal': rung between the read and the wait; go round again.
    }
  }

  #listenToFifo(bell: FifoBell): void {
    // Collect first: a grant made before the socket reads is in the list
    // already, and its ring byte waits in the FIFO (a harmless extra collect).
    this.collect()
    if (this.#waiting === 0) return
    // Idle again once the last wait ends (`#remove`).
    bell.listen(() => this.collect())
  }
}
