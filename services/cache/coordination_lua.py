"""The Lua scripts behind the coordination RPCs (services/cache/coordination.py).

Each script is atomic on Redis and reads the time from Redis itself (`TIME`), so every replica
of every service sees one clock. The keys of one script share a hash tag (`{rl:...}`,
`{spend:...}`, `{lease:...}`), so on Redis Cluster they live in one slot; no script touches a key
it was not given. Times are milliseconds.

Rate limiter (KEYS: in-flight ZSET permit -> lease expiry, finished ZSET permit -> finished at,
token HASH permit -> "input output", state HASH). A granted permit is in flight until settled, or
until its lease expires (a replica that died never settles; its request counts as finished at
the expiry). A finished request holds its slot for one window after it finished. Running sums of
the in-flight (fl_*) and finished (fn_*) tokens live in the state hash with `paused_until` and
`tat`, the earliest time of the next grant (grants are spaced window / requests apart).

Spending (KEYS: ledger HASH, reservation ZSET id -> expiry, reservation HASH id -> "tokens cost
period:index ..."). A ledger holds, per period length p, the index of the current period (`p:i`,
floor(now / p); 0 for a scope's whole life), spent (`p:st`, `p:sc`) and reserved (`p:rt`, `p:rc`)
tokens and USD. A period that ended is reset when next touched; a reservation only releases its
hold on the period it was made in.
"""

from __future__ import annotations

_PRELUDE = """
if redis.replicate_commands then redis.replicate_commands() end
local function now_ms()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end
-- Sets each key's TTL to at least `ms` (never shortens what another call needs).
local function keep(ms)
  for i = 1, #KEYS do
    if redis.call('PTTL', KEYS[i]) < ms then redis.call('PEXPIRE', KEYS[i], ms) end
  end
end
"""

_RATE_COMMON = (
    _PRELUDE
    + """
local INFLIGHT, FINISHED, TOKENS, STATE = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
-- HINCRBY with a Lua number: skips 0 (Lua's -0 is not an integer to Redis).
local function add(field, delta)
  if delta ~= 0 then redis.call('HINCRBY', STATE, field, string.format('%d', delta)) end
end
local function pair(value)
  if not value then return 0, 0 end
  local a, b = string.match(value, '^(%d+) (%d+)$')
  return tonumber(a) or 0, tonumber(b) or 0
end
-- Expired leases become finished requests (at their expiry); requests that finished a window
-- or more ago leave it.
local function housekeep(now, window)
  local expired = redis.call('ZRANGEBYSCORE', INFLIGHT, '-inf', now, 'WITHSCORES')
  for i = 1, #expired, 2 do
    local id, at = expired[i], tonumber(expired[i + 1])
    local tin, tout = pair(redis.call('HGET', TOKENS, id))
    redis.call('ZREM', INFLIGHT, id)
    redis.call('ZADD', FINISHED, at, id)
    add('fl_in', 0 - tin)
    add('fl_out', 0 - tout)
    add('fn_in', tin)
    add('fn_out', tout)
  end
  local old = redis.call('ZRANGEBYSCORE', FINISHED, '-inf', now - window)
  for _, id in ipairs(old) do
    local tin, tout = pair(redis.call('HGET', TOKENS, id))
    redis.call('HDEL', TOKENS, id)
    add('fn_in', 0 - tin)
    add('fn_out', 0 - tout)
  end
  if #old > 0 then redis.call('ZREMRANGEBYSCORE', FINISHED, '-inf', now - window) end
end
local function paused_left(now)
  return math.max(0, (tonumber(redis.call('HGET', STATE, 'paused_until')) or 0) - now)
end
"""
)

# ARGV: permit, window, requests, tokens, input limit, output limit, input estimate, output
# estimate, lease. Returns {granted 0/1, wait ms, reason, paused ms}.
RATE_ACQUIRE = (
    _RATE_COMMON
    + """
local permit = ARGV[1]
local window, requests = tonumber(ARGV[2]), tonumber(ARGV[3])
local limit = {tonumber(ARGV[4]), tonumber(ARGV[5]), tonumber(ARGV[6])}
local est_in, est_out, lease = tonumber(ARGV[7]), tonumber(ARGV[8]), tonumber(ARGV[9])
local now = now_ms()
housekeep(now, window)
keep(window + lease + 1000)
if redis.call('ZSCORE', INFLIGHT, permit) then
  return {1, 0, '', paused_left(now)}  -- Granted already (a retried call).
end
local wait, reason = 0, ''
local function hold(ms, why)
  if ms > wait then wait, reason = ms, why end
end
local paused = paused_left(now)
hold(paused, 'paused')
local inflight, finished = redis.call('ZCARD', INFLIGHT), redis.call('ZCARD', FINISHED)
if inflight + finished >= requests then
  if inflight >= requests then
    hold(window, 'requests')  -- Only a request finishing now frees a slot, a window from now.
  else
    local leaving = redis.call('ZRANGE', FINISHED, inflight + finished - requests,
                               inflight + finished - requests, 'WITHSCORES')
    hold(tonumber(leaving[2]) + window - now, 'requests')
  end
end
local state = redis.call('HMGET', STATE, 'tat', 'fl_in', 'fl_out', 'fn_in', 'fn_out')
local tat = tonumber(state[1]) or 0
hold(tat - now, 'pacing')
local fl = {0, tonumber(state[2]) or 0, tonumber(state[3]) or 0}
local fn = {0, tonumber(state[4]) or 0, tonumber(state[5]) or 0}
fl[1], fn[1] = fl[2] + fl[3], fn[2] + fn[3]
local est = {est_in + est_out, est_in, est_out}
local names = {'tokens', 'input_tokens', 'output_tokens'}
for kind = 1, 3 do
  local cap = limit[kind]
  if cap > 0 and fl[kind] + fn[kind] + est[kind] > cap then
    if fl[kind] + est[kind] > cap then
      -- Only a settling request can help (its real use is often below its estimate): ask
      -- again after a grant interval or a twentieth of the window, whichever is longer.
      hold(math.min(window, math.max(window / requests, window / 20)), names[kind])
    else
      -- The oldest finished requests leave first: wait for enough of them.
      local excess, freed, start = fl[kind] + fn[kind] + est[kind] - cap, 0, 0
      local found = false
      while not found do
        local batch = redis.call('ZRANGE', FINISHED, start, start + 255, 'WITHSCORES')
        if #batch == 0 then break end
        for i = 1, #batch, 2 do
          local tin, tout = pair(redis.call('HGET', TOKENS, batch[i]))
          local used = ({tin + tout, tin, tout})[kind]
          freed = freed + used
          if freed >= excess then
            hold(tonumber(batch[i + 1]) + window - now, names[kind])
            found = true
            break
          end
        end
        start = start + 256
      end
      if not found then hold(window, names[kind]) end
    end
  end
end
if wait > 0 then return {0, math.ceil(wait), reason, math.ceil(paused)} end
redis.call('ZADD', INFLIGHT, now + lease, permit)
redis.call('HSET', TOKENS, permit, est_in .. ' ' .. est_out)
add('fl_in', est_in)
add('fl_out', est_out)
redis.call('HSET', STATE, 'tat', tostring(math.max(tat, now) + window / requests))
return {1, 0, '', 0}
"""
)

# ARGV: permit, window, input used, output used, pause. Returns the paused ms left.
RATE_SETTLE = (
    _RATE_COMMON
    + """
local permit, window = ARGV[1], tonumber(ARGV[2])
local used_in, used_out, pause = tonumber(ARGV[3]), tonumber(ARGV[4]), tonumber(ARGV[5])
local now = now_ms()
housekeep(now, window)
keep(window + 1000)
local tin, tout = pair(redis.call('HGET', TOKENS, permit))
if redis.call('ZREM', INFLIGHT, permit) == 1 then
  add('fl_in', 0 - tin)
  add('fl_out', 0 - tout)
elseif redis.call('ZREM', FINISHED, permit) == 1 then
  -- Its lease ran out first and it counted from then: it counts from now, as it really used.
  add('fn_in', 0 - tin)
  add('fn_out', 0 - tout)
end
redis.call('ZADD', FINISHED, now, permit)
redis.call('HSET', TOKENS, permit, used_in .. ' ' .. used_out)
add('fn_in', used_in)
add('fn_out', used_out)
if pause > 0 then
  local until_ms = math.max(tonumber(redis.call('HGET', STATE, 'paused_until')) or 0, now + pause)
  redis.call('HSET', STATE, 'paused_until', until_ms)
  keep(until_ms - now + 1000)
end
return math.ceil(paused_left(now))
"""
)

_SPEND_COMMON = (
    _PRELUDE
    + """
local LEDGER, EXPIRY, DETAIL = KEYS[1], KEYS[2], KEYS[3]
local now = now_ms()
local function index_of(period)
  if period == 0 then return 0 end
  return math.floor(now / (period * 1000))
end
local function num(field) return tonumber(redis.call('HGET', LEDGER, field)) or 0 end
-- A period that ended starts again from nothing; returns the current period's index.
local function roll(period)
  local index = index_of(period)
  if tonumber(redis.call('HGET', LEDGER, period .. ':i')) ~= index then
    redis.call('HSET', LEDGER, period .. ':i', index, period .. ':st', 0, period .. ':sc', 0,
               period .. ':rt', 0, period .. ':rc', 0)
  end
  return index
end
-- Takes a reservation's hold off the periods it was made in (ones that have since ended are
-- already reset).
local function release(id)
  local detail = redis.call('HGET', DETAIL, id)
  redis.call('HDEL', DETAIL, id)
  redis.call('ZREM', EXPIRY, id)
  if not detail then return end
  local tokens, cost, held = string.match(detail, '^(%S+) (%S+)(.*)$')
  for period, index in string.gmatch(held, '(%d+):(%d+)') do
    if redis.call('HGET', LEDGER, period .. ':i') == index then
      redis.call('HINCRBY', LEDGER, period .. ':rt', string.format('%d', 0 - tonumber(tokens)))
      redis.call('HINCRBYFLOAT', LEDGER, period .. ':rc', string.format('%.9f', -tonumber(cost)))
    end
  end
end
for _, id in ipairs(redis.call('ZRANGEBYSCORE', EXPIRY, '-inf', now)) do release(id) end
local count = tonumber(ARGV[6])
local periods, max_tokens, max_cost = {}, {}, {}
for i = 1, count do
  periods[i] = tonumber(ARGV[6 + 3 * i - 2])
  max_tokens[i] = tonumber(ARGV[6 + 3 * i - 1])
  max_cost[i] = tonumber(ARGV[6 + 3 * i])
end
local function totals()
  local out = {}
  for i = 1, count do
    local p = periods[i]
    roll(p)
    out[#out + 1] = math.max(0, num(p .. ':st'))
    out[#out + 1] = math.max(0, num(p .. ':rt'))
    out[#out + 1] = string.format('%.9f', math.max(0, num(p .. ':sc')))
    out[#out + 1] = string.format('%.9f', math.max(0, num(p .. ':rc')))
  end
  return out
end
"""
)

# ARGV: id, tokens, cost, lease, idle, count, then count x (period, max tokens, max cost).
# Returns {granted 0/1, refused-by index (0-based), "tokens"/"cost_usd", retry ms, totals...}.
SPEND_RESERVE = (
    _SPEND_COMMON
    + """
local id, tokens, cost = ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3])
local lease, idle = tonumber(ARGV[4]), tonumber(ARGV[5])
keep(idle)
local function answer(granted, by, what, retry)
  local out = {granted, by, what, retry}
  for _, value in ipairs(totals()) do out[#out + 1] = value end
  return out
end
if redis.call('ZSCORE', EXPIRY, id) then return answer(1, 0, '', 0) end  -- A retried call.
for i = 1, count do
  local p = periods[i]
  local index = roll(p)
  local refused = ''
  if max_tokens[i] > 0 and num(p .. ':st') + num(p .. ':rt') + tokens > max_tokens[i] then
    refused = 'tokens'
  elseif max_cost[i] > 0 and num(p .. ':sc') + num(p .. ':rc') + cost > max_cost[i] + 1e-9 then
    refused = 'cost_usd'
  end
  if refused ~= '' then
    local retry = 0
    if p > 0 then retry = (index + 1) * p * 1000 - now end
    return answer(0, i - 1, refused, retry)
  end
end
local held = ''
for i = 1, count do
  local p = periods[i]
  redis.call('HINCRBY', LEDGER, p .. ':rt', string.format('%d', tokens))
  redis.call('HINCRBYFLOAT', LEDGER, p .. ':rc', string.format('%.9f', cost))
  held = held .. ' ' .. p .. ':' .. index_of(p)
end
redis.call('HSET', DETAIL, id, tokens .. ' ' .. string.format('%.9f', cost) .. held)
redis.call('ZADD', EXPIRY, now + lease, id)
return answer(1, 0, '', 0)
"""
)

# ARGV: id, tokens, cost, (unused), idle, count, then count x (period, max tokens, max cost).
# Returns the totals.
SPEND_SETTLE = (
    _SPEND_COMMON
    + """
local id, tokens, cost, idle = ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3]), tonumber(ARGV[5])
keep(idle)
release(id)
for i = 1, count do
  local p = periods[i]
  roll(p)
  redis.call('HINCRBY', LEDGER, p .. ':st', string.format('%d', tokens))
  redis.call('HINCRBYFLOAT', LEDGER, p .. ':sc', string.format('%.9f', cost))
end
return totals()
"""
)

# Leases. KEYS[1] the lease; ARGV holder, ttl. Each returns {held 0/1, ttl ms left}.
LEASE_ACQUIRE = """
if redis.call('SET', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2]) then return {1, tonumber(ARGV[2])} end
if redis.call('GET', KEYS[1]) == ARGV[1] then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
  return {1, tonumber(ARGV[2])}
end
return {0, math.max(0, redis.call('PTTL', KEYS[1]))}
"""

LEASE_RENEW = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
  return {1, tonumber(ARGV[2])}
end
return {0, math.max(0, redis.call('PTTL', KEYS[1]))}
"""

LEASE_RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  redis.call('DEL', KEYS[1])
  return {0, 0}
end
return {0, math.max(0, redis.call('PTTL', KEYS[1]))}
"""
