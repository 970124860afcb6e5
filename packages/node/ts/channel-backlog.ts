import type { Message } from './native.js'

/** A backlog entry: a message that failed to decode, by its error. */
class Undecodable {
  constructor(readonly error: unknown) {}
}

/**
 * Messages a `recvMany` batch took from the channel but did not return,
 * because one before them failed to decode, and that one's error: the next
 * receives on the same `Channel` object deliver them in order, before
 * anything still queued, so a bad message costs only itself.
 */
export class Backlog {
  #entries: (Message | Undecodable)[] = []
  /** The next entry to deliver; the array empties once all are delivered. */
  #next = 0

  get isEmpty(): boolean {
    return this.#next === this.#entries.length
  }

  /**
   * Decodes the `count` messages of a native batch (`batch[1..=count]`) onto
   * `into`, up to the first that fails: that one's error and the messages
   * after it go to the backlog, or the error is thrown now if `into` is
   * still empty.
   */
  decodeBatch<T>(batch: readonly unknown[], count: number, into: T[], decode: (message: Message) => T): T[] {
    for (let i = 1; i <= count; i++) {
      let value: T
      try {
        value = decode(batch[i] as Message)
      } catch (error) {
        if (into.length > 0) this.#entries.push(new Undecodable(error))
        for (let rest = i + 1; rest <= count; rest++) this.#entries.push(batch[rest] as Message)
        if (into.length === 0) throw error
        return into
      }
      into.push(value)
    }
    return into
  }

  /**
   * Up to `max` values from the (non-empty) backlog, stopping before an
   * error; an error at the front is thrown, and counts as delivered.
   *
   * Each entry is taken before it is decoded, and the fields are read afresh
   * after each decode: a decode that receives from its own channel takes the
   * next entry (or empties the backlog), and nothing is delivered twice.
   */
  take<T>(max: number, decode: (message: Message) => T): T[] {
    const values: T[] = []
    try {
      while (values.length < max && !this.isEmpty) {
        const entry = this.#entries[this.#next++]!
        if (entry instanceof Undecodable) {
          if (values.length === 0) throw entry.error
          // Put back (no user code ran since it was taken): the next receive throws it.
          this.#next--
          break
        }
        try {
          values.push(decode(entry))
        } catch (error) {
          if (values.length === 0) throw error
          // Thrown by the next receive, before what is left.
          this.#entries.splice(this.#next, 0, new Undecodable(error))
          break
        }
      }
    } finally {
      if (this.isEmpty) {
        this.#entries = []
        this.#next = 0
      }
    }
    return values
  }
}
