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

// Takes who's entry away (its lease, and its hold or its place in the
// queue): Lua text, `who` a Lua expression. Text rather than only a Lua
// function so that the release, which always needs it, runs it inline: a
// closure costs ~0.5k instructions plus ~0.3k per local it captures.
function dropping(who: string): string {
  return `do
  local s, w = entry(${who})
  redis.call('ZREM', L, ${who})
  if s == 'h' then
    set(${who}, false)
    used = used - w
    if used < 0 then used = 0 end
  elseif s == 'q' then
    set(${who}, false)
    qn = qn - redis.call('ZREM', Q, ${who})
    if qn < 0 then qn = 0 end
  end
end`
}

// Serves the queue from its head while the head's weight fits (strict
// FIFO). Bounded: each turn takes one member off Q, or puts it back and
// stops. Lua text (inline in the release, as dropping is), with `break`,
// not `return`, so that it can stand in a script's body.
const granting = `
while used < cap and qn > 0 do
  local top = redis.call('ZPOPMIN', Q)
  local head = top[1]
  if not head then
    qn = 0
    break
  end
  qn = qn - 1
  local s, w, ttl, ch, rest = entry(head)
  -- Not a waiting entry (queued without one: only if the keys were
  -- edited): it stays off the queue.
  if s == 'q' then
    if used + w > cap then
      -- Too heavy for the free permits: back at its place (its own ticket) until more are free.
      redis.call('ZADD', Q, top[2], head)
      qn = qn + 1
      break
    end
    -- The stored text again: formatting numbers costs more than the rest of this line.
    set(head, 'h' .. rest)
    lease(head, now + ttl, ttl)
    used = used + w
    acquired = acquired + 1
    if not ch1 then
      ch1, ids1 = ch, head
    elseif ch == ch1 then
      ids1 = ids1 .. ' ' .. head
    else
      if not granted then granted = {} end
      local ids = granted[ch]
      if ids then
        granted[ch] = ids .. ' ' .. head
      else
        granted[ch] = head
        granted[#granted + 1] = ch
      end
    end
  end
end
`

// drop and grant as functions, made where first needed (a sweep, an
// acquire that finds a waiter it can serve), which most calls are not.
const tools = `
if not grant then
  drop = function(who)
    ${dropping('who')}
  end
  grant = function()
    ${granting}
  end
end
`

// What a call costs inside a script (callgrind on redis-server 7.0, in
// instructions): a redis.call ~5k plus ~1.3-2.3k per argument and reply
// element, and ~2.2k more for each number argument (Redis formats it with
// %.17g); a Lua C function (tonumber, string.*, unpack) ~1.5k; a string to
// number coercion ~0.7k; a closure ~0.5k plus ~0.3k per local it captures;
// a table ~0.7k plus its resizes; a plain VM operation ~30. The contended
// hand-off (a release that grants the head, the releaser queueing again)
// runs these scripts back to back on its critical path: 10 calls in that
// release and 5 in that acquire (they were 11 and 6), ~144k and ~112k
// instructions (they were ~200k and ~156k). So: ZPOPMIN takes the head (not
// ZRANGE then ZREM); the acquire reads `seq` in its HMGET and writes it in
// its HSET (not an HINCRBY); arithmetic, not tonumber, where the value is
// the server's own (TIME), the client's validated ARGV, or already matched
// as digits; text is reused rather than numbers formatted (an entry's
// ' <weight> <ttl> <channel>', ARGV's decimals, '1' for a count, %d once
// for a ticket); the closing block (finish) and, in the release, dropping
// and granting are spliced inline rather than made closures; tables are
// made only when something needs them. Values read from storage still go
// through tonumber: a damaged field reads as absent instead of raising a
// Lua error that would wedge the name.
//
// extra: more fields for the first HMGET, answered from p[7] on.
function prelude(extra = ''): string {
  return `
if redis.replicate_commands then pcall(redis.replicate_commands) end
local P, L, Q, M = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
local permits, id = ARGV[1], ARGV[2]
-- ARGV is our client's, validated before the call: arithmetic, not tonumber.
local cap = permits + 0
local t = redis.call('TIME')
-- The server's own answer (two integers), so arithmetic, not tonumber.
local us = t[2] + 0
local now = t[1] * 1000 + (us - us % 1000) / 1000
-- The stored permits carry the key layout ('/v2'): a process of an earlier
-- sluice (layout 1, lease entries in a W hash) reads it as other permits and
-- refuses, as this one refuses its bare count while a lease of that layout
-- may live, instead of both counting holders their own way and admitting
-- too many. Once every such lease has expired, the name is nobody's: stale.
local tagged = permits .. '/v2'
local p = redis.call('HMGET', P, 'permits', 'used', 'until', 'next', 'queued', id${extra})
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
-- Entries changed by this script: changed[who] is the new entry (false:
-- gone), and changed[1..n] the ids in the order first changed (one table:
-- ids are strings, so they never meet the array's number keys). mine: the
-- caller's own entry as stored.
local changed, mine = {}, p[6]
if stale or (now >= horizon and (horizon > 0 or not p[1])) then
  -- Every lease has expired (or the parameters are gone, or were an
  -- earlier layout's whose leases have all expired): start clean.
  redis.call('DEL', P, L, Q)
  used, horizon, nxt, qn, mine, whole = 0, 0, -1, 0, false, true
  p[7] = false
end
-- extend: move every key's expiry to horizon; freshLease: L is made anew
-- by this script (it was empty); freshQueue: Q is.
local extend, freshLease, freshQueue = false, false, false
-- Counts for M, written once at the end (finish): grants from the queue are one HINCRBY however many.
local acquired, refused, ended = 0, 0, nil
local function set(who, v)
  if changed[who] == nil then changed[#changed + 1] = who end
  changed[who] = v
end
-- who's entry: state ('h' or 'q'), weight, ttl (digits: Lua's arithmetic
-- reads them where a caller needs the number, as a release never does),
-- channel, and the entry past its state as stored (' <weight> <ttl>
-- <channel>'); nothing if unknown.
local function entry(who)
  local v = changed[who]
  if v == nil then
    if who == id then v = mine else v = redis.call('HGET', P, who) end
  end
  if not v then return nil end
  local s, rest, w, ttl, ch = string.match(v, '^([hq])( (%d+) (%d+) (.*))$')
  if not s then return nil end
  -- Matched as digits, so the arithmetic cannot fail.
  return s, w + 0, ttl, ch, rest
end
-- who's lease now ends at x (ttl from now); the keys outlive it by >= 1 s,
-- extended by a further ttl so that this happens about once per ttl.
local function lease(who, x, ttl)
  redis.call('ZADD', L, string.format('%d', x), who)
  if not nxt or nxt < 0 or x < nxt then nxt = x end
  if x + 1000 > horizon then
    horizon = x + 1000 + ttl
    extend = true
  end
end
-- The grants to publish: the ids granted on each channel, space-separated
-- (what the waiters' store parses). The first channel's are in ch1/ids1
-- (most calls grant on one channel, and then need no table); others in
-- granted: granted[ch] its ids, granted[1..n] the channels in order.
local ch1, ids1, granted
-- Made by the tools block where first needed (see tools in the TypeScript).
local drop, grant
if not nxt or (nxt >= 0 and now >= nxt) then
  ${tools}
  local expired = redis.call('ZRANGEBYSCORE', L, '-inf', now)
  -- Recounted here (about once per ttl while leases exist), so a count that went wrong heals.
  qn = redis.call('ZCARD', Q)
  for i = 1, #expired do drop(expired[i]) end
  nxt = tonumber(redis.call('ZRANGE', L, 0, 0, 'WITHSCORES')[2]) or -1
  if #expired > 0 then grant() end
end
-- seq: the acquire's new queue ticket, written with the rest of P.
local seq
`
}

// Publishes the grants and stores the state; spliced at the end of each
// script (a block, not a function: a closure over the ~25 locals it reads
// costs more than the rest of the block does). Once nobody holds or waits,
// only the parameters stay (an hour, for a later opener to be checked
// against): L and Q are empty, so gone, and P has no entries; a cancelled
// wait leaves no trace. Sets earliest, the ms until the earliest lease may
// expire (-1: none), for the waiters' sweep timer: early rather than late
// (next is a lower bound), and a sweep that finds nothing answers anew.
const finish = `
local earliest = -1
do
  -- M's expiry is set when a counter is new (so whenever M is) and moved
  -- with the other keys' (extend: the first lease after an idle spell, then
  -- about once per ttl): not one PEXPIRE per call.
  local fresh = false
  if acquired == 1 then
    -- '1', not 1: a number argument is formatted with %.17g, dearer than the HINCRBY's own work.
    if redis.call('HINCRBY', M, 'acquired', '1') == 1 then fresh = true end
  elseif acquired > 0 and redis.call('HINCRBY', M, 'acquired', acquired) == acquired then
    fresh = true
  end
  if refused == 1 and redis.call('HINCRBY', M, 'refused', '1') == 1 then fresh = true end
  if ended and redis.call('HINCRBY', M, ended, '1') == 1 then fresh = true end
  if fresh then ${KEEP_COUNTS} end
  if ch1 then redis.call('PUBLISH', ch1, ids1) end
  if granted then
    for i = 1, #granted do
      local ch = granted[i]
      redis.call('PUBLISH', ch, granted[ch])
    end
  end
  if used == 0 and qn == 0 then nxt = -1 end
  -- gone: the entries to delete; one is its own argument (no table, no unpack).
  -- out: P's fields to set, as HSET's arguments. Made with six slots (the
  -- nils do not count in #out), what most calls set, so that it does not
  -- grow from empty (three resizes).
  local out, gone, gone1 = {nil, nil, nil, nil, nil, nil}, nil, nil
  if seq then out[1] = 'seq'; out[2] = seq end
  for i = 1, #changed do
    local who = changed[i]
    local v = changed[who]
    if v then
      out[#out + 1] = who
      out[#out + 1] = v
    elseif not gone1 then
      gone1 = who
    else
      if not gone then gone = {gone1} end
      gone[#gone + 1] = who
    end
  end
  if whole then out[#out + 1] = 'permits'; out[#out + 1] = tagged end
  if whole or used ~= used0 then out[#out + 1] = 'used'; out[#out + 1] = used end
  if whole or horizon ~= horizon0 then out[#out + 1] = 'until'; out[#out + 1] = horizon end
  if whole or nxt ~= nxt0 then out[#out + 1] = 'next'; out[#out + 1] = nxt end
  if whole or qn ~= qn0 then out[#out + 1] = 'queued'; out[#out + 1] = qn end
  if gone then
    redis.call('HDEL', P, unpack(gone))
  elseif gone1 then
    redis.call('HDEL', P, gone1)
  end
  -- Spelled out for the usual counts: unpack is a C call (~1.5k instructions).
  local n = #out
  if n == 2 then
    redis.call('HSET', P, out[1], out[2])
  elseif n == 4 then
    redis.call('HSET', P, out[1], out[2], out[3], out[4])
  elseif n == 6 then
    redis.call('HSET', P, out[1], out[2], out[3], out[4], out[5], out[6])
  elseif n > 0 then
    redis.call('HSET', P, unpack(out))
  end
  if extend then
    local keep = now + 3600000
    if horizon > keep then keep = horizon end
    redis.call('PEXPIREAT', L, horizon)
    redis.call('PEXPIREAT', Q, horizon)
    redis.call('PEXPIREAT', P, keep)
    redis.call('PEXPIREAT', M, keep)
  else
    if whole then redis.call('PEXPIRE', P, 3600000) end
    -- Made again (an empty zset is deleted) within until: without this it would never expire.
    if freshLease then redis.call('PEXPIREAT', L, horizon) end
    if freshQueue then redis.call('PEXPIREAT', Q, horizon) end
  end
  if nxt >= 0 then
    earliest = 0
    if nxt > now then earliest = nxt - now end
  end
end
`

/**
 * ARGV[3] weight, ARGV[4] lease ttl (ms), ARGV[5] 'try' or 'wait', ARGV[6]
 * the channel that wakes this waiter. Idempotent by id (a retry after a
 * reconnect never counts twice): held already -> renewed; queued -> its
 * wait's lease renewed; else a new attempt. Answers {1 held | 0 queued |
 * -1 refused (try) | -2 other permits, ms to the earliest expiry | stored permits}.
 */
export const semaphoreAcquire = script(`${prelude(", 'seq'")}
local weight, ttl = ARGV[3] + 0, ARGV[4] + 0
-- Permits free, yet someone queued: only a head too heavy for them (or a
-- count gone wrong, which this heals) can explain it.
if qn > 0 and used + weight <= cap then
  ${tools}
  grant()
end
local s = entry(id)
local code = 0
if s == 'h' or s == 'q' then
  lease(id, now + ttl, ttl)
  if s == 'h' then code = 1 end
else
  -- ARGV's decimal text as the client sent it (String of a validated integer), not re-formatted.
  local rest = ' ' .. ARGV[3] .. ' ' .. ARGV[4] .. ' ' .. ARGV[6]
  -- Nobody held or waited: L was empty, and this makes it anew.
  freshLease = used == 0 and qn == 0
  if qn == 0 and used + weight <= cap then
    set(id, 'h' .. rest)
    lease(id, now + ttl, ttl)
    used = used + weight
    acquired = acquired + 1
    code = 1
  elseif ARGV[5] == 'try' then
    freshLease = false
    refused = 1
    code = -1
  else
    set(id, 'q' .. rest)
    -- The last ticket (as the HMGET read it), one up, written with the rest
    -- of P: the same field an HINCRBY would keep, one call fewer. A damaged
    -- one starts again from 0 rather than fail every wait.
    local last = tonumber(p[7])
    if not last or not (last >= 0 and last < 9007199254740991) then last = 0 end
    -- Formatted once for both calls (%d: cheaper than the %.17g a number argument gets).
    seq = string.format('%d', last + 1)
    redis.call('ZADD', Q, seq, id)
    freshQueue = qn == 0
    qn = qn + 1
    lease(id, now + ttl, ttl)
  end
end
${finish}
return {code, earliest}
`)

/** Renews a holder's lease: {1, earliest} if it still holds, {0, earliest} if the lease is lost. */
export const semaphoreRenew = script(`${prelude()}
local s, _, ttl = entry(id)
local code = 0
if s == 'h' then
  lease(id, now + ttl, ttl)
  code = 1
end
${finish}
return {code, earliest}
`)

/**
 * Releases a lease or withdraws a wait (an unknown id does nothing; '' only
 * sweeps expired leases), then serves the queue. ARGV[3], if given, is the
 * counter of why a wait was withdrawn ('timedOut', 'aborted', 'refused': the
 * client's side of the metrics, folded into the call it makes anyway).
 * Answers {1, earliest}.
 */
export const semaphoreRelease = script(`${prelude()}
if id ~= '' then
  ${dropping('id')}
end
if ARGV[3] == 'timedOut' or ARGV[3] == 'aborted' or ARGV[3] == 'refused' then ended = ARGV[3] end
${granting}
${finish}
return {1, earliest}
`)

/**
 * Answers {queued waits, permits held, then the metrics counters in
 * COUNTERS' order} for `metrics()`: one round trip.
 */
export const semaphoreMetrics = script(`${prelude()}
qn = redis.call('ZCARD', Q)
${finish}
local m = redis.call('HMGET', M, 'acquired', 'refused', 'timedOut', 'aborted')
return {qn, used, m[1] or '0', m[2] or '0', m[3] or '0', m[4] or '0'}
`)

/** Answers {free permits, queued waits}. */
export const semaphoreState = script(`${prelude()}
qn = redis.call('ZCARD', Q)
${finish}
local free = cap - used
if qn > 0 then free = 0 end
return {free, qn}
`)
