import { setImmediate as tick } from 'node:timers/promises'
import v8 from 'node:v8'
import vm from 'node:vm'
import { describe, expect, it } from 'vitest'
import { Channel, Semaphore, TokenBucket } from 'sluice'

v8.setFlagsFromString('--expose-gc')
const gc = vm.runInNewContext('gc') as () => void

async function collectGarbage(): Promise<void> {
  for (let i = 0; i < 5; i++) {
    gc()
    await tick() // native finalizers run after the collection
  }
}

describe('a handle in flight', () => {
  it('keeps its semaphore alive after the last object for it is dropped, so from(handle) still attaches', async () => {
    // The only Semaphore object is dropped at once, as a top-level const
    // of a module that nothing reads again can be.
    const handle = (() => new Semaphore(2).handle)()
    await collectGarbage()
    const attached = Semaphore.from(handle)
    expect(attached.available).toBe(2)
  })

  it('keeps a channel and a token bucket alive the same way', async () => {
    const channel = (() => new Channel({ capacity: 4 }).handle)()
    const bucket = (() => new TokenBucket({ capacity: 3, refillPerSecond: 1 }).handle)()
    await collectGarbage()
    expect(Channel.from(channel).capacity).toBe(4)
    expect(TokenBucket.from(bucket).capacity).toBe(3)
  })
})
