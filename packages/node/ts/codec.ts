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
