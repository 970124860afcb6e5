import { keepAliveInFlight } from './in-flight.js'
import { markAsUntransferable } from 'node:worker_threads'
import { Backlog } from './channel-backlog.js'
import { codecs, encode, type Codec, type CodecName } from './codec.js'
import { NumberBatches, toFloat64s } from './channel-numbers.js'
import { Doorbell, nextToken } from './doorbell.js'
import { ClosedError, Errors } from './errors.js'
import {
  attachById,
  chanPopHeld,
  chanPushHeld,
  chanQueueRecv,
  chanQueueSend,
  chanRecv,
  chanRecvMany,
  chanSend,
  chanSendMany,
  chanSendNumbers,
  chanTakeGranted,
  chanClosed,
  CLOSED,
  DONE,
  DOORBELL_SLOTS,
  MAX_CHANNEL_CAPACITY,
  NativeChannel,
  NOT_NOW,
  type FastHandle,
  type Message,
  type Received,
} from './native.js'
import { advance, currentSlab, slabOffset } from './receive-slab.js'
import { kAttach } from './symbols.js'
import { show, validateInteger, validateOptions } from './validate.js'
import { channelClose, channelRecv, channelSend, traceWait } from './diagnostics.js'
import { enqueue, validateWaitOptions, type Queue, type WaitOptions } from './wait.js'
import { PendingRecv, PendingSend, type HeldOps } from './channel-waits.js'

export type { WaitOptions } from './wait.js'

export interface ChannelOptions<T> {
  /**
   * Most messages queued at once; `send` waits for room beyond it. An integer
   * from 1 to `Channel.MAX_CAPACITY` (2^24 = 16,777,216): the queue is
   * allocated here, 24 bytes a message, so the bound caps it at 384 MiB.
   * Beyond it, or if the memory cannot be had, the constructor throws a
   * `RangeError`.
   */
  capacity: number
  /** How values become bytes: a built-in codec's name (default `'v8'`) or your own. */
  codec?: CodecName | Codec<T>
  /** Largest encoded message, in bytes (default 1 MiB); larger sends throw a `RangeError`. */
  maxMessageBytes?: number
}

/** A cloneable description of a channel, for `Channel.from` in another thread. */
export interface ChannelHandle {
  readonly kind: 'sluice:Channel'
  readonly id: number
  readonly doorbells: SharedArrayBuffer
  /** The built-in codec's name, or `'custom'` (pass the codec to `Channel.from`). */
  readonly codec: CodecName | 'custom'
  readonly maxMessageBytes: number
}

const kDefaultOptions = { codec: 'v8' as const, maxMessageBytes: 1024 * 1024 }

/**
 * A bounded channel shared by threads: sends wait for room (backpressure),
 * receives wait for messages, both FIFO across threads and cancellable.
 * Values cross as bytes through a codec; numbers cross as numbers.
 */
export class Channel<T = unknown> implements AsyncIterable<T> {
  readonly #native: NativeChannel
  readonly #fast: FastHandle
  readonly #bells: SharedArrayBuffer
  /** What `enqueue` needs: this thread's doorbell and the native withdraw. */
  readonly #queue: Queue
  /** What a granted or withdrawn send or receive runs (one object per channel, not per wait). */
  readonly #held: HeldOps<T>
  readonly #codec: Codec<T>
  readonly #codecName: CodecName | 'custom'
  readonly #maxMessageBytes: number
  /** Fixed for a channel's life; read once, as numeric batches size by it. */
  readonly #capacity: number
  /** What a batch took but could not return yet (see `recvMany`). */
  readonly #backlog = new Backlog()
  readonly #decode = (message: Message): T => this.#codec.decode(message)

  /** The largest `capacity` (2^24): see `ChannelOptions.capacity`. */
  static readonly MAX_CAPACITY: number = MAX_CHANNEL_CAPACITY

  constructor(options: ChannelOptions<T>)
  /** @internal adopts a native channel already attached to this thread (see `from`) */
  constructor(attach: typeof kAttach, attached: Attached<T>)
  constructor(options: ChannelOptions<T> | typeof kAttach, attached?: Attached<T>) {
    const opts = options === kAttach ? { codec: attached!.codec } : validateOptions<ChannelOptions<T>>(options, 'options')
    const codec = opts.codec ?? kDefaultOptions.codec
    if (typeof codec === 'string') {
      if (!Object.hasOwn(codecs, codec)) {
        throw new TypeError(`options.codec must be one of ${Object.keys(codecs).join(', ')} or a codec, got ${show(codec)}`)
      }
      this.#codec = codecs[codec] as Codec<T>
      this.#codecName = codec
    } else if (typeof codec?.encode === 'function' && typeof codec?.decode === 'function') {
      this.#codec = codec
      this.#codecName = 'custom'
    } else {
      throw new TypeError(`options.codec must be a codec name or { encode, decode }, got ${show(codec)}`)
    }
    if (options === kAttach) {
      ;({ native: this.#native, bells: this.#bells, maxMessageBytes: this.#maxMessageBytes } = attached!)
    } else {
      const capacity = validateInteger(options.capacity, 'options.capacity', 1, MAX_CHANNEL_CAPACITY)
      this.#maxMessageBytes = validateInteger(
        options.maxMessageBytes ?? kDefaultOptions.maxMessageBytes,
        'options.maxMessageBytes',
        0,
        2 ** 32 - 1,
      )
      this.#native = new NativeChannel(capacity)
      this.#bells = new SharedArrayBuffer(DOORBELL_SLOTS * Int32Array.BYTES_PER_ELEMENT)
    }
    const native = this.#native
    this.#capacity = native.capacity
    const fast = (this.#fast = native.fastHandle() as FastHandle)
    const waitable = { slot: native.slot, takeGranted: () => chanTakeGranted(fast), isClosed: () => chanClosed(fast) }
    this.#queue = {
      doorbell: new Doorbell(waitable, new Int32Array(this.#bells)),
      withdraw: (token) => native.cancel(token),
    }
    this.#held = {
      push: (message) => this.#pushHeld(message),
      pop: () => this.#popHeld(),
      leftover: () => this.#leftover(),
    }
  }

  /**
   * The channel that `handle` describes, attached to this thread. A channel
   * made with a custom codec needs the same codec here.
   */
  static from<T = unknown>(handle: ChannelHandle, options?: { codec?: Codec<T> }): Channel<T> {
    const { kind, id, doorbells, codec, maxMessageBytes } = validateOptions<ChannelHandle>(handle, 'handle')
    if (
      kind !== 'sluice:Channel' ||
      typeof id !== 'number' ||
      !(doorbells instanceof SharedArrayBuffer) ||
      doorbells.byteLength !== DOORBELL_SLOTS * Int32Array.BYTES_PER_ELEMENT ||
      typeof maxMessageBytes !== 'number' ||
      typeof codec !== 'string'
    ) {
      throw new TypeError(`handle must be a Channel handle (channel.handle), got ${show(handle)}`)
    }
    const custom = validateOptions<{ codec?: Codec<T> }>(options, 'options').codec
    if (codec === 'custom' && custom === undefined) {
      throw new TypeError('options.codec is required: this channel was made with a custom codec')
    }
    const native = attachById((id) => NativeChannel.fromId(id), id, 'channel')
    return new Channel<T>(kAttach, { native, bells: doorbells, maxMessageBytes, codec: custom ?? (codec as CodecName) })
  }

  get handle(): ChannelHandle {
    keepAliveInFlight(this)
    return {
      kind: 'sluice:Channel',
      id: this.#native.id,
      doorbells: this.#bells,
      codec: this.#codecName,
      maxMessageBytes: this.#maxMessageBytes,
    }
  }

  /** Most messages queued at once. */
  get capacity(): number {
    return this.#native.capacity
  }

  /** Messages queued right now. */
  get length(): number {
    return this.#native.length
  }

  /** Whether `close` has run, in any thread. */
  get closed(): boolean {
    return chanClosed(this.#fast)
  }

  /**
   * Sends now if there is room and no sender is waiting ahead.
   *
   * @returns whether it was sent
   * @throws {ClosedError} once the channel is closed
   * @throws {TypeError | RangeError} if the codec refuses the value or it is
   *   larger than `maxMessageBytes`; the channel is unchanged
   */
  trySend(value: T): boolean {
    const outcome = chanSend(this.#fast, this.#encode(value))
    if (outcome === NOT_NOW) return false
    if (outcome === CLOSED) throw Errors.channelClosed()
    this.#queue.doorbell.deliver(outcome)
    return true
  }

  /**
   * Sends, waiting for room while the channel is full. Rejects with a
   * `ClosedError` if the channel is (or gets) closed before it is sent.
   */
  send(value: T, options?: WaitOptions): Promise<void> {
    let message: Message, signal: AbortSignal | undefined, timeout: number | undefined
    try {
      message = this.#encode(value)
      ;({ signal, timeout } = validateWaitOptions(options))
    } catch (error) {
      return Promise.reject(error)
    }
    if (signal?.aborted) return Promise.reject(signal.reason)
    return this.#send(message, signal, timeout)
  }

  /** Sends as many of `values` as fit now, in order; returns how many. */
  trySendMany(values: Iterable<T>): number {
    const messages = this.#encodeMany(values)
    if (messages.length === 0) return 0
    return this.#sendBatch(messages)
  }

  /**
   * Sends every value, in order, waiting for room as needed; one native call
   * per batch that fits. Every value is encoded (and checked) before any is
   * sent. If it rejects (abort, timeout, close), the values before the one it
   * was waiting to send have been sent.
   */
  async sendMany(values: Iterable<T>, options?: WaitOptions): Promise<void> {
    let messages = this.#encodeMany(values)
    const { signal, timeout } = validateWaitOptions(options)
    if (signal?.aborted) throw signal.reason
    let next = 0
    let copied = false
    while (next < messages.length) {
      // A batch sends at most `capacity` messages: an array's rest is cut
      // there, or every wait of a long sendMany would copy all of it.
      const rest =
        next === 0 ? messages : messages instanceof Float64Array ? messages.subarray(next) : messages.slice(next, next + this.#capacity)
      next += this.#sendBatch(rest)
      if (next < messages.length) {
        // Numbers may be in this thread's scratch array (see `toFloat64s`),
        // which the next batch encoded while this one waits would overwrite:
        // copied once, before the first wait.
        if (!copied && messages instanceof Float64Array && messages !== values) messages = messages.slice()
        copied = true
        // Aborted by user code the batch ran (a codec's decode, for a
        // receive it granted): send no more.
        if (signal?.aborted) throw signal.reason
        // Full: wait for room for the next one, then try a batch again.
        await this.#send(messages[next]!, signal, timeout)
        next++
        // Aborted since the wait was granted: send no more. (A wait queued
        // after the abort would listen to a signal that has already fired.)
        if (next < messages.length && signal?.aborted) throw signal.reason
      }
    }
  }

  /**
   * Receives now if a message is there; otherwise `undefined` (also once
   * closed and drained). Throws the codec's error for a message it cannot
   * decode; that message is gone, the ones after it stay queued.
   */
  tryRecv(): T | undefined {
    if (!this.#backlog.isEmpty) return this.#backlog.take(1, this.#decode)[0]
    const received = this.#recvNative()
    return received === undefined || received === null ? undefined : this.#deliver(received)
  }

  /**
   * Receives, waiting for a message. After `close`, receives what is left,
   * then rejects with a `ClosedError`. Rejects with the codec's error for a
   * message it cannot decode; that message is gone, the ones after it stay
   * queued.
   */
  recv(options?: WaitOptions): Promise<T> {
    let signal: AbortSignal | undefined, timeout: number | undefined
    try {
      ;({ signal, timeout } = validateWaitOptions(options))
    } catch (error) {
      return Promise.reject(error)
    }
    if (signal?.aborted) return Promise.reject(signal.reason)
    try {
      if (!this.#backlog.isEmpty) return Promise.resolve(this.#backlog.take(1, this.#decode)[0]!)
      const received = this.#recvNative()
      if (received === null) return Promise.reject(Errors.channelClosed())
      if (received !== undefined) return Promise.resolve(this.#deliver(received))
    } catch (error) {
      return Promise.reject(error)
    }
    return this.#waitRecv(signal, timeout)
  }

  /**
   * Receives up to `max` messages in one native call, waiting for the first
   * if none is there. Resolves with `[]` once the channel is closed and drained.
   *
   * A message the codec cannot decode ends the batch, and no message is lost
   * for it: the values before it are returned; the next receive on this
   * `Channel` object (`recv`, `tryRecv` or `recvMany`) throws its decode error,
   * and the messages after it, already taken from the channel, are delivered
   * by the receives after that, before anything still queued. If it is the
   * first of the batch, `recvMany` rejects with its error at once.
   *
   * A batch leaves the channel in one step: a thread that ends (or a
   * `Channel` object that is dropped) before using it loses the whole
   * batch, as with any queue without acknowledgements. `max` bounds that loss.
   */
  async recvMany(max: number, options?: WaitOptions): Promise<T[]> {
    validateInteger(max, 'max', 1, 2 ** 32 - 1)
    const { signal, timeout } = validateWaitOptions(options)
    if (signal?.aborted) throw signal.reason
    if (!this.#backlog.isEmpty) return this.#backlog.take(max, this.#decode)
    if (this.#codecName === 'number') return this.#recvNumbers(max, signal, timeout) as Promise<T[]>
    const batch = chanRecvMany(this.#fast, max)
    if (batch === null) return []
    if (batch !== undefined) {
      const count = batch[0] as number
      this.#queue.doorbell.deliver(batch, 1 + count)
      return this.#decodeBatch(batch, count, [])
    }
    try {
      const first = await this.#waitRecv(signal, timeout)
      const rest = max > 1 ? chanRecvMany(this.#fast, max - 1) : undefined
      if (rest === undefined || rest === null) return [first]
      const count = rest[0] as number
      this.#queue.doorbell.deliver(rest, 1 + count)
      return this.#decodeBatch(rest, count, [first])
    } catch (error) {
      if (error instanceof ClosedError) return []
      throw error
    }
  }

  /**
   * Receives one message natively; a byte message of up to 8 KiB lands in
   * this thread's slab (see `currentSlab`).
   */
  #recvNative(): Received | undefined | null {
    if (this.#codecName === 'number') return chanRecv(this.#fast)
    return advance(chanRecv(this.#fast, currentSlab(), slabOffset()))
  }

  #popHeldNative(): Received | null {
    if (this.#codecName === 'number') return chanPopHeld(this.#fast)
    return advance(chanPopHeld(this.#fast, currentSlab(), slabOffset()))
  }

  /** Decodes a native batch onto `into` (see `Backlog.decodeBatch`). */
  #decodeBatch(batch: readonly unknown[], count: number, into: T[]): T[] {
    // Byte messages of a batch are views over one ArrayBuffer: transferring
    // it would detach the other messages too, so, as Node does for its Buffer
    // pool, it is marked untransferable (postMessage then copies or throws).
    const first = batch[1]
    if (count > 1 && first instanceof Uint8Array) markAsUntransferable(first.buffer)
    return this.#backlog.decodeBatch(batch, count, into, this.#decode)
  }

  /** Receives until the channel is closed and drained. */
  async *[Symbol.asyncIterator](): AsyncIterator<T> {
    for (;;) {
      let value: T
      try {
        value = await this.recv()
      } catch (error) {
        if (error instanceof ClosedError) return
        throw error
      }
      yield value
    }
  }

  /**
   * Closes the channel in every thread: sends fail with `ClosedError` from
   * now on (waiting senders too); receivers get what is left, then end.
   */
  close(): void {
    this.#queue.doorbell.deliver(this.#native.close())
    if (channelClose.hasSubscribers) channelClose.publish({ channel: this })
  }

  /**
   * Encodes a batch. With the number codec the batch is a `Float64Array`,
   * which crosses into native code in one piece.
   */
  #encodeMany(values: Iterable<T>): Message[] | Float64Array {
    if (values === null || values === undefined || typeof (values as Iterable<T>)[Symbol.iterator] !== 'function') {
      throw new TypeError(`values must be iterable, got ${show(values)}`)
    }
    if (this.#codecName === 'number') return toFloat64s(values)
    return Array.from(values, (value) => this.#encode(value))
  }

  /** Sends from the front of `messages` while there is room; returns how many. */
  #sendBatch(messages: Message[] | Float64Array): number {
    const outcome =
      messages instanceof Float64Array ? chanSendNumbers(this.#fast, messages) : chanSendMany(this.#fast, messages)
    // CLOSED is the one code these return (the binding's codes are typed `number`).
    if (typeof outcome === 'number') throw Errors.channelClosed()
    this.#queue.doorbell.deliver(outcome, 1)
    return outcome[0]!
  }

  /** Numeric batches, received in chunks into one scratch array (made on first use). */
  #numbers: NumberBatches | undefined

  async #recvNumbers(max: number, signal: AbortSignal | undefined, timeout: number | undefined): Promise<number[]> {
    const numbers = (this.#numbers ??= new NumberBatches(this.#fast, this.#capacity, this.#queue.doorbell))
    const values: number[] = []
    if (!numbers.take(max, values)) return values // closed and drained
    if (values.length > 0) return values
    try {
      values.push((await this.#waitRecv(signal, timeout)) as number)
    } catch (error) {
      if (error instanceof ClosedError) return values
      throw error
    }
    if (max > 1) numbers.take(max, values)
    return values
  }

  #encode(value: T): Message {
    return encode(this.#codec, this.#codecName, this.#maxMessageBytes, value)
  }

  #deliver(received: Received): T {
    if (Array.isArray(received)) {
      this.#queue.doorbell.deliver(received, 1)
      return this.#codec.decode(received[0])
    }
    return this.#codec.decode(received)
  }

  #send(message: Message, signal: AbortSignal | undefined, timeout: number | undefined): Promise<void> {
    const outcome = chanSend(this.#fast, message)
    if (outcome === CLOSED) return Promise.reject(Errors.channelClosed())
    if (outcome !== NOT_NOW) {
      this.#queue.doorbell.deliver(outcome)
      return Promise.resolve()
    }
    const token = nextToken()
    const queued = chanQueueSend(this.#fast, token)
    try {
      if (queued === CLOSED) throw Errors.channelClosed()
      if (queued === DONE) return Promise.resolve(this.#pushHeld(message))
    } catch (error) {
      return Promise.reject(error)
    }
    const sent = enqueue(this.#queue, token, new PendingSend(this.#held, message), signal, timeout)
    // Only sends that wait are traced: the channel's hot path publishes
    // nothing. Traced once registered: the wait is queued natively already,
    // and a subscriber that receives from this channel grants it at once.
    if (channelSend.hasSubscribers) return traceWait(channelSend, { channel: this }, settling<void>, undefined, sent)
    return sent
  }

  /** Sends into the room a granted send wait holds. */
  #pushHeld(message: Message): void {
    const outcome = chanPushHeld(this.#fast, message)
    if (outcome === CLOSED) throw Errors.channelClosed()
    this.#queue.doorbell.deliver(outcome)
  }

  #waitRecv(signal: AbortSignal | undefined, timeout: number | undefined): Promise<T> {
    const token = nextToken()
    const queued = chanQueueRecv(this.#fast, token)
    try {
      if (queued === DONE) return Promise.resolve(this.#popHeld())
      if (queued === CLOSED) return Promise.resolve(this.#leftover())
    } catch (error) {
      return Promise.reject(error)
    }
    const received = enqueue(this.#queue, token, new PendingRecv(this.#held), signal, timeout)
    // Traced once registered, as a send.
    if (channelRecv.hasSubscribers) return traceWait(channelRecv, { channel: this }, settling<T>, undefined, received)
    return received
  }

  /** Receives the message a granted receive wait holds. */
  #popHeld(): T {
    const received = this.#popHeldNative()
    if (received === null) throw Errors.channelClosed()
    return this.#deliver(received)
  }

  /** Closed while (or before) waiting: what is left, if anything. */
  #leftover(): T {
    const received = this.#recvNative()
    if (received === null || received === undefined) throw Errors.channelClosed()
    return this.#deliver(received)
  }
}

/** What `traceWait` traces for a wait already registered: its promise. */
function settling<R>(promise: Promise<R>): Promise<R> {
  return promise
}

/** A native attachment of a channel, for the constructor to adopt. */
interface Attached<T> {
  native: NativeChannel
  bells: SharedArrayBuffer
  maxMessageBytes: number
  codec: CodecName | Codec<T>
}
