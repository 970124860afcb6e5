// Handing primitives to other threads by name: what WorkerPool puts in
// workerData and `sluice/worker` turns back into primitives.
import { Channel, type ChannelHandle } from './channel.js'
import { Mutex, type MutexHandle } from './mutex.js'
import { RateLimiter, type RateLimiterHandle } from './rate-limiter.js'
import { Semaphore, type SemaphoreHandle } from './semaphore.js'
import { TokenBucket, type TokenBucketHandle } from './token-bucket.js'
import { show } from './validate.js'

export type Shareable = Semaphore | Mutex | TokenBucket | RateLimiter | Channel<never>
export type ShareableHandle =
  | SemaphoreHandle
  | MutexHandle | TokenBucketHandle | RateLimiterHandle | ChannelHandle

/** The handles of `share`, checked: each value must be a sluice primitive. */
export function handlesOf(share: Record<string, unknown>): Record<string, ShareableHandle> {
  const handles: Record<string, ShareableHandle> = {}
  for (const [name, primitive] of Object.entries(share)) {
    if (
      !(
        primitive instanceof Semaphore ||
        primitive instanceof Mutex ||
        primitive instanceof TokenBucket ||
        primitive instanceof RateLimiter ||
        primitive instanceof Channel
      )
    ) {
      throw new TypeError(
        `options.share.${name} must be a Semaphore, Mutex, TokenBucket, RateLimiter or Channel, got ${show(primitive)}`,
      )
    }
    const handle = primitive.handle
    if (handle.kind === 'sluice:Channel' && handle.codec === 'custom') {
      // A codec is functions, which cannot cross to another thread.
      throw new TypeError(
        `options.share.${name} is a Channel with a custom codec, which cannot reach a worker: share a channel with a built-in codec, or pass its handle in the task and call Channel.from(handle, { codec }) there`,
      )
    }
    handles[name] = handle
  }
  return handles
}

/**
 * Attaches this thread to each handle's primitive.
 *
 * @throws {Error} naming the entry (`share.<name>`) whose primitive could not
 *   be attached, with the reason as `cause`
 */
export function fromHandles(handles: Record<string, ShareableHandle>): Record<string, unknown> {
  const shared: Record<string, unknown> = {}
  for (const [name, handle] of Object.entries(handles)) {
    try {
      shared[name] = fromHandle(handle)
    } catch (cause) {
      const reason = cause instanceof Error ? cause.message : String(cause)
      throw new Error(`a pool thread could not attach share.${name}: ${reason}`, { cause })
    }
  }
  return shared
}

function fromHandle(handle: ShareableHandle): unknown {
  switch (handle.kind) {
    case 'sluice:Semaphore':
    case 'sluice:NamedSemaphore':
      return Semaphore.from(handle)
    case 'sluice:Mutex':
      return Mutex.from(handle)
    case 'sluice:TokenBucket':
    case 'sluice:NamedTokenBucket':
      return TokenBucket.from(handle)
    case 'sluice:RateLimiter':
    case 'sluice:NamedRateLimiter':
      return RateLimiter.from(handle)
    case 'sluice:Channel':
      return Channel.from(handle)
  }
}
