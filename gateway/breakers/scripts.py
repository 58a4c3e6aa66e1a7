"""The Lua scripts of `RedisBreakers`: every transition of a breaker is one script, so it is atomic.

`LocalBreakers` (local.py) is the same rules in Python, step for step: a change
here must be made there too, and the shared tests run every case against both.

Keys of one breaker, all with the deployment id as hash tag so a Redis Cluster
keeps them in one slot:

    {prefix}:breaker:{id}:state    hash: state, since, open_until, reason, granted, round_until, consecutive, name
    {prefix}:breaker:{id}:window   hash: "<second>o" and "<second>f", successes and failures per second; expires
    {prefix}:breaker:{id}:errors   list of the last errors, newest first, as JSON {at, reason}

Every script takes the time as its first argument (the calling process's
clock, Unix seconds). Each change of state is published on the breakers'
channel as JSON {id, state, open_until}, inside the script, so messages come
in the order of the changes. A script returns the transitions it made as a
JSON list of {from, to, reason, at, name, open_until}; the process that ran it writes them to
the history, so each is written once.
"""

from __future__ import annotations

# ARGV[1..5]: now, id, name, channel, cooldown. Defines move() and open_until().
_COMMON = """
local now, id, name, channel, cooldown = tonumber(ARGV[1]), ARGV[2], ARGV[3], ARGV[4], tonumber(ARGV[5])
local key = KEYS[1]
local moves = {}
local b = redis.call('HGETALL', key)
local s = {}
for i = 1, #b, 2 do s[b[i]] = b[i + 1] end
local state = s.state or 'closed'
if name ~= '' then
  redis.call('HSET', key, 'name', name)
  s.name = name
end

local function move(to, reason, till)
  reason = string.sub(reason, 1, 300)
  table.insert(moves, {from = state, to = to, reason = reason, at = now, name = s.name or '', open_until = till})
  state, s.open_until = to, tostring(till)
  redis.call('HSET', key, 'state', to, 'since', now, 'reason', reason, 'consecutive', 0, 'open_until', till,
    'granted', 0, 'round_until', 0)
  redis.call('DEL', KEYS[2])
  redis.call('PUBLISH', channel, cjson.encode({id = tonumber(id), state = to, open_until = till}))
end

local function open_until(till, reason)
  if state == 'open' then
    if till > tonumber(s.open_until) then  -- a longer cooldown wins; a shorter one never cuts one short
      s.open_until = tostring(till)
      redis.call('HSET', key, 'open_until', till)
      redis.call('PUBLISH', channel, cjson.encode({id = tonumber(id), state = 'open', open_until = till}))
    end
    return
  end
  move('open', reason, till)
end
"""

# KEYS: state, window, errors. ARGV[6..11]: window, error ratio, min requests, consecutive failures (0: off),
# errors kept, F (failures in the batch); then F + 1 counts: the successes before each failure, in order, and
# after the last one; then one reason per failure. Runs of successes are counted at once, not one by one.
RECORD = (
    _COMMON
    + """
local window, ratio, min_requests, in_a_row = tonumber(ARGV[6]), tonumber(ARGV[7]), tonumber(ARGV[8]), tonumber(ARGV[9])
local errors_kept, failures = tonumber(ARGV[10]), tonumber(ARGV[11])

local function count(outcome, n)
  local second = math.floor(now)
  if redis.call('HEXISTS', KEYS[2], second .. 'o') == 0 then
    -- at most once a second: forget what left the window
    for _, field in ipairs(redis.call('HKEYS', KEYS[2])) do
      if tonumber(string.sub(field, 1, -2)) <= now - window then redis.call('HDEL', KEYS[2], field) end
    end
    redis.call('HSET', KEYS[2], second .. 'o', 0, second .. 'f', 0)
  end
  redis.call('HINCRBY', KEYS[2], second .. outcome, n)
  redis.call('PEXPIRE', KEYS[2], math.ceil((window + 1) * 1000))
end

local function succeed(n)
  if n == 0 or state == 'open' then return end  -- while open: sent before it opened
  if state == 'half_open' then
    move('closed', 'a probe succeeded', 0)
    n = n - 1
    if n == 0 then return end
  end
  count('o', n)
  s.consecutive = '0'
  redis.call('HSET', key, 'consecutive', 0)
end

local function fail(reason)
  if state == 'open' then return end
  if reason == '' then reason = 'failed' end
  redis.call('LPUSH', KEYS[3], cjson.encode({at = now, reason = string.sub(reason, 1, 300)}))
  redis.call('LTRIM', KEYS[3], 0, errors_kept - 1)
  if state == 'half_open' then
    open_until(now + cooldown, 'a probe failed: ' .. reason)
    return
  end
  count('f', 1)
  local consecutive = tonumber(s.consecutive or '0') + 1
  s.consecutive = tostring(consecutive)
  redis.call('HSET', key, 'consecutive', consecutive)
  local counts = redis.call('HGETALL', KEYS[2])
  local total, failed = 0, 0
  for j = 1, #counts, 2 do
    local n = tonumber(counts[j + 1])
    total = total + n
    if string.sub(counts[j], -1) == 'f' then failed = failed + n end
  end
  if in_a_row > 0 and consecutive >= in_a_row then
    open_until(now + cooldown, consecutive .. ' failures in a row: ' .. reason)
  elseif total >= min_requests and failed >= ratio * total then
    open_until(now + cooldown, failed .. ' of ' .. total .. ' requests failed within ' .. ARGV[6] .. ' s: ' .. reason)
  end
end

for i = 1, failures do
  succeed(tonumber(ARGV[11 + i]))
  fail(ARGV[12 + failures + i])
end
succeed(tonumber(ARGV[12 + failures]))
return cjson.encode(moves)
"""
)

# KEYS: state, window. ARGV[6..]: till, reason. Opens the breaker till then (cool_down, degraded latency).
OPEN = (
    _COMMON
    + """
open_until(tonumber(ARGV[6]), ARGV[7])
return cjson.encode(moves)
"""
)

# KEYS: state, window. ARGV[6]: probes per round. Returns {1 or 0, moves}: whether a request may go.
PROBE = (
    _COMMON
    + """
if state == 'closed' then return {1, '[]'} end
if state == 'open' then
  if now < tonumber(s.open_until) then return {0, '[]'} end
  move('half_open', 'cooldown over: probing', 0)
  s.round_until, s.granted = '0', '0'
end
local granted = tonumber(s.granted or '0')
if now >= tonumber(s.round_until or '0') then  -- probes of the last round never answered: count them as lost
  granted = 0
  redis.call('HSET', key, 'round_until', now + cooldown)
end
if granted >= tonumber(ARGV[6]) then return {0, cjson.encode(moves)} end
redis.call('HSET', key, 'granted', granted + 1)
return {1, cjson.encode(moves)}
"""
)

# KEYS: state, window. ARGV[6]: reason.
RESET = (
    _COMMON
    + """
if state ~= 'closed' then move('closed', ARGV[6], 0) end
return cjson.encode(moves)
"""
)
