// The semaphore's Lua scripts (RedisSemaphore, RedisMutex, RedisPermit):
// one script per decision, atomic on the server, one round trip each.
//
// Keys, all under the primitive's hash tag (one Redis Cluster slot):
//   KEYS[1] P  hash: permits, used, seq (the last queue ticket), until (see below)
//   KEYS[2] L  zset: lease id -> lease expiry (server ms), holders and queued waits alike
//   KEYS[3] Q  zset: queued id -> ticket (FIFO order)
//   KEYS[4] W  hash: id -> "<h|q> <weight> <ttl ms> <wake channel>" (h holds, q is queued)
//   KEYS[5] M  hash: the metrics counters (./metrics.ts), counted where the decisions are made
// ARGV[1] permits, ARGV[2] the lease id ('' for none).
//
// Why it is shaped this way: a hand-off (release + the next acquire) used
// to cost ~57 commands inside two scripts, ~49 µs of server time each, on a
// machine where the server shares 2 cores with its clients. Now it is ~25:
// one zset holds every lease (one sweep, one look-up of the earliest
// expiry), one hash entry says whether an id holds or waits (one HGET), and
// the keys' expiry is set only when a lease outlives it (P's `until`)
// instead of on every call.
//
// Invariants every script keeps:
// - L and W have the same members; Q's members are W's 'q' entries; `used`
//   is the sum of the 'h' entries' weights.
// - L, Q and W expire at `until` (ms), and every lease expires at least 1 s
//   before it: a dead process's keys go away by themselves. P outlives them
//   (`until`, or an hour from its last extension if later). So once `until`
//   has passed every lease has too: a script then starts clean, even if the
//   server has not expired the keys yet (a stale `used` would block forever).
// - After each script the queue's head cannot be served (each script that
//   frees permits grants in order before it ends), so grants go to the head,
//   in ticket order, and are published to each granted waiter's own channel
//   (its process's store): no other process wakes for them.
import { script } from './client.js'
import { KEEP_COUNTS } from './metrics.js'

const prelude = `
if redis.replicate_commands then pcall(redis.replicate_commands) end
local P, L, Q, W, M = KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5]
local permits, id = ARGV[1], ARGV[2]
local cap = tonumber(permits)
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local p = redis.call('HMGET', P, 'permits', 'used', 'until')
if p[1] and p[1] ~= permits then return {-2, p[1]} end
local used, horizon = tonumber(p[2]) or 0, tonumber(p[3]) or 0
if now >= horizon and (horizon > 0 or not p[1]) then
  -- Every lease has expired (or the parameters are gone): start clean.
  redis.call('DEL', L, Q, W)
  used, horizon = 0, 0
end
local extend, freshQueue = false, false
-- Counts for M, written once at the end (finish): grants from the queue are one HINCRBY however many.
local acquired, refused, ended = 0, 0, nil
-- who's entry: state ('h' or 'q'), weight, ttl, channel; nothing if unknown.
local function entry(who)
  local v = redis.call('HGET', W, who)
  if not v then return nil end
  local s, w, ttl, ch = string.match(v, '^([hq]) (%d+) (%d+) (.*)$')
  return s, tonumber(w), tonumber(ttl), ch
end
-- who's lease now ends at x (ttl from now); the keys outlive it by >= 1 s,
-- extended by a further ttl so that this happens about once per ttl.
local function lease(who, x, ttl)
  redis.call('ZADD', L, x, who)
  if x + 1000 > horizon then
    horizon = x + 1000 + ttl
    extend = true
  end
end
local function drop(who)
  local s, w = entry(who)
  redis.call('ZREM', L, who)
  redis.call('HDEL', W, who)
  if s == 'h' then used = math.max(0, used - w) else redis.call('ZREM', Q, who) end
end
local granted, channels = {}, {}
-- Serves the queue from its head while the head's weight fits (strict FIFO).
-- Bounded: each turn takes one member off Q, or stops.
local function grant()
  while used < cap do
    local head = redis.call('ZRANGE', Q, 0, 0)[1]
    if not head then return end
    local s, w, ttl, ch = entry(head)
    if s ~= 'q' then
      -- Queued without a waiting entry: cannot happen unless the keys were edited; unqueue it.
      redis.call('ZREM', Q, head)
    else
      if used + w > cap then return end
      redis.call('ZREM', Q, head)
      redis.call('HSET', W, head, 'h ' .. w .. ' ' .. ttl .. ' ' .. ch)
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
local expired = redis.call('ZRANGEBYSCORE', L, '-inf', now)
for _, who in ipairs(expired) do drop(who) end
if #expired > 0 then grant() end
-- Publishes the grants and stores the state. Once nobody holds or waits,
-- only the parameters stay (an hour, for a later opener to be checked
-- against): a cancelled wait leaves no trace. Answers the ms until the
-- earliest lease expires (-1: none), for the waiters' sweep timer.
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
  local first = redis.call('ZRANGE', L, 0, 0, 'WITHSCORES')
  if not first[1] then
    redis.call('DEL', Q, W)
    redis.call('HSET', P, 'permits', permits, 'used', 0, 'seq', 0, 'until', 0)
    redis.call('PEXPIRE', P, 3600000)
    return -1
  end
  redis.call('HSET', P, 'permits', permits, 'used', used, 'until', horizon)
  if extend then
    redis.call('PEXPIREAT', L, horizon)
    redis.call('PEXPIREAT', Q, horizon)
    redis.call('PEXPIREAT', W, horizon)
    redis.call('PEXPIREAT', P, math.max(horizon, now + 3600000))
    redis.call('PEXPIREAT', M, math.max(horizon, now + 3600000))
  elseif freshQueue then
    -- Q was empty (so deleted) and has been made again: without this it would never expire.
    redis.call('PEXPIREAT', Q, horizon)
  end
  return math.max(tonumber(first[2]) - now, 0)
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
local s = entry(id)
if s == 'h' then
  lease(id, now + ttl, ttl)
  return {1, finish()}
end
if s == 'q' then
  lease(id, now + ttl, ttl)
  return {0, finish()}
end
local queued = redis.call('ZCARD', Q)
if queued == 0 and used + weight <= cap then
  redis.call('HSET', W, id, 'h ' .. weight .. ' ' .. ttl .. ' ' .. ARGV[6])
  lease(id, now + ttl, ttl)
  used = used + weight
  acquired = acquired + 1
  return {1, finish()}
end
if ARGV[5] == 'try' then
  refused = 1
  return {-1, finish()}
end
redis.call('HSET', W, id, 'q ' .. weight .. ' ' .. ttl .. ' ' .. ARGV[6])
redis.call('ZADD', Q, redis.call('HINCRBY', P, 'seq', 1), id)
lease(id, now + ttl, ttl)
freshQueue = queued == 0
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
local queued = redis.call('ZCARD', Q)
finish()
local m = redis.call('HMGET', M, 'acquired', 'refused', 'timedOut', 'aborted')
return {queued, used, m[1] or '0', m[2] or '0', m[3] or '0', m[4] or '0'}
`)

/** Answers {free permits, queued waits}. */
export const semaphoreState = script(`${prelude}
local queued = redis.call('ZCARD', Q)
finish()
local free = cap - used
if queued > 0 then free = 0 end
return {free, queued}
`)
