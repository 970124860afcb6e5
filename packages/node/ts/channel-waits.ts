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
  pop(): T
  leftover(): T
}

/** A queued `send`: a grant holds room for its message. */
export class PendingSend<T> extends QueuedWait<void> {
  constructor(
    readonly held: HeldOps<T>,
    readonly message: Message,
  ) {
    super()
  }

  protected granted(): void {
    this.held.push(this.message)
  }

  protected withdrawn(): never {
    throw Errors.channelClosed()
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
