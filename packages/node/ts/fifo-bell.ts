/**
 * A named primitive's doorbell for one thread: a FIFO in the primitive's
 * shared-memory directory, rung by native code in whichever process grants
 * one of this thread's waits (docs/design/cross-process.md §2.2).
 *
 * `Atomics.waitAsync` cannot serve across processes: N-API can only wrap the
 * shared mapping as a plain ArrayBuffer, on which `Atomics.wait` throws and
 * `Atomics.notify` wakes nobody. A FIFO is the one kernel object a Node event
 * loop can watch (`net.Socket({ fd })`) with no thread of ours and no polling.
 * The bytes carry nothing: a ring only says "collect".
 */
import { Socket } from 'node:net'

export class FifoBell {
  /** Opens a new fd on this thread's FIFO (a `dup`; the socket owns and closes it). */
  readonly #open: () => number
  #socket: Socket | undefined
  #onRing: () => void = ignore

  constructor(open: () => number) {
    this.#open = open
  }

  /**
   * Calls `onRing` on every ring from now on, and keeps the event loop alive
   * until `idle`. A ring made before this call is not lost: its byte waits in
   * the FIFO (native code keeps the FIFO open, so it never reads as closed).
   */
  listen(onRing: () => void): void {
    this.#onRing = onRing
    let socket = this.#socket
    if (socket === undefined) {
      socket = this.#socket = new Socket({ fd: this.#open(), readable: true, writable: false })
      socket.on('data', () => this.#onRing())
      // A read error on our own FIFO (it was unlinked and the fd closed under
      // us, say) must not crash the process: the waits are still collected by
      // the safety poll, and the next `listen` opens a new socket.
      socket.on('error', () => {
        this.#socket = undefined
      })
    }
    socket.ref()
  }

  /** No waits left: rings are still read (and ignored), but keep nothing alive. */
  idle(): void {
    this.#socket?.unref()
  }

  /** Closes the socket (the primitive was unlinked, or the thread is done with it). */
  close(): void {
    this.#socket?.destroy()
    this.#socket = undefined
  }
}

function ignore(): void {}
