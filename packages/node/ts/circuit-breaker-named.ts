// `CircuitBreaker.open(name)`: the breaker's words in a shared-memory segment
// (crates/shm `words.rs`, kind 5), one breaker for every process of the
// machine. The state machine is the thread-shared one (circuit-breaker-state.ts)
// over an external ArrayBuffer on the mapping.
//
// The segment stores the block's size and seven numbers every opener must
// give equal; they are the shared options, so two processes never run
// different settings over the same words:
//
//   bytes  the block's size, from `buckets`
//   p1     the threshold: `consecutiveFailures`, or `-failureRate` (the sign
//          tells the mode)
//   p2..p7 window, minimumCalls, openDuration, maxOpenDuration,
//          halfOpenTrials, trialTimeout (unused ones at their defaults)
import { breakerConfig, type BreakerConfig, type CircuitBreakerOptions } from './circuit-breaker-options.js'
import { bufferBytes } from './circuit-breaker-state.js'
import { MismatchError } from './errors.js'
import { callNative, validateDir } from './named.js'
import { NativeSharedWords } from './native.js'
import { show, validateName, validateOptions } from './validate.js'

export interface OpenCircuitBreakerOptions extends CircuitBreakerOptions {
  /**
   * Directory of the segments (default `/dev/shm/sluice-<uid>`, or the
   * `SLUICE_SHM_DIR` environment variable). It must be owned by this user
   * and closed to others.
   */
  dir?: string
}

/** What `CircuitBreaker.open` needs from the segment. */
export interface OpenedWords {
  readonly name: string
  readonly dir: string | undefined
  readonly config: BreakerConfig
  readonly buffer: ArrayBuffer
  /** CLOCK_MONOTONIC ms when the segment was created: the breaker's origin. */
  readonly origin: number
  readonly native: { readonly unlinked: boolean }
}

/** The options of an `open`, checked: the shared ones as a config. */
export function openOptions(rawName: unknown, options: unknown): { name: string; dir: string | undefined; config: BreakerConfig } {
  const name = validateName(rawName, 'name')
  const { dir, ...rest } = validateOptions<OpenCircuitBreakerOptions>(options, 'options')
  const shared: Record<string, unknown> = { ...rest }
  // Per-process, checked by the caller: not part of the segment's parameters.
  delete shared.isFailure
  return { name, dir: validateDir(dir), config: breakerConfig(shared, 'options') }
}

/** Opens (creating it if needed) the words of breaker `name` for this thread. */
export function openWords(caller: string, name: string, dir: string | undefined, config: BreakerConfig): OpenedWords {
  const bytes = bufferBytes(config.buckets)
  const native = callBreaker(caller, name, config, () => NativeSharedWords.open(name, bytes, params(config), dir))
  const buffer = callBreaker(caller, name, config, () => native.buffer())
  return { name, dir, config, buffer, origin: native.originMs, native }
}

export function unlinkBreaker(rawName: unknown, options: unknown): boolean {
  const name = validateName(rawName, 'name')
  const dir = validateDir(validateOptions<{ dir?: unknown }>(options, 'options').dir)
  return callNative('CircuitBreaker.unlink', name, () => NativeSharedWords.unlink(name, dir))
}

/** Throws the MismatchError of the first shared option in which `existing` and `requested` differ. */
export function checkSameConfig(caller: string, name: string, existing: BreakerConfig, requested: BreakerConfig): void {
  const had = described(existing)
  const want = described(requested)
  for (const [field, value] of want) {
    const other = had.find(([f]) => f === field)
    if (other === undefined) {
      // The other mode: name the option that chose each.
      throw mismatch(caller, name, want[0]!, had[0]!)
    }
    if (!Object.is(other[1], value)) throw mismatch(caller, name, [field, value], other)
  }
}

/** The seven numbers the segment compares (see the header comment). */
function params(config: BreakerConfig): number[] {
  const threshold = config.mode === 'consecutive' ? config.consecutiveFailures : -config.failureRate
  const { window, minimumCalls, openDuration, maxOpenDuration, halfOpenTrials, trialTimeout } = config
  return [threshold, window, minimumCalls, openDuration, maxOpenDuration, halfOpenTrials, trialTimeout]
}

const kParamFields = ['', 'window', 'minimumCalls', 'openDuration', 'maxOpenDuration', 'halfOpenTrials', 'trialTimeout']

/** The shared options that `config`'s mode uses, as [option, value] pairs, the mode's own first. */
function described(config: BreakerConfig): Array<[string, number]> {
  const { openDuration, maxOpenDuration, halfOpenTrials, trialTimeout } = config
  const common: Array<[string, number]> = [
    ['openDuration', openDuration],
    ['maxOpenDuration', maxOpenDuration],
    ['halfOpenTrials', halfOpenTrials],
    ['trialTimeout', trialTimeout],
  ]
  if (config.mode === 'consecutive') return [['consecutiveFailures', config.consecutiveFailures], ...common]
  const { failureRate, window, buckets, minimumCalls } = config
  return [['failureRate', failureRate], ['window', window], ['buckets', buckets], ['minimumCalls', minimumCalls], ...common]
}

function mismatch(caller: string, name: string, requested: [string, number], existing: [string, number]): MismatchError {
  const [field, value] = requested
  const [otherField, other] = existing
  return new MismatchError(
    `${caller}(${show(name)}): options.${field} is ${show(value)} here, but ${show(name)} exists with ${otherField} ${show(other)}; open it with the same options, or unlink it first`,
  )
}

/** `callNative`, with the segment's parameter names turned back into options. */
function callBreaker<T>(caller: string, name: string, config: BreakerConfig, call: () => T): T {
  try {
    return call()
  } catch (cause) {
    const { code, message } = cause as { code?: unknown; message: string }
    if (code !== 'ERR_SLUICE_MISMATCH') return callNative(caller, name, () => { throw cause })
    // "<field> <existing> <requested>", from src/named_words.rs.
    const [field = '', existingText = '', requestedText = ''] = message.split(' ')
    const existing = Number(existingText)
    const requested = Number(requestedText)
    if (field === 'bytes') {
      // The block's size follows `buckets` alone (bufferBytes).
      throw mismatch(caller, name, ['buckets', config.buckets], ['buckets', bucketsOf(existing)])
    }
    if (field === 'p1') {
      throw mismatch(caller, name, thresholdOption(requested), thresholdOption(existing))
    }
    const index = /^p([2-7])$/.exec(field)?.[1]
    if (index !== undefined) {
      const option = kParamFields[Number(index) - 1]!
      throw mismatch(caller, name, [option, requested], [option, existing])
    }
    // The segment exists as another kind of primitive, say.
    return callNative(caller, name, () => { throw cause })
  }
}

function thresholdOption(value: number): [string, number] {
  return value < 0 ? ['failureRate', -value] : ['consecutiveFailures', value]
}

function bucketsOf(bytes: number): number {
  return (bytes - bufferBytes(0)) / (bufferBytes(1) - bufferBytes(0))
}
