// The Lua scripts: each decision is one script, so it is atomic on the
// server and costs one round trip. Every key a script touches shares the
// hash tag `{<prefix><name>}` (one slot: Redis Cluster runs it on one node).
// Time is the server's (`TIME`), never a client clock.
import { script } from './client.js'
import { KEEP_COUNTS } from './metrics.js'

// Times in a rate-limit cell are "<seconds> <nanoseconds>" strings: Lua
// numbers are doubles, exact to 2^53, which nanoseconds since 1970 exceed,
// while every difference we take (at most the burst, <= 2^52 ns) stays exact.
const clock = `
if redis.replicate_commands then pcall(redis.replicate_commands) end
local t = redis.call('TIME')
local S, NS = tonumber(t[1]), tonumber(t[2]) * 1000
-- Rounding is arithmetic (v % 1), not math.floor or math.ceil: a call into
-- a C function costs a script several times an arithmetic step, and the
-- batch script rounds twice per take. (string.format stays: Lua's own
-- number-to-string, %.14g, measured slower than one format of two %d.)
-- Nanoseconds from now until the stored time v (0 if past or absent).
local function ahead(v)
  if not v then return 0 end
  local vs, vn = string.match(v, '^(%d+) (%d+)$')
  local d = (tonumber(vs) - S) * 1e9 + (tonumber(vn) - NS)
  if d < 0 then return 0 end
  return d
end
-- The time d >= 0 ns from now, as stored ("<s> <ns>"; integers below 1e14
-- print as %d does).
local function at(d)
  local x = NS + d
  local c = x / 1e9
  c = c - c % 1
  local r = x - c * 1e9
  if r < 0 then c = c - 1; r = r + 1e9 elseif r >= 1e9 then c = c + 1; r = r - 1e9 end
  return string.format('%d %d', S + c, r)
end
-- d >= 0 ns in whole ms, rounded up.
local function ms(d)
  local q = d / 1e6
  local f = q % 1
  if f > 0 then return q - f + 1 end
  return q
end
`

// KEYS[1] the parameters (hash). ARGV[1] capacity, ARGV[2] interval (ns per
// token). The first use stores the parameters; a later one with others
// answers {-1, field, stored} and changes nothing.
const gcraParams = `${clock}
local P = KEYS[1]
local cap, interval = tonumber(ARGV[1]), tonumber(ARGV[2])
local burst = cap * interval
local stored = redis.call('HMGET', P, 'capacity', 'interval')
if stored[1] then
  if stored[1] ~= ARGV[1] then return {-1, 'capacity', stored[1]} end
  if stored[2] ~= ARGV[2] then return {-1, 'interval', stored[2]} end
else
  redis.call('HSET', P, 'capacity', ARGV[1], 'interval', ARGV[2])
end
-- The parameters outlive every cell (a cell expires once its bucket is full).
local function keep(px)
  local want = math.max(px, ms(burst)) + 1000
  if redis.call('PTTL', P) < want then redis.call('PEXPIRE', P, want) end
end
-- Sets cell C to d ns from now, expiring then; answers its PX. (PSETEX is
-- SET PX with one argument fewer to pass: this call is half a take's cost.)
local function store(C, d)
  local px = ms(d)
  if px < 1 then px = 1 end
  redis.call('PSETEX', C, px, at(d))
  return px
end
`

// One cell: KEYS[2], n = ARGV[3]; KEYS[3] the metrics hash (./metrics.ts).
const gcraPrelude = `${gcraParams}
local C, n, M = KEYS[2], tonumber(ARGV[3]), KEYS[3]
local base = ahead(redis.call('GET', C))
local nxt = base + n * interval
`

/**
 * KEYS[2] is the metrics hash (./metrics.ts): the batch's takes allowed and
 * refused, one HINCRBY each per call (peeks are not counted).
 * Decisions on KEYS[3..], in order: ARGV[2 + i] is the i-th one's n, signed
 * (n > 0 takes n, -n peeks at n); without ARGV[3..] every decision takes 1.
 * One script for all the decisions a process has ready at once: the same
 * answers as one script each, run back to back at the same server time.
 * Answers one integer per decision, the in-process limiter's verdict
 * (crates/core gcra.rs) from which the client derives the rest: x >= 0
 * allowed, the cell full again in x ns; x < 0 refused, the cell full again in
 * -1 - x ns (remaining and retry follow from it, n and the rate).
 * The cells are read with one MGET (the calls into Redis, and above all the
 * SET per take, are most of the script's time); a cell taken from earlier
 * in the batch is read from `tat`, not from the MGET.
 */
export const gcraDecide = script(`${gcraParams}
local M = KEYS[2]
local vals = redis.call('MGET', unpack(KEYS, 3))
local out, tat = {}, {}
local longest, allowed, refused = 0, 0, 0
for i = 1, #KEYS - 2 do
  local C, n, a = KEYS[i + 2], 1, ARGV[i + 2]
  if a then n = tonumber(a) or 1 end
  local peek = n < 0
  if peek then n = -n end
  local base = tat[C] or ahead(vals[i])
  local nxt = base + n * interval
  if nxt > burst then
    -- A reservation waiting ahead may have pushed base past the burst.
    out[i] = -1 - base
    if not peek then refused = refused + 1 end
  elseif peek then
    out[i] = base
  else
    tat[C] = nxt
    local px = store(C, nxt)
    if px > longest then longest = px end
    out[i] = nxt
    allowed = allowed + 1
  end
end
keep(longest)
if allowed > 0 then redis.call('HINCRBY', M, 'acquired', allowed) end
if refused > 0 then redis.call('HINCRBY', M, 'refused', refused) end
if allowed > 0 or refused > 0 then ${KEEP_COUNTS} end
return out
`)

/**
 * A waiting take: reserves n tokens (always, unless they would come after
 * ARGV[4] ns, when it takes nothing) and answers {reserved, waitNs, due}:
 * due is the server time they come, for a cancel. Counts a take that is
 * due now as acquired, one refused for its timeout as timedOut (a later
 * grant is counted by the client when its timer fires, an abort by gcraCancel).
 */
export const gcraReserve = script(`${gcraPrelude}
local wait = math.max(0, nxt - burst)
if ARGV[4] ~= '' and wait > tonumber(ARGV[4]) then
  keep(0)
  redis.call('HINCRBY', M, 'timedOut', 1)
  ${KEEP_COUNTS}
  return {0, wait, ''}
end
keep(store(C, nxt))
if wait == 0 then
  redis.call('HINCRBY', M, 'acquired', 1)
  ${KEEP_COUNTS}
end
return {1, wait, at(wait)}
`)

/**
 * A waiting take gives its n tokens back, if they are not due yet (ARGV[4]):
 * exact for the last reservation, conservative for earlier ones. Counts the
 * abort either way. ARGV[5] = 'unseen': a take granted at once whose caller
 * aborted before the answer came back gives them back although they are
 * due, and is no longer counted as acquired.
 */
export const gcraCancel = script(`${gcraPrelude}
redis.call('HINCRBY', M, 'aborted', 1)
${KEEP_COUNTS}
if ARGV[5] == 'unseen' then
  redis.call('HINCRBY', M, 'acquired', -1)
elseif ahead(ARGV[4]) <= 0 then
  return 0
end
keep(store(C, math.max(0, base - n * interval)))
return 1
`)

/** Forgets a cell (KEYS[2]): answers how many keys went (0 or 1). */
export const gcraReset = script(`return redis.call('DEL', KEYS[2])`)
