// A semaphore's state while one thread alone holds it: the core's algorithm
// (crates/core/src/semaphore.rs) step for step, in plain JavaScript. A native
// call costs ~20-40 ns and a wait crosses N-API several times (queue, grant,
// doorbell); here an uncontended acquire is a few field updates, a queued wait
// is linked into a list with no native memory, and a release hands permits
// straight to the waits it grants.
//
// Nothing here is reachable from another thread: `Semaphore` keeps this state
// until it is first shared (its `handle` read), then moves it, with the queued
// waits in order, into a native semaphore (`NativeSemaphore.adopt`) and drops
// it. The counts mirror the core's: `available` is the fast path's free count
// (0 while anyone waits or permits are owed: the core's QUEUED flag),
// `reserved` the permits set aside for the head, `owed` the debt of a
// semaphore made with a negative value, `held` the permits this thread holds
// (what the native attachment counts). Available, reserved and held never add
// up to more than the capacity (the rest are held by nobody, as
// `internal.create` makes them), which is why `release` checks `held` only.
import { CLOSED, DONE, NOT_NOW, QUEUED, QUEUE_FULL, TOO_HEAVY, type Outcome } from './native.js'
import type { Fairness } from './validate.js'

/**
 * A wait as the local queue links it (a semaphore's `SemaphoreWait`). It is
 * in a queue exactly when it has a `prev` or is the queue's head.
 */
export interface LocalWait {
  readonly weight: number
  /**
   * The wait's priority while it stands in a local queue. The field is
   * reused: once the wait moves to native memory, its token (`Semaphore`
   * assigns tokens at the move), so a wait carries one number, not two.
   */
  key: number
  /** Neighbours in the queue (`next` also chains waits being settled). */
  prev: LocalWait | undefined
  next: LocalWait | undefined
  // Each ending is told the semaphore's `owner` (the object the wait queued
  // on), so a wait, of which thousands may be pending, need not keep it.
  onGrant(owner: unknown): void
  onWithdrawn(owner: unknown): void
  onRefused(owner: unknown): void
}

/** What `NativeSemaphore.adopt` takes (but the triples), and the waits to queue there, in order. */
export interface LocalState {
  readonly capacity: number
  readonly maxWaiters: number | undefined
  readonly available: number
  readonly owed: number
  readonly held: number
  readonly reserved: number
  /** The mode the native semaphore takes: kept here, served FIFO (a valid eventually fair schedule). */
  readonly fairness: Fairness
  /** In the order they are served, unlinked, each `key` still its priority. */
  readonly waits: LocalWait[]
}

export class LocalSemaphore {
  capacity: number
  available: number
  reserved = 0
  owed: number
  held = 0
  closed = false
  waiting = 0
  /**
   * `waiting > 0 || owed > 0`, kept as one field: the uncontended `release`
   * reads it on every call (one load and test where two cost it ~0.3 ns of
   * a 5 ns `tryAcquire().release()`). Only the core's QUEUED flag in
   * another form: while set, `available` stays 0 and releases go the long way.
   */
  blocked = false
  readonly maxWaiters: number
  /**
   * What the native semaphore will be once shared. Here it is always served
   * FIFO: one thread gains nothing from barging, and FIFO is one of the
   * schedules eventual fairness allows.
   */
  fairness: Fairness = 'fifo'
  /** The object this state backs (a `Semaphore`), handed to its waits as they end. */
  owner: unknown = undefined
  #head: LocalWait | undefined = undefined
  #tail: LocalWait | undefined = undefined
  /** At least the largest weight queued (exact after a scan, 0 when empty): as the core's `heaviest`. */
  #heaviest = 0

  /**
   * `capacity` permits, `available` of them free (the rest held by nobody),
   * `owed` more owed (only with none available), at most `maxWaiters` queued.
   */
  constructor(capacity: number, maxWaiters = Number.POSITIVE_INFINITY, available = capacity, owed = 0) {
    this.capacity = capacity
    this.maxWaiters = maxWaiters
    this.available = available
    this.owed = owed
    this.blocked = owed > 0
  }

  /**
   * The uncontended `tryAcquire`: takes `n` permits if they are free and the
   * semaphore open; false decides nothing (ask `tryAcquire` why). A boolean,
   * not an outcome code: a code is a property of another module's exports,
   * read at every use, where `true` costs nothing.
   */
  takeFree(n: number): boolean {
    // `available` is 0 while anyone waits or permits are owed.
    if (n <= this.available && !this.closed) {
      this.available -= n
      this.held += n
      return true
    }
    return false
  }

  /** The core's `try_acquire`, answered as the binding's `semTryAcquire`. */
  tryAcquire(n: number): Outcome {
    if (this.takeFree(n)) return DONE
    if (this.closed) return CLOSED
    return n > this.capacity ? TOO_HEAVY : NOT_NOW
  }

  /**
   * The core's `acquire_with_priority`, as `semAcquire`. QUEUED means the
   * caller must `push` its wait now, before anything else runs.
   */
  acquire(n: number, priority: number): Outcome {
    if (n > this.capacity) return TOO_HEAVY
    if (this.closed) return CLOSED
    if (!this.blocked && this.available >= n) {
      this.available -= n
      this.held += n
      return DONE
    }
    if (this.waiting === 0 && this.maxWaiters === 0) return QUEUE_FULL
    if (!this.blocked) {
      // Take what is there, reserved for this request (the head to be).
      this.reserved = this.available
      this.available = 0
    }
    // Overtaking: the permits reserved for the head belong to whoever stands first.
    const head = this.#head
    if (head !== undefined && head.key < priority && this.reserved >= n) {
      this.reserved -= n
      this.held += n
      return DONE
    }
    if (this.waiting >= this.maxWaiters) return QUEUE_FULL
    return QUEUED
  }

  /** Queues `wait` after every wait of its priority or higher (after `acquire` answered QUEUED). */
  push(wait: LocalWait): void {
    let after = this.#tail
    while (after !== undefined && after.key < wait.key) after = after.prev
    const before = after === undefined ? this.#head : after.next
    wait.prev = after
    wait.next = before
    if (after === undefined) this.#head = wait
    else after.next = wait
    if (before === undefined) this.#tail = wait
    else before.prev = wait
    this.waiting++
    this.blocked = true
    if (wait.weight > this.#heaviest) this.#heaviest = wait.weight
  }

  /** Gives back `n` permits this thread holds; grants the waits they complete. */
  release(n: number): void {
    // One check inline, its error out of line: this is on every uncontended
    // `release`, which V8 inlines only while it stays small. It is the
    // core's ReleaseError check too: free, reserved and held permits never
    // add up to more than the capacity (`releaseUnowned` counts the held),
    // so giving back no more than is held never makes more than the capacity.
    if (n > this.held) this.#refuseRelease(n)
    this.held -= n
    if (!this.blocked) this.available += n
    else this.releaseLocked(n)
  }

  #refuseRelease(n: number): never {
    throw new RangeError(`cannot release ${n} permits: this thread holds ${this.held}`)
  }

  /**
   * Frees `n` permits nobody holds (async-mutex's unchecked release): it is
   * refused if, with those this thread holds, more than the capacity would exist.
   */
  releaseUnowned(n: number): void {
    if (this.available + this.reserved + this.held + n > this.capacity) {
      throw invalidArg(new Error(`releasing ${n} permits would exceed the capacity of ${this.capacity}`), Error)
    }
    this.#give(n)
  }

  #give(n: number): void {
    if (!this.blocked) this.available += n
    else this.releaseLocked(n)
  }

  /** Adds `n` permits to the capacity, handed out as a release would. */
  addPermits(n: number): void {
    this.capacity += n
    this.releaseLocked(n)
  }

  /** Removes up to `n` free permits for good; none while anyone waits. */
  forgetPermits(n: number): number {
    if (this.blocked) return 0
    const taken = Math.min(n, this.available)
    this.available -= taken
    this.capacity -= taken
    return taken
  }

  /**
   * Gives up `n` held permits for good: the capacity shrinks, and waits now
   * too heavy for it are refused (after the grants this makes, as the
   * doorbell delivers them natively).
   */
  forgetHeld(n: number): void {
    if (n > this.held) throw invalidArg(new Error(`cannot release ${n} permits: this thread holds ${this.held}`), Error)
    this.held -= n
    const capacity = (this.capacity -= n)
    if (this.#heaviest <= capacity) return
    let refused: LocalWait | undefined, last: LocalWait | undefined
    let heaviest = 0
    for (let wait = this.#head; wait !== undefined; ) {
      const next = wait.next
      if (wait.weight > capacity) {
        this.#unlink(wait)
        if (last === undefined) refused = wait
        else last.next = wait
        last = wait
      } else if (wait.weight > heaviest) heaviest = wait.weight
      wait = next
    }
    this.#heaviest = heaviest
    if (refused === undefined) return
    last!.next = undefined
    // If the head was refused, what was reserved for it goes on to the next.
    this.releaseLocked(0)
    settle(refused, refuse, this.owner)
  }

  /** Takes `wait` out of the queue, if it stands there; the caller then `releaseLocked(0)`s. */
  remove(wait: LocalWait): boolean {
    if (wait.prev === undefined && this.#head !== wait) return false
    this.#unlink(wait)
    return true
  }

  /** Closes: every queued wait is withdrawn (after the state is final). */
  close(): void {
    if (this.closed) return
    this.closed = true
    const withdrawn = this.#head
    for (let wait = withdrawn; wait !== undefined; wait = wait.next) wait.prev = undefined
    this.#head = this.#tail = undefined
    this.waiting = 0
    this.blocked = this.owed > 0
    this.#heaviest = 0
    // What was reserved for the head goes back to the fast path.
    this.releaseLocked(0)
    settle(withdrawn, withdraw, this.owner)
  }

  /** Free permits (available and reserved for the head) minus those owed: `semValue`. */
  value(): number {
    return this.available + this.reserved - this.owed
  }

  /**
   * The core's `release_locked`: pays the debt from `n`, then hands `n` and
   * the head's reserve to the queue in order, and frees the rest. The waits
   * it grants are settled once the counts are final, so that their callbacks
   * (which may release or acquire again) see a consistent semaphore.
   */
  releaseLocked(n: number): void {
    if (this.owed > 0) {
      const paid = Math.min(n, this.owed)
      this.owed -= paid
      if (this.owed === 0) this.blocked = this.waiting > 0
      n -= paid
    }
    n += this.reserved
    this.reserved = 0
    let granted: LocalWait | undefined, last: LocalWait | undefined
    for (let head = this.#head; head !== undefined; head = this.#head) {
      if (n < head.weight) {
        this.reserved = n
        n = 0
        break
      }
      n -= head.weight
      this.#unlink(head)
      this.held += head.weight
      if (last === undefined) granted = head
      else last.next = head
      last = head
    }
    if (!this.blocked) this.available += n
    if (granted === undefined) return
    last!.next = undefined
    settle(granted, grant, this.owner)
  }

  /** The queued waits, in the order they are served (a copy). */
  queuedWaits(): LocalWait[] {
    const waits: LocalWait[] = []
    for (let wait = this.#head; wait !== undefined; wait = wait.next) waits.push(wait)
    return waits
  }

  /** Empties the queue for the move to native memory: the state and waits, in order. */
  takeState(): LocalState {
    const waits = this.queuedWaits()
    const state: LocalState = {
      capacity: this.capacity,
      maxWaiters: this.maxWaiters === Number.POSITIVE_INFINITY ? undefined : this.maxWaiters,
      available: this.available,
      owed: this.owed,
      held: this.held,
      reserved: this.reserved,
      fairness: this.fairness,
      waits,
    }
    for (const wait of waits) wait.prev = wait.next = undefined
    this.#head = this.#tail = undefined
    this.waiting = 0
    this.blocked = this.owed > 0
    return state
  }

  #unlink(wait: LocalWait): void {
    const { prev, next } = wait
    if (prev === undefined) this.#head = next
    else prev.next = next
    if (next === undefined) this.#tail = prev
    else next.prev = prev
    wait.prev = wait.next = undefined
    if (--this.waiting === 0) {
      this.#heaviest = 0
      this.blocked = this.owed > 0
    }
  }
}

const grant = (wait: LocalWait, owner: unknown): void => wait.onGrant(owner)
const withdraw = (wait: LocalWait, owner: unknown): void => wait.onWithdrawn(owner)
const refuse = (wait: LocalWait, owner: unknown): void => wait.onRefused(owner)

/** Ends each wait of a chain linked by `next` (detached from any queue). */
function settle(first: LocalWait | undefined, end: (wait: LocalWait, owner: unknown) => void, owner: unknown): void {
  for (let wait = first; wait !== undefined; ) {
    const next = wait.next
    wait.next = undefined
    end(wait, owner)
    wait = next
  }
}

/** An error as the binding throws for a core refusal (napi-rs's InvalidArg status as `code`). */
function invalidArg(error: Error, type: new (message: string) => Error): Error {
  // The raw hot calls throw plain RangeErrors; the napi-rs methods add the status.
  if (type === Error) (error as Error & { code: string }).code = 'InvalidArg'
  return error
}
