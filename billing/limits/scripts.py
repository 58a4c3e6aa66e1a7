"""The three Lua scripts of `RedisLimiter`, kept as Python strings so they ship with the package.

`LocalLimiter` (local.py) is the same algorithm in Python, giving the same
answers: a change to what a script decides must be made there too, and the
shared tests run every case against both. In Redis's Lua, every table,
closure, formatted number and command a call makes costs Redis time: the
acquire keeps its buckets in one flat table, inlines its checks, and clears
slots whose lease ran out only when they would refuse.

Rate limits are token buckets kept as one number each, the time at which the
bucket will be full again (a "theoretical arrival time", GCRA): taking n of a
per-minute limit L pushes it n × 60000/L ms later, and a request passes while
that point stays within a minute from now. A call that may fill only part of
a limit (`Ask.share`: a batch line) is given the most it may fill (`most`, at
least what it takes): it passes while the point stays within that part of a
minute, and what it takes still pushes the point by the whole limit's rate, so
every process sees one bucket and interactive calls find the rest of it free.
A bucket in debt (a request used more tokens than it reserved) is simply one
whose point lies further out.
Times are Unix milliseconds, from Redis's clock unless the caller passes one.
A bucket's debt is capped (MAX_DEBT, about 35 years), so its expiry stays an
integer Redis takes. A slot in flight is a member of its scope's sorted set,
scored by the end of its lease (in whole milliseconds, rounded up), which its
process renews while the call runs (leases.py).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field

_CLOCK = """
local now
if ARGV[1] == '' then
  local t = redis.call('TIME')
  now = tonumber(t[1]) * 1000 + tonumber(t[2]) / 1000
else
  now = tonumber(ARGV[1])
end
local MINUTE = 60000
local MAX_DEBT = 1099511627776  -- DEBT_MAX_MS of verdicts.py
"""

# KEYS: for each window, the keys of its limits that are set (rpm, tpm, concurrency), then one per budget.
# ARGV: now_ms or '', request id, tokens, cost, lease_ms, #windows, #budgets,
#       then rpm, tpm, concurrency, rpm's most, tpm's most per window (-1 = none; concurrency is already the most
#       the call may fill), then limit, spent, ttl per budget.
ACQUIRE_SOURCE = (
    _CLOCK
    + """
local call, floor, ceil, format = redis.call, math.floor, math.ceil, string.format
local member, tokens, cost, lease = ARGV[2], tonumber(ARGV[3]), tonumber(ARGV[4]), tonumber(ARGV[5])
local SLACK = 0.01
local reply = {1, floor(now)}
local ok = true
local key_at, arg_at = 0, 7
-- Kept flat, five entries a bucket (key, limit, reply slot, base, base after this call), and inline rather
-- than in helper functions: every table and closure a call makes costs Redis time, as much as a command.
local buckets, flights, counters = {}, {}, {}

for _ = 1, tonumber(ARGV[6]) do
  local cap = tonumber(ARGV[arg_at + 3])
  for part = 1, 2 do
    local limit, most, amount = tonumber(ARGV[arg_at + part]), tonumber(ARGV[arg_at + 3 + part]), 1
    if part == 2 then amount = tokens end
    if limit >= 0 then
      key_at = key_at + 1
      local key, slot = KEYS[key_at], #reply + 1
      local base = tonumber(call('GET', key)) or now
      if base < now then base = now end
      local after = base
      local wait = 0
      if limit <= 0 or amount > limit then
        wait = -1
      else
        after = base + amount * (MINUTE / limit)
        local span = MINUTE
        if most < limit then span = most * (MINUTE / limit) end
        local late = after - now - span
        if late > SLACK then wait = ceil(late) end
      end
      if wait ~= 0 then ok = false end
      reply[slot], reply[slot + 1], reply[slot + 2] = wait, 0, 0
      local at = #buckets
      buckets[at + 1], buckets[at + 2], buckets[at + 3] = key, limit, slot
      buckets[at + 4], buckets[at + 5] = base, after
    end
  end
  arg_at = arg_at + 5
  if cap >= 0 then
    key_at = key_at + 1
    local key = KEYS[key_at]
    local in_flight = call('ZCARD', key)
    if in_flight >= cap then
      -- Slots whose lease ran out (their process died) are only worth removing when they would refuse.
      call('ZREMRANGEBYSCORE', key, '-inf', format('%.17g', now))
      in_flight = call('ZCARD', key)
    end
    if in_flight >= cap then ok = false end
    reply[#reply + 1] = in_flight
    flights[#flights + 1] = key
  end
end
for _ = 1, tonumber(ARGV[7]) do
  local limit, spent, ttl = tonumber(ARGV[arg_at + 1]), ARGV[arg_at + 2], tonumber(ARGV[arg_at + 3])
  arg_at = arg_at + 3
  key_at = key_at + 1
  local key = KEYS[key_at]
  local current = tonumber(call('GET', key))
  local least = tonumber(spent)
  if current == nil then
    if ttl > 0 then call('SET', key, spent, 'EX', ttl) else call('SET', key, spent) end
    current = least
  elseif current < least then
    -- The ledger knows of spend this counter missed (it was seeded from an older snapshot).
    call('SET', key, spent, 'KEEPTTL')
    current = least
  end
  if current >= limit then ok = false end
  reply[#reply + 1] = current
  counters[#counters + 1] = key
end

if ok and cost > 0 then
  -- The one write that can fail (a counter that is not an integer, or would overflow) goes first, and
  -- is undone if it does, so a failing request leaves no reservation behind.
  for i, key in ipairs(counters) do
    local added = redis.pcall('INCRBY', key, ARGV[4])
    if type(added) == 'table' and added.err then
      for j = 1, i - 1 do call('DECRBY', counters[j], ARGV[4]) end
      return redis.error_reply('ERR budget counter ' .. key .. ': ' .. added.err)
    end
  end
end
if ok then
  -- A whole millisecond: a small sorted set keeps integer scores as integers, and Redis then inserts among
  -- them at a third of the cost of scores it must parse as decimals (about 6 us per ZADD with 32 in flight).
  local ends, keep = format('%d', ceil(now + lease)), ceil(lease + MINUTE)
  for _, key in ipairs(flights) do
    call('ZADD', key, ends, member)
    call('PEXPIRE', key, keep)
  end
else
  reply[1] = 0
end
for at = 1, #buckets, 5 do
  local limit, slot, base = buckets[at + 1], buckets[at + 2], buckets[at + 3]
  local state = base
  if ok then state = buckets[at + 4] end
  if state > base then
    call('SET', buckets[at], format('%.17g', state), 'PX', ceil(state - now) + MINUTE)
  end
  if limit > 0 then
    reply[slot + 1] = floor((MINUTE - (state - now)) / (MINUTE / limit) + 1e-6)
  end
  reply[slot + 2] = ceil(state - now - 1e-6)
end
-- One string rather than an array: parsing a long array of integers costs the caller more.
for i = 1, #reply do reply[i] = format('%d', reply[i]) end
return table.concat(reply, ' ')
"""
)

# KEYS: the TPM bucket of every window in the ticket, its concurrency sets, its budget counters.
# ARGV: now_ms or '', request id, tokens used - reserved, cost - reserved, #tpm, #concurrency, #budgets,
#       then each window's tpm.
SETTLE_SOURCE = (
    _CLOCK
    + """
local member, extra, cost_delta = ARGV[2], tonumber(ARGV[3]), tonumber(ARGV[4])
local buckets, flights, counters = tonumber(ARGV[5]), tonumber(ARGV[6]), tonumber(ARGV[7])
local key_at = 0
for i = 1, buckets do
  key_at = key_at + 1
  local limit = tonumber(ARGV[7 + i])
  if extra ~= 0 and limit > 0 then
    local key = KEYS[key_at]
    local base = tonumber(redis.call('GET', key)) or now
    if base < now then base = now end
    local state = math.min(base + extra * (MINUTE / limit), now + MAX_DEBT)
    if state > now then
      redis.call('SET', key, string.format('%.17g', state), 'PX', math.ceil(state - now) + MINUTE)
    else
      redis.call('DEL', key)
    end
  end
end
for _ = 1, flights do
  key_at = key_at + 1
  redis.call('ZREM', KEYS[key_at], member)
end
local failure
for _ = 1, counters do
  key_at = key_at + 1
  -- A counter that has gone (period over, Redis restarted) is re-seeded from the ledger on next use.
  if cost_delta ~= 0 and redis.call('EXISTS', KEYS[key_at]) == 1 then
    -- A counter that cannot take it must not keep the others from being settled.
    local added = redis.pcall('INCRBY', KEYS[key_at], ARGV[4])
    if type(added) == 'table' and added.err and failure == nil then
      failure = 'ERR budget counter ' .. KEYS[key_at] .. ': ' .. added.err
    end
  end
end
if failure then return redis.error_reply(failure) end
return 0
"""
)


# KEYS: the concurrency set of each slot to renew. ARGV: now_ms or '', lease_ms, then each slot's request id.
# Only a slot still held is renewed: one settled, or whose lease ran out, is not brought back.
RENEW_SOURCE = (
    _CLOCK
    + """
local lease = tonumber(ARGV[2])
local ends = string.format('%d', math.ceil(now + lease))  -- a whole millisecond, as the acquire's
local renewed = 0
for i, key in ipairs(KEYS) do
  local held = tonumber(redis.call('ZSCORE', key, ARGV[2 + i]))
  if held and held > now then
    redis.call('ZADD', key, 'XX', ends, ARGV[2 + i])
    redis.call('PEXPIRE', key, math.ceil(lease + MINUTE))
    renewed = renewed + 1
  end
end
return renewed
"""
)


@dataclass(frozen=True, slots=True)
class Script:
    source: str
    sha: str = field(init=False)

    def __post_init__(self) -> None:
        digest = hashlib.sha1(self.source.encode(), usedforsecurity=False).hexdigest()
        object.__setattr__(self, "sha", digest)


ACQUIRE = Script(ACQUIRE_SOURCE)
SETTLE = Script(SETTLE_SOURCE)
RENEW = Script(RENEW_SOURCE)
