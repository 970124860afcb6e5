/**
 * A channel's queued waits. A granted send holds room for its message; a
 * granted receive holds a message; a close withdraws both (a receive then
 * takes what is left, if anything). The steps are the channel's own
 * (`HeldOps`, one object per channel), so a wait costs one object.
 */
import { Errors } from './errors.js'
import type { Message } from './native.js'
import { QueuedWait } from './wait.js'

/** A channel's steps for a granted or withdrawn wait. */
export interface HeldOps<T> {
  push(message: Message): void
  pushMany(messages: readonly Message[] | Float64Array): void
  pop(): T
  leftover(): T
}

/** A queued send: a grant holds room for what it sends. */
export abstract class QueuedSend<T> extends QueuedWait<void> {
  constructor(readonly held: HeldOps<T>) {
    super()
  }

  /** Sends into the room this wait holds (granted, or free when it was queued). */
  abstract send(): void

  protected granted(): void {
    this.send()
  }

  protected withdrawn(): never {
    throw Errors.channelClosed()
  }
}

/** A queued `send`: a grant holds room for its message. */
export class PendingSend<T> extends QueuedSend<T> {
  constructor(
    held: HeldOps<T>,
    readonly message: Message,
  ) {
    super(held)
  }

  send(): void {
    this.held.push(this.message)
  }
}

/** Part of a `sendMany` that waits for room for all its messages at once. */
export class PendingSendMany<T> extends QueuedSend<T> {
  constructor(
    held: HeldOps<T>,
    readonly messages: readonly Message[] | Float64Array,
  ) {
    super(held)
  }

  send(): void {
    this.held.pushMany(this.messages)
  }
}

/** A queued `recv`: a grant holds a message for it. */
export class PendingRecv<T> extends QueuedWait<T> {
  constructor(readonly held: HeldOps<T>) {
    super()
  }

  protected granted(): T {
    return this.held.pop()
  }

  protected withdrawn(): T {
    return this.held.leftover()
  }
}
