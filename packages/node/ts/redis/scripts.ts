// The Lua scripts: each decision is one script, so it is atomic on the
// server and costs one round trip. Every key a script touches shares the
// hash tag `{<prefix><name>}` (one slot: Redis Cluster runs it on one node).
// Time is the server's (`TIME`), never a client clock.
import { script } from './client.js'

// Times in a rate-limit cell are "<seconds> <nanoseconds>" strings: Lua
// numbers are doubles, exact to 2^53, which nanoseconds since 1970 exceed,
// while every difference we take (at most the burst, <= 2^52 ns) stays exact.
const clock = `
if redis.replicate_commands then pcall(redis.replicate_commands) end
local t = redis.call('TIME')
local S, NS = tonumber(t[1]), tonumber(t[2]) * 1000
-- Nanoseconds from now until the stored time v (0 if past or absent).
local function ahead(v)
  if not v then return 0 end
  local vs, vn = string.match(v, '^(%d+) (%d+)$')
  local d = (tonumber(vs) - S) * 1e9 + (tonumber(vn) - NS)
  if d < 0 then return 0 end
  return d
end
-- The time d ns from now, as stored.
local function at(d)
  local x = NS + d
  local c = math.floor(x / 1e9)
  local r = x - c * 1e9
  if r < 0 then c = c - 1; r = r + 1e9 elseif r >= 1e9 then c = c + 1; r = r - 1e9 end
  return string.format('%d %d', S + c, r)
end
local function ms(d) return math.ceil(d / 1e6) end
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
-- Sets cell C to d ns from now, expiring then; answers its PX.
local function store(C, d)
  local px = math.max(1, ms(d))
  redis.call('SET', C, at(d), 'PX', px)
  return px
end
`

// One cell: KEYS[2], n = ARGV[3].
const gcraPrelude = `${gcraParams}
local C, n = KEYS[2], tonumber(ARGV[3])
local base = ahead(redis.call('GET', C))
local nxt = base + n * interval
`

/**
 * Decisions on KEYS[2..], in order: ARGV[1 + 2i], ARGV[2 + 2i] are the i-th
 * one's n and mode ('t' take, 'p' peek). One script for all the decisions a
 * process has ready at once: the same answers as one script each, run back
 * to back at the same server time. Answers {allowed, remaining,
 * retryAfterNs, resetAfterNs} per decision, flat: the in-process limiter's
 * verdict (crates/core gcra.rs).
 */
export const gcraDecide = script(`${gcraParams}
local out = {}
local o = 0
local longest = 0
for i = 2, #KEYS do
  local C, n = KEYS[i], tonumber(ARGV[2 * i - 1])
  local base = ahead(redis.call('GET', C))
  local nxt = base + n * interval
  if nxt > burst then
    -- A reservation waiting ahead may have pushed base past the burst.
    out[o + 1], out[o + 2], out[o + 3], out[o + 4] = 0, math.floor(math.max(0, burst - base) / interval), nxt - burst, base
  elseif ARGV[2 * i] == 't' then
    longest = math.max(longest, store(C, nxt))
    out[o + 1], out[o + 2], out[o + 3], out[o + 4] = 1, math.floor((burst - nxt) / interval), 0, nxt
  else
    out[o + 1], out[o + 2], out[o + 3], out[o + 4] = 1, math.floor((burst - base) / interval), 0, base
  end
  o = o + 4
end
keep(longest)
return out
`)

/**
 * A waiting take: reserves n tokens (always, unless they would come after
 * ARGV[4] ns, when it takes nothing) and answers {reserved, waitNs, due}:
 * due is the server time they come, for a cancel.
 */
export const gcraReserve = script(`${gcraPrelude}
local wait = math.max(0, nxt - burst)
if ARGV[4] ~= '' and wait > tonumber(ARGV[4]) then keep(0); return {0, wait, ''} end
keep(store(C, nxt))
return {1, wait, at(wait)}
`)

/**
 * A waiting take gives its n tokens back, if they are not due yet (ARGV[4]):
 * exact for the last reservation, conservative for earlier ones.
 */
export const gcraCancel = script(`${gcraPrelude}
if ahead(ARGV[4]) <= 0 then return 0 end
keep(store(C, math.max(0, base - n * interval)))
return 1
`)

/** Forgets a cell (KEYS[2]): answers how many keys went (0 or 1). */
export const gcraReset = script(`return redis.call('DEL', KEYS[2])`)

// Semaphore keys: KEYS[1] params (hash: permits, used, seq), KEYS[2]
// holders (zset id -> lease expiry, ms), KEYS[3] queue (zset id -> ticket),
// KEYS[4] waiter leases (zset id -> expiry, ms), KEYS[5] info (hash id ->
// "weight ttl"). ARGV[1] the wake-up channel, ARGV[2] permits, ARGV[3] the
// lease id. A dead process's holders and waiters expire and are swept by the
// next script; grants go to the queue's head in ticket order (FIFO) and are
// published on the channel as the granted ids.
const semaphorePrelude = `
if redis.replicate_commands then pcall(redis.replicate_commands) end
local P, H, Q, W, I = KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5]
local chan, permits, id = ARGV[1], ARGV[2], ARGV[3]
local cap = tonumber(permits)
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local stored = redis.call('HGET', P, 'permits')
if stored and stored ~= permits then return {-2, stored} end
if not stored then redis.call('HSET', P, 'permits', permits, 'used', 0, 'seq', 0) end
local function info(who)
  local v = redis.call('HGET', I, who)
  if not v then return 0, 0 end
  local w, ttl = string.match(v, '^(%d+) (%d+)$')
  return tonumber(w), tonumber(ttl)
end
local function drop(who)
  local w = info(who)
  if redis.call('ZREM', H, who) == 1 then redis.call('HINCRBY', P, 'used', -w) end
  redis.call('ZREM', Q, who)
  redis.call('ZREM', W, who)
  redis.call('HDEL', I, who)
end
for _, who in ipairs(redis.call('ZRANGEBYSCORE', H, '-inf', now)) do drop(who) end
for _, who in ipairs(redis.call('ZRANGEBYSCORE', W, '-inf', now)) do drop(who) end
local granted = {}
local function grant()
  local used = tonumber(redis.call('HGET', P, 'used'))
  while true do
    local head = redis.call('ZRANGE', Q, 0, 0)[1]
    if not head then break end
    local w, ttl = info(head)
    if used + w > cap then break end
    redis.call('ZREM', Q, head)
    redis.call('ZREM', W, head)
    redis.call('ZADD', H, now + ttl, head)
    used = used + w
    granted[#granted + 1] = head
  end
  redis.call('HSET', P, 'used', used)
end
-- Publishes the grants; deletes every key but the parameters once nobody
-- holds or waits (a cancelled wait leaves no trace); else keeps them as
-- long as the last lease. Answers the ms until the earliest lease expires (-1: none).
local function finish()
  if #granted > 0 then redis.call('PUBLISH', chan, table.concat(granted, ' ')) end
  if redis.call('ZCARD', H) == 0 and redis.call('ZCARD', Q) == 0 then
    -- Only the parameters stay (an hour), for a later opener to be checked against.
    redis.call('DEL', H, Q, W, I)
    redis.call('HSET', P, 'used', 0, 'seq', 0)
    redis.call('PEXPIRE', P, 3600000)
    return -1
  end
  local first, last = -1, 0
  for _, z in ipairs({H, W}) do
    local lo = redis.call('ZRANGE', z, 0, 0, 'WITHSCORES')[2]
    local hi = redis.call('ZRANGE', z, -1, -1, 'WITHSCORES')[2]
    if lo then
      local d = tonumber(lo) - now
      if first < 0 or d < first then first = d end
      last = math.max(last, tonumber(hi) - now)
    end
  end
  for _, k in ipairs({H, Q, W, I}) do redis.call('PEXPIRE', k, last + 1000) end
  redis.call('PEXPIRE', P, math.max(last + 1000, 3600000))
  return math.max(first, 0)
end
grant()
`

/**
 * ARGV[4] weight, ARGV[5] lease ttl (ms), ARGV[6] 'try' or 'wait'.
 * Idempotent by id (a retry after a reconnect never counts twice): held
 * already -> renewed; queued -> its wait lease renewed; else a new attempt.
 * Answers {1 held | 0 queued | -1 refused (try), ms to the earliest expiry}.
 */
export const semaphoreAcquire = script(`${semaphorePrelude}
local weight, ttl = tonumber(ARGV[4]), tonumber(ARGV[5])
if redis.call('ZSCORE', H, id) then
  redis.call('ZADD', H, now + ttl, id)
  return {1, finish()}
end
if redis.call('ZSCORE', Q, id) then
  redis.call('ZADD', W, now + ttl, id)
  return {0, finish()}
end
local used = tonumber(redis.call('HGET', P, 'used'))
if redis.call('ZCARD', Q) == 0 and used + weight <= cap then
  redis.call('HSET', I, id, weight .. ' ' .. ttl)
  redis.call('ZADD', H, now + ttl, id)
  redis.call('HINCRBY', P, 'used', weight)
  return {1, finish()}
end
if ARGV[6] == 'try' then return {-1, finish()} end
redis.call('HSET', I, id, weight .. ' ' .. ttl)
redis.call('ZADD', Q, redis.call('HINCRBY', P, 'seq', 1), id)
redis.call('ZADD', W, now + ttl, id)
return {0, finish()}
`)

/** Renews a holder's lease: {1, earliest} if it still holds, {0, earliest} if the lease is lost. */
export const semaphoreRenew = script(`${semaphorePrelude}
if redis.call('ZSCORE', H, id) then
  local _, ttl = info(id)
  redis.call('ZADD', H, now + ttl, id)
  return {1, finish()}
end
return {0, finish()}
`)

/**
 * Releases a lease or withdraws a wait (an unknown id does nothing; '' only
 * sweeps expired leases), then serves the queue. Answers {1, earliest}.
 */
export const semaphoreRelease = script(`${semaphorePrelude}
if id ~= '' then drop(id) end
grant()
return {1, finish()}
`)

/** Answers {free permits, queued waits}. */
export const semaphoreState = script(`${semaphorePrelude}
local used = tonumber(redis.call('HGET', P, 'used'))
local queued = redis.call('ZCARD', Q)
finish()
local free = cap - used
if queued > 0 then free = 0 end
return {free, queued}
`)
