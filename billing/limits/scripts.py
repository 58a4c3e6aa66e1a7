"""The three Lua scripts of `RedisLimiter`, kept as Python strings so they ship with the package.

`LocalLimiter` (local.py) is the same algorithm in Python, statement for
statement: a change here must be made there too, and the shared tests run
every case against both.

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
scored by the end of its lease, which its process renews while the call runs
(leases.py).
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
local member, tokens, cost, lease = ARGV[2], tonumber(ARGV[3]), tonumber(ARGV[4]), tonumber(ARGV[5])
local SLACK = 0.01
local reply = {1, math.floor(now)}
local ok = true
local key_at, arg_at = 0, 7
local buckets, flights, counters = {}, {}, {}

local function bucket(limit, most, amount)
  key_at = key_at + 1
  local b = {key = KEYS[key_at], limit = limit, slot = #reply + 1}
  b.base = tonumber(redis.call('GET', b.key)) or now
  if b.base < now then b.base = now end
  b.after = b.base
  local wait = 0
  if limit <= 0 or amount > limit then
    wait = -1
  else
    b.after = b.base + amount * (MINUTE / limit)
    local span = MINUTE
    if most < limit then span = most * (MINUTE / limit) end
    local late = b.after - now - span
    if late > SLACK then wait = math.ceil(late) end
  end
  if wait ~= 0 then ok = false end
  reply[b.slot], reply[b.slot + 1], reply[b.slot + 2] = wait, 0, 0
  buckets[#buckets + 1] = b
end

local function flight(limit)
  key_at = key_at + 1
  local key = KEYS[key_at]
  redis.call('ZREMRANGEBYSCORE', key, '-inf', string.format('%.17g', now))
  local in_flight = redis.call('ZCARD', key)
  if in_flight >= limit then ok = false end
  reply[#reply + 1] = in_flight
  flights[#flights + 1] = key
end

local function budget(limit, spent, ttl)
  key_at = key_at + 1
  local key = KEYS[key_at]
  local current = tonumber(redis.call('GET', key))
  local least = tonumber(spent)
  if current == nil then
    if ttl > 0 then redis.call('SET', key, spent, 'EX', ttl) else redis.call('SET', key, spent) end
    current = least
  elseif current < least then
    -- The ledger knows of spend this counter missed (it was seeded from an older snapshot).
    redis.call('SET', key, spent, 'KEEPTTL')
    current = least
  end
  if current >= limit then ok = false end
  reply[#reply + 1] = current
  counters[#counters + 1] = key
end

for _ = 1, tonumber(ARGV[6]) do
  local rpm, tpm, cap = tonumber(ARGV[arg_at + 1]), tonumber(ARGV[arg_at + 2]), tonumber(ARGV[arg_at + 3])
  local rpm_most, tpm_most = tonumber(ARGV[arg_at + 4]), tonumber(ARGV[arg_at + 5])
  arg_at = arg_at + 5
  if rpm >= 0 then bucket(rpm, rpm_most, 1) end
  if tpm >= 0 then bucket(tpm, tpm_most, tokens) end
  if cap >= 0 then flight(cap) end
end
for _ = 1, tonumber(ARGV[7]) do
  budget(tonumber(ARGV[arg_at + 1]), ARGV[arg_at + 2], tonumber(ARGV[arg_at + 3]))
  arg_at = arg_at + 3
end

if ok and cost > 0 then
  -- The one write that can fail (a counter that is not an integer, or would overflow) goes first, and
  -- is undone if it does, so a failing request leaves no reservation behind.
  for i, key in ipairs(counters) do
    local added = redis.pcall('INCRBY', key, ARGV[4])
    if type(added) == 'table' and added.err then
      for j = 1, i - 1 do redis.call('DECRBY', counters[j], ARGV[4]) end
      return redis.error_reply('ERR budget counter ' .. key .. ': ' .. added.err)
    end
  end
end
if ok then
  for _, key in ipairs(flights) do
    redis.call('ZADD', key, string.format('%.17g', now + lease), member)
    redis.call('PEXPIRE', key, math.ceil(lease + MINUTE))
  end
else
  reply[1] = 0
end
for _, b in ipairs(buckets) do
  local state = b.base
  if ok then state = b.after end
  if state > b.base then
    redis.call('SET', b.key, string.format('%.17g', state), 'PX', math.ceil(state - now) + MINUTE)
  end
  if b.limit > 0 then
    reply[b.slot + 1] = math.floor((MINUTE - (state - now)) / (MINUTE / b.limit) + 1e-6)
  end
  reply[b.slot + 2] = math.ceil(state - now - 1e-6)
end
-- One string rather than an array: redis-py parses a long array of integers slowly.
for i = 1, #reply do reply[i] = string.format('%d', reply[i]) end
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
local ends = string.format('%.17g', now + lease)
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
