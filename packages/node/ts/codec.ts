import { deserialize, serialize } from 'node:v8'
import type { Message } from './native.js'
import { show } from './validate.js'

/** Turns values into what a channel carries (numbers or bytes) and back. */
export interface Codec<T> {
  encode(value: T): Message
  decode(message: Message): T
}

/** The built-in codecs, by name. */
export type CodecName = 'v8' | 'json' | 'bytes' | 'number'

const v8: Codec<unknown> = {
  // Structured-clone semantics, as postMessage (functions and symbols throw).
  encode: (value) => serialize(value),
  decode: (message) => deserialize(asBytes(message)),
}

const json: Codec<unknown> = {
  encode(value) {
    const text = JSON.stringify(value)
    if (text === undefined) throw new TypeError(`message cannot be encoded as JSON, got ${show(value)}`)
    return Buffer.from(text)
  },
  decode: (message) => JSON.parse(Buffer.from(asBytes(message)).toString('utf8')),
}

const bytes: Codec<Uint8Array> = {
  encode(value) {
    if (!(value instanceof Uint8Array)) throw new TypeError(`message must be a Uint8Array, got ${show(value)}`)
    return value
  },
  decode: (message) => asBytes(message),
}

const number: Codec<number> = {
  encode(value) {
    if (typeof value !== 'number') throw new TypeError(`message must be a number, got ${show(value)}`)
    return value
  },
  decode: (message) => {
    if (typeof message !== 'number') throw new TypeError('expected a number message')
    return message
  },
}

export const codecs: Record<CodecName, Codec<unknown>> = { v8, json, bytes: bytes as Codec<unknown>, number: number as Codec<unknown> }

function asBytes(message: Message): Uint8Array {
  if (typeof message === 'number') throw new TypeError('expected a bytes message, got a number')
  return message
}

/**
 * Encodes `value` for a channel with `codec` (named `codecName`, for
 * messages), checking the result: a number or a Uint8Array of at most
 * `maxMessageBytes`. Any failure is a TypeError or RangeError.
 */
export function encode<T>(codec: Codec<T>, codecName: string, maxMessageBytes: number, value: T): Message {
  let message: Message
  try {
    message = codec.encode(value)
  } catch (cause) {
    if (cause instanceof TypeError || cause instanceof RangeError) throw cause
    // v8.serialize throws a DataCloneError for functions and symbols, say:
    // to the caller it is a bad argument like any other.
    throw new TypeError(`message cannot be encoded by the ${codecName} codec: ${show(value)}`, { cause })
  }
  if (typeof message !== 'number') {
    if (!(message instanceof Uint8Array)) {
      throw new TypeError(`the codec must encode to a number or a Uint8Array, got ${show(message)}`)
    }
    if (message.byteLength > maxMessageBytes) {
      throw new RangeError(`message is ${message.byteLength} bytes, more than maxMessageBytes (${maxMessageBytes})`)
    }
  }
  return message
}
