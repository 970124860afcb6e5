// The semaphore's Lua scripts (RedisSemaphore, RedisMutex, RedisPermit):
// one script per decision, atomic on the server, one round trip each.
//
// Keys, all under the primitive's hash tag (one Redis Cluster slot):
//   KEYS[1] P  hash: permits, used, queued (how many ids Q holds), seq (the
//              last queue ticket), until and next (see below); and one field
//              per lease: id -> "<h|q> <weight> <ttl ms> <wake channel>"
//              (h holds, q is queued)
//   KEYS[2] L  zset: lease id -> lease expiry (server ms), holders and queued waits alike
//   KEYS[3] Q  zset: queued id -> ticket (FIFO order)
//   KEYS[4] M  hash: the metrics counters (./metrics.ts), counted where the decisions are made
// ARGV[1] permits, ARGV[2] the lease id ('' for none).
//
// Why it is shaped this way: inside a script each redis.call costs ~1-2 µs
// beyond the command itself (more when it answers an array, which becomes a
// Lua table), so the count of calls is the script's price. An uncontended
// acquire is 6 calls and its release 5 (they were 14 and 13, ~45 µs of
// server time each against redis-semaphore's ~15 µs): one HMGET answers the
// parameters, the counts, whether the sweep can be skipped (`next`) and the
// caller's own entry; every change to P is one HSET (plus one HDEL for
// entries that go) at the end; the queue is looked at only when `queued`
// says it holds someone; and the keys' expiry is set only when a lease
// outlives it (`until`) or L or Q is made anew. The entries live in P, which
// never empties, so that they need no expiry of their own.
//
// Invariants every script keeps:
// - L's members are P's entries; Q's members are the 'q' entries and
//   `queued` counts them; `used` is the sum of the 'h' entries' weights. So
//   L is empty (and gone) exactly when `used` and `queued` are 0.
// - `next` is -1 when L is empty, else no lease in L ends before it (a
//   lower bound: a renewal or a release leaves it where it was; the sweep
//   that finds it passed reads the true earliest expiry, and recounts Q).
//   A script sweeps only when `next` has passed (or is absent): most skip
//   the ZRANGEBYSCORE.
// - L and Q expire at `until` (ms), and every lease expires at least 1 s
//   before it: a dead process's leases go away by themselves. P outlives
//   them (`until`, or an hour from its last extension if later). So once
//   `until` has passed every lease has too: a script then starts clean (P
//   too: its entries are of dead leases), even if the server has not expired
//   the keys yet (a stale `used` would block forever). `until` stays when
//   the semaphore empties (Redis deletes an empty zset), so a key made again
//   before it takes its expiry from it.
// - After each script the queue's head cannot be served (each script that
//   frees permits grants in order before it ends), so grants go to the head,
//   in ticket order, and are published to each granted waiter's own channel
//   (its process's store): no other process wakes for them.
import { script } from './client.js'
import { KEEP_COUNTS } from './metrics.js'

const prelude = `
if redis.replicate_commands then pcall(redis.replicate_commands) end
local P, L, Q, M = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
local permits, id = ARGV[1], ARGV[2]
local cap = tonumber(permits)
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
-- The stored permits carry the key layout ('/v2'): a process of an earlier
-- sluice (layout 1, lease entries in a W hash) reads it as other permits and
-- refuses, as this one refuses its bare count while a lease of that layout
-- may live, instead of both counting holders their own way and admitting
-- too many. Once every such lease has expired, the name is nobody's: stale.
local tagged = permits .. '/v2'
local p = redis.call('HMGET', P, 'permits', 'used', 'until', 'next', 'queued', id)
local stale = false
if p[1] and p[1] ~= tagged then
  local earlier = not string.find(p[1], '/', 1, true)
  if not (earlier and now >= (tonumber(p[3]) or 0)) then return {-2, p[1]} end
  stale = true
end
-- nxt: no lease ends before it (-1: no lease; nil: unknown, so sweep).
local used, horizon, nxt, qn = tonumber(p[2]) or 0, tonumber(p[3]) or 0, tonumber(p[4]), tonumber(p[5]) or 0
-- As stored, so that finish writes only what changed; whole: P is written whole.
local used0, horizon0, nxt0, qn0, whole = used, horizon, nxt, qn, not p[1]
-- Entries changed by this script (id -> entry, false: gone), in order, and the caller's own as stored.
local changed, order, mine = {}, {}, p[6]
if stale or (now >= horizon and (horizon > 0 or not p[1])) then
  -- Every lease has expired (or the parameters are gone, or were an
  -- earlier layout's whose leases have all expired): start clean.
  redis.call('DEL', P, L, Q)
  used, horizon, nxt, qn, mine, whole = 0, 0, -1, 0, false, true
end
-- extend: move every key's expiry to horizon; freshLease: L is made anew
-- by this script (it was empty); freshQueue: Q is.
local extend, freshLease, freshQueue = false, false, false
-- Counts for M, written once at the end (finish): grants from the queue are one HINCRBY however many.
local acquired, refused, ended = 0, 0, nil
local function set(who, v)
  if changed[who] == nil then order[#order + 1] = who end
  changed[who] = v
end
-- who's entry: state ('h' or 'q'), weight, ttl, channel; nothing if unknown.
local function entry(who)
  local v = changed[who]
  if v == nil then
    if who == id then v = mine else v = redis.call('HGET', P, who) end
  end
  if not v then return nil end
  local s, w, ttl, ch = string.match(v, '^([hq]) (%d+) (%d+) (.*)$')
  return s, tonumber(w), tonumber(ttl), ch
end
-- who's lease now ends at x (ttl from now); the keys outlive it by >= 1 s,
-- extended by a further ttl so that this happens about once per ttl.
local function lease(who, x, ttl)
  redis.call('ZADD', L, x, who)
  if not nxt or nxt < 0 or x < nxt then nxt = x end
  if x + 1000 > horizon then
    horizon = x + 1000 + ttl
    extend = true
  end
end
local function drop(who)
  local s, w = entry(who)
  redis.call('ZREM', L, who)
  if s == nil then return end
  set(who, false)
  if s == 'h' then
    used = math.max(0, used - w)
  else
    qn = math.max(0, qn - redis.call('ZREM', Q, who))
  end
end
local granted, channels = {}, {}
-- Serves the queue from its head while the head's weight fits (strict FIFO).
-- Bounded: each turn takes one member off Q, or stops.
local function grant()
  while used < cap and qn > 0 do
    local head = redis.call('ZRANGE', Q, 0, 0)[1]
    if not head then
      qn = 0
      return
    end
    local s, w, ttl, ch = entry(head)
    if s ~= 'q' then
      -- Queued without a waiting entry: cannot happen unless the keys were edited; unqueue it.
      qn = math.max(0, qn - redis.call('ZREM', Q, head))
    else
      if used + w > cap then return end
      qn = math.max(0, qn - redis.call('ZREM', Q, head))
      set(head, 'h ' .. w .. ' ' .. ttl .. ' ' .. ch)
      lease(head, now + ttl, ttl)
      used = used + w
      acquired = acquired + 1
      if not granted[ch] then
        granted[ch] = {}
        channels[#channels + 1] = ch
      end
      table.insert(granted[ch], head)
    end
  end
end
if not nxt or (nxt >= 0 and now >= nxt) then
  local expired = redis.call('ZRANGEBYSCORE', L, '-inf', now)
  -- Recounted here (about once per ttl while leases exist), so a count that went wrong heals.
  qn = redis.call('ZCARD', Q)
  for _, who in ipairs(expired) do drop(who) end
  nxt = tonumber(redis.call('ZRANGE', L, 0, 0, 'WITHSCORES')[2]) or -1
  if #expired > 0 then grant() end
end
-- Publishes the grants and stores the state. Once nobody holds or waits,
-- only the parameters stay (an hour, for a later opener to be checked
-- against): L and Q are empty, so gone, and P has no entries; a cancelled
-- wait leaves no trace. Answers the ms until the earliest lease may
-- expire (-1: none), for the waiters' sweep timer: early rather than late
-- (next is a lower bound), and a sweep that finds nothing answers anew.
local function finish()
  -- M's expiry is set when a counter is new (so whenever M is) and moved
  -- with the other keys' (extend: the first lease after an idle spell, then
  -- about once per ttl): not one PEXPIRE per call.
  local fresh = false
  local function add(field, k)
    if redis.call('HINCRBY', M, field, k) == k then fresh = true end
  end
  if acquired > 0 then add('acquired', acquired) end
  if refused > 0 then add('refused', refused) end
  if ended then add(ended, 1) end
  if fresh then ${KEEP_COUNTS} end
  for _, ch in ipairs(channels) do redis.call('PUBLISH', ch, table.concat(granted[ch], ' ')) end
  if used == 0 and qn == 0 then nxt = -1 end
  local gone, out = {}, {}
  for _, who in ipairs(order) do
    local v = changed[who]
    if v then
      out[#out + 1] = who
      out[#out + 1] = v
    else
      gone[#gone + 1] = who
    end
  end
  if whole then out[#out + 1] = 'permits'; out[#out + 1] = tagged end
  if whole or used ~= used0 then out[#out + 1] = 'used'; out[#out + 1] = used end
  if whole or horizon ~= horizon0 then out[#out + 1] = 'until'; out[#out + 1] = horizon end
  if whole or nxt ~= nxt0 then out[#out + 1] = 'next'; out[#out + 1] = nxt end
  if whole or qn ~= qn0 then out[#out + 1] = 'queued'; out[#out + 1] = qn end
  if #gone > 0 then redis.call('HDEL', P, unpack(gone)) end
  if #out > 0 then redis.call('HSET', P, unpack(out)) end
  if extend then
    redis.call('PEXPIREAT', L, horizon)
    redis.call('PEXPIREAT', Q, horizon)
    redis.call('PEXPIREAT', P, math.max(horizon, now + 3600000))
    redis.call('PEXPIREAT', M, math.max(horizon, now + 3600000))
  else
    if whole then redis.call('PEXPIRE', P, 3600000) end
    -- Made again (an empty zset is deleted) within until: without this it would never expire.
    if freshLease then redis.call('PEXPIREAT', L, horizon) end
    if freshQueue then redis.call('PEXPIREAT', Q, horizon) end
  end
  if nxt < 0 then return -1 end
  return math.max(nxt - now, 0)
end
`

/**
 * ARGV[3] weight, ARGV[4] lease ttl (ms), ARGV[5] 'try' or 'wait', ARGV[6]
 * the channel that wakes this waiter. Idempotent by id (a retry after a
 * reconnect never counts twice): held already -> renewed; queued -> its
 * wait's lease renewed; else a new attempt. Answers {1 held | 0 queued |
 * -1 refused (try) | -2 other permits, ms to the earliest expiry | stored permits}.
 */
export const semaphoreAcquire = script(`${prelude}
local weight, ttl = tonumber(ARGV[3]), tonumber(ARGV[4])
-- Permits free, yet someone queued: only a head too heavy for them (or a
-- count gone wrong, which this heals) can explain it.
if qn > 0 and used + weight <= cap then grant() end
local s = entry(id)
if s == 'h' then
  lease(id, now + ttl, ttl)
  return {1, finish()}
end
if s == 'q' then
  lease(id, now + ttl, ttl)
  return {0, finish()}
end
local rest = ' ' .. weight .. ' ' .. ttl .. ' ' .. ARGV[6]
-- Nobody held or waited: L was empty, and this makes it anew.
freshLease = used == 0 and qn == 0
if qn == 0 and used + weight <= cap then
  set(id, 'h' .. rest)
  lease(id, now + ttl, ttl)
  used = used + weight
  acquired = acquired + 1
  return {1, finish()}
end
if ARGV[5] == 'try' then
  freshLease = false
  refused = 1
  return {-1, finish()}
end
set(id, 'q' .. rest)
redis.call('ZADD', Q, redis.call('HINCRBY', P, 'seq', 1), id)
freshQueue = qn == 0
qn = qn + 1
lease(id, now + ttl, ttl)
return {0, finish()}
`)

/** Renews a holder's lease: {1, earliest} if it still holds, {0, earliest} if the lease is lost. */
export const semaphoreRenew = script(`${prelude}
local s, _, ttl = entry(id)
if s == 'h' then
  lease(id, now + ttl, ttl)
  return {1, finish()}
end
return {0, finish()}
`)

/**
 * Releases a lease or withdraws a wait (an unknown id does nothing; '' only
 * sweeps expired leases), then serves the queue. ARGV[3], if given, is the
 * counter of why a wait was withdrawn ('timedOut', 'aborted', 'refused': the
 * client's side of the metrics, folded into the call it makes anyway).
 * Answers {1, earliest}.
 */
export const semaphoreRelease = script(`${prelude}
if id ~= '' then drop(id) end
if ARGV[3] == 'timedOut' or ARGV[3] == 'aborted' or ARGV[3] == 'refused' then ended = ARGV[3] end
grant()
return {1, finish()}
`)

/**
 * Answers {queued waits, permits held, then the metrics counters in
 * COUNTERS' order} for `metrics()`: one round trip.
 */
export const semaphoreMetrics = script(`${prelude}
qn = redis.call('ZCARD', Q)
finish()
local m = redis.call('HMGET', M, 'acquired', 'refused', 'timedOut', 'aborted')
return {qn, used, m[1] or '0', m[2] or '0', m[3] or '0', m[4] or '0'}
`)

/** Answers {free permits, queued waits}. */
export const semaphoreState = script(`${prelude}
qn = redis.call('ZCARD', Q)
finish()
local free = cap - used
if qn > 0 then free = 0 end
return {free, qn}
`)
