package guard

// The gate's Lua scripts. Every key of one call carries the app's hash tag
// (prefix), so that each call runs in one Redis Cluster slot. Times come
// from Redis' clock, in milliseconds.
//
// An app's state:
//
//	circuit:<endpoint>  hash: fails, open_until
//	probe:<endpoint>    set while a probe of a half-open circuit is out
//	slots:<endpoint>    sorted set: holders (delivery IDs) by when their slot's lease ends
//	slots               the same, for the whole app
//	room:<endpoint>     sorted set: waiters ("queue\nid") by when they came (µs)
//	rooms               sorted set: endpoints with waiters, by when one was last woken
//	backlog:<endpoint>  counter of unfinished deliveries
//	backlog             the same, for the whole app
//
// Slots lapse one by one, so a worker that died holding some loses them
// one lease after it last renewed them (renewScript); a counter with a TTL
// would keep them as long as other deliveries refreshed it. A slot key
// lives as long as its last lease: its TTL is only ever extended.

// enterScript admits a delivery or tells how long it waits.
//
// KEYS: circuit, probe, endpoint slots, app slots, endpoint room, rooms.
// ARGV: holder, member, per-endpoint cap, per-app cap, slot lease, probe TTL,
// cooldown, endpoint ID, park, park max, room TTL, no room ('1': a busy
// delivery does not wait in the room), park step.
//
// It returns {0, probe, 0} to admit, or {reason, wait, released}: reason 1
// for an open circuit, 2 for a busy endpoint, 3 for a busy app; released
// is above zero when slots held for the delivery by a wake were given up.
const enterScript = `
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local ttl = tonumber(ARGV[5])
local function unreserve()
  return redis.call('ZREM', KEYS[3], ARGV[1]) + redis.call('ZREM', KEYS[4], ARGV[1])
end
local function leave_room()
  if redis.call('ZREM', KEYS[5], ARGV[2]) == 1 and redis.call('ZCARD', KEYS[5]) == 0 then
    redis.call('ZREM', KEYS[6], ARGV[8])
  end
end
local probe = 0
local open_until = tonumber(redis.call('HGET', KEYS[1], 'open_until') or '0')
if open_until > 0 then
  local wait = nil
  if now < open_until then
    wait = open_until - now
  elseif redis.call('SET', KEYS[2], '1', 'NX', 'PX', ARGV[6]) then
    probe = 1
  else
    wait = tonumber(ARGV[7])
  end
  if wait then
    leave_room()
    return {1, wait, unreserve()}
  end
end
redis.call('ZREMRANGEBYSCORE', KEYS[3], '-inf', now)
redis.call('ZREMRANGEBYSCORE', KEYS[4], '-inf', now)
local busy = 0
local cap = 0
if not redis.call('ZSCORE', KEYS[3], ARGV[1]) and redis.call('ZCARD', KEYS[3]) >= tonumber(ARGV[3]) then
  busy, cap = 2, tonumber(ARGV[3])
elseif not redis.call('ZSCORE', KEYS[4], ARGV[1]) and redis.call('ZCARD', KEYS[4]) >= tonumber(ARGV[4]) then
  busy, cap = 3, tonumber(ARGV[4])
end
if busy > 0 then
  if probe == 1 then redis.call('DEL', KEYS[2]) end
  local released = unreserve()
  if ARGV[12] == '1' then return {busy, tonumber(ARGV[9]), released} end
  -- Microseconds: waiters of one millisecond keep their order.
  redis.call('ZADD', KEYS[5], 'NX', tonumber(t[1]) * 1000000 + tonumber(t[2]), ARGV[2])
  redis.call('ZADD', KEYS[6], 'NX', now, ARGV[8])
  redis.call('PEXPIRE', KEYS[5], ARGV[11])
  redis.call('PEXPIRE', KEYS[6], ARGV[11])
  local ahead = redis.call('ZRANK', KEYS[5], ARGV[2])
  local wait = tonumber(ARGV[9])
  if ahead >= cap then
    wait = math.min(tonumber(ARGV[10]), tonumber(ARGV[13]) * math.floor(ahead / cap))
  end
  return {busy, wait, released}
end
for _, k in ipairs({KEYS[3], KEYS[4]}) do
  redis.call('ZADD', k, now + ttl, ARGV[1])
  if redis.call('PTTL', k) < ttl then redis.call('PEXPIRE', k, ttl) end
end
leave_room()
return {0, probe, 0}
`

// leaveScript settles an admitted delivery and wakes waiters.
//
// KEYS: circuit, probe, endpoint slots, app slots, rooms, endpoint backlog,
// app backlog.
// ARGV: holder, sent, ok, finished, threshold, cooldown, circuit TTL,
// per-endpoint cap, per-app cap, slot lease, endpoint ID, key prefix, wake
// scan, room TTL, most waiters to wake.
//
// It returns {endpoint, member, endpoint, member, ...} of the waiters
// woken, their slots held, or false. The first comes from the settled
// endpoint's room if its circuit is closed, else from the app's other
// rooms, least recently woken first; more are woken, from the rooms least
// recently woken, while the app has free slots: slots that lapsed (of a
// dead worker, or held for a waiter whose task never came) woke nobody.
const leaveScript = `
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local prefix = ARGV[12]
redis.call('ZREM', KEYS[3], ARGV[1])
redis.call('ZREM', KEYS[4], ARGV[1])
if ARGV[2] == '1' then
  if ARGV[3] == '1' then
    redis.call('DEL', KEYS[1], KEYS[2])
  else
    local fails = redis.call('HINCRBY', KEYS[1], 'fails', 1)
    redis.call('PEXPIRE', KEYS[1], ARGV[7])
    local probing = redis.call('DEL', KEYS[2]) == 1
    if fails >= tonumber(ARGV[5]) or probing then
      redis.call('HSET', KEYS[1], 'open_until', now + tonumber(ARGV[6]))
    end
  end
end
if ARGV[4] == '1' then
  for _, k in ipairs({KEYS[6], KEYS[7]}) do
    if tonumber(redis.call('GET', k) or '0') > 0 then redis.call('DECR', k) end
  end
end
if redis.call('EXISTS', KEYS[5]) == 0 then return false end
local cap_ep, cap_app, ttl = tonumber(ARGV[8]), tonumber(ARGV[9]), tonumber(ARGV[10])
redis.call('ZREMRANGEBYSCORE', KEYS[4], '-inf', now)
if redis.call('ZCARD', KEYS[4]) >= cap_app then return false end
local function wake(ep)
  local room = prefix .. 'room:' .. ep
  if redis.call('ZCARD', room) == 0 then
    redis.call('ZREM', KEYS[5], ep)
    return false
  end
  if tonumber(redis.call('HGET', prefix .. 'circuit:' .. ep, 'open_until') or '0') > now then
    return false
  end
  local slots = prefix .. 'slots:' .. ep
  redis.call('ZREMRANGEBYSCORE', slots, '-inf', now)
  if redis.call('ZCARD', slots) >= cap_ep then return false end
  local w = redis.call('ZPOPMIN', room)[1]
  local holder = string.match(w, '\n(.*)$') or w
  for _, k in ipairs({slots, KEYS[4]}) do
    redis.call('ZADD', k, now + ttl, holder)
    if redis.call('PTTL', k) < ttl then redis.call('PEXPIRE', k, ttl) end
  end
  if redis.call('ZCARD', room) == 0 then
    redis.call('ZREM', KEYS[5], ep)
  else
    redis.call('ZADD', KEYS[5], now, ep)
    redis.call('PEXPIRE', KEYS[5], ARGV[14])
  end
  return {ep, w}
end
local woken, most = {}, tonumber(ARGV[15])
local function add(w)
  table.insert(woken, w[1])
  table.insert(woken, w[2])
end
local first = wake(ARGV[11])
if first then add(first) end
local scanned = {}
scanned[ARGV[11]] = not first
while #woken < 2 * most and redis.call('ZCARD', KEYS[4]) < cap_app do
  local any = false
  for _, ep in ipairs(redis.call('ZRANGE', KEYS[5], 0, tonumber(ARGV[13]) - 1)) do
    if #woken == 2 * most or redis.call('ZCARD', KEYS[4]) >= cap_app then break end
    if not scanned[ep] then
      local w = wake(ep)
      if w then add(w) any = true else scanned[ep] = true end
    end
  end
  if not any then break end
end
if #woken == 0 then return false end
return woken
`

// renewScript extends a held slot's lease: the admitted delivery still
// runs. A slot that lapsed meanwhile (its process stalled for a lease) is
// taken again, even past the cap: the delivery is in flight all the same,
// and nobody else is admitted until the count is below the cap again.
//
// KEYS: endpoint slots, app slots.
// ARGV: holder, slot lease.
const renewScript = `
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local lease = tonumber(ARGV[2])
for _, k in ipairs(KEYS) do
  redis.call('ZADD', k, now + lease, ARGV[1])
  if redis.call('PTTL', k) < lease then redis.call('PEXPIRE', k, lease) end
end
return 0
`

// finishScript takes one off each backlog counter in KEYS, never below
// zero.
const finishScript = `
for _, k in ipairs(KEYS) do
  if tonumber(redis.call('GET', k) or '0') > 0 then redis.call('DECR', k) end
end
return 0
`
