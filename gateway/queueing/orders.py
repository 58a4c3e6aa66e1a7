"""Whose turn it is in a line: start-time fair queueing, in this process or shared by every process in Redis.

Each waiter gets a tag when it joins its line, and the waiter with the
smallest tag is the line's head:

    tag = max(V, last[flow]) + 1        flow: the waiter's tenant; last[flow]: its previous tag
                                        V: the tag of the waiter served last, less one (its start)

A tenant that sends 40 requests at once gets tags V+1 … V+40; another that then
sends 2 gets V+1 and V+2, so the two are served in turn, one each, until the
second has none left: round robin across tenants, first come first served
within one (start-time fair queueing, Goyal, Vin and Cheng, 1996, with every
request weighing 1: a tag is a finish tag, V the start tag of the one in
service). So a tenant that had no waiter goes next, ahead of the backlog of
one that has many. A waiter that leaves unserved (its deadline, its client
gone) takes its tag with it; when the line empties, V and every `last` are
forgotten.

`LocalOrder` keeps a line of one process. `SharedOrder` keeps one line for
every process in Redis, the same algorithm in Lua (one script call per join,
per head, per leave), under

    {prefix}:queue:{line}:tags     sorted set: waiter -> tag
    {prefix}:queue:{line}:leases   sorted set: waiter -> when its process last vouched for it + LEASE
    {prefix}:queue:{line}:last     hash: flow -> its last tag
    {prefix}:queue:{line}:v        V

(on a Redis Cluster the line's name is braced, `{prefix}:queue:{{line}}:tags`,
so the four keys, which every script touches together, share a hash slot.)

A process asks for the head every POLL seconds while it has waiters in the
line, which renews their leases; a process that died stops renewing, and
its waiters are dropped once their leases run out, so they never hold a
line. If Redis does not answer, the line is kept in this process alone until
it does (logged at most every 30 s): its waiters still get their turns,
ordered among themselves only.
"""

from __future__ import annotations

import heapq
import itertools
import logging
import math
import time
from collections.abc import Collection
from typing import Protocol

from redis.asyncio import Redis
from redis.commands.core import AsyncScript
from redis.exceptions import RedisError

logger = logging.getLogger(__name__)

LEASE = 5.0  # seconds a waiter stays in a shared line without its process vouching for it
ALARM_INTERVAL = 30.0


class Order(Protocol):
    shared: bool

    async def join(self, member: str, flow: int) -> None: ...

    async def head(self, members: Collection[str]) -> str | None:
        """The member whose turn it is (renewing the leases of `members`, this process's waiters)."""
        ...

    async def leave(self, member: str, *, served: bool) -> None: ...


class LocalOrder:
    shared = False

    def __init__(self) -> None:
        self._heap: list[tuple[float, int, str]] = []
        self._tags: dict[str, float] = {}
        self._last: dict[int, float] = {}
        self._virtual = 0.0
        self._seq = itertools.count()

    def tag_of(self, member: str) -> float | None:
        return self._tags.get(member)

    async def join(self, member: str, flow: int) -> None:
        self.add(member, flow)

    def add(self, member: str, flow: int) -> None:
        tag = max(self._virtual, self._last.get(flow, 0.0)) + 1
        self._last[flow] = tag
        self._tags[member] = tag
        heapq.heappush(self._heap, (tag, next(self._seq), member))

    async def head(self, members: Collection[str] = ()) -> str | None:
        return self.first()

    def first(self) -> str | None:
        heap = self._heap
        while heap and heap[0][2] not in self._tags:
            heapq.heappop(heap)  # left already: its entry is dropped lazily
        return heap[0][2] if heap else None

    async def leave(self, member: str, *, served: bool) -> None:
        self.remove(member, served=served)

    def remove(self, member: str, *, served: bool) -> None:
        tag = self._tags.pop(member, None)
        if tag is not None and served:
            self._virtual = max(self._virtual, tag - 1)
        if not self._tags:
            self._heap.clear()
            self._last.clear()
            self._virtual = 0.0


# KEYS: tags, leases, last, v. ARGV: member, flow, now_ms, lease_ms, ttl_ms
_JOIN = """
local v = tonumber(redis.call('GET', KEYS[4]) or '0')
local last = tonumber(redis.call('HGET', KEYS[3], ARGV[2]) or '0')
local tag = math.max(v, last) + 1
redis.call('HSET', KEYS[3], ARGV[2], tag)
redis.call('ZADD', KEYS[1], tag, ARGV[1])
redis.call('ZADD', KEYS[2], tonumber(ARGV[3]) + tonumber(ARGV[4]), ARGV[1])
for i = 1, 3 do redis.call('PEXPIRE', KEYS[i], ARGV[5]) end
return tag
"""

# KEYS: tags, leases, last, v. ARGV: now_ms, lease_ms, ttl_ms, this process's members...
# Returns {head or "", the members given that the line does not hold (lost while Redis was away)...}.
_HEAD = """
local now = tonumber(ARGV[1])
local missing = {}
for i = 4, #ARGV do
  if redis.call('ZSCORE', KEYS[1], ARGV[i]) then
    redis.call('ZADD', KEYS[2], now + tonumber(ARGV[2]), ARGV[i])
  else
    table.insert(missing, ARGV[i])
  end
end
local dead = redis.call('ZRANGEBYSCORE', KEYS[2], '-inf', now)
for _, member in ipairs(dead) do redis.call('ZREM', KEYS[1], member) end
redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', now)
local head = redis.call('ZRANGE', KEYS[1], 0, 0)
if #head == 0 then
  redis.call('DEL', KEYS[2], KEYS[3], KEYS[4])
  head = {''}
else
  for i = 1, 4 do redis.call('PEXPIRE', KEYS[i], ARGV[3]) end
end
table.insert(missing, 1, head[1])
return missing
"""

# KEYS: tags, leases, last, v. ARGV: member, served (1/0), ttl_ms
_LEAVE = """
local tag = redis.call('ZSCORE', KEYS[1], ARGV[1])
redis.call('ZREM', KEYS[1], ARGV[1])
redis.call('ZREM', KEYS[2], ARGV[1])
if redis.call('ZCARD', KEYS[1]) == 0 then
  redis.call('DEL', KEYS[2], KEYS[3], KEYS[4])
elseif tag and ARGV[2] == '1' and tonumber(tag) - 1 > tonumber(redis.call('GET', KEYS[4]) or '0') then
  redis.call('SET', KEYS[4], tonumber(tag) - 1, 'PX', ARGV[3])
end
return 1
"""


class SharedOrder:
    """One line for every process, in Redis; this process's own waiters are mirrored locally for outages."""

    shared = True

    def __init__(self, client: Redis, *, prefix: str, line: str, lease: float = LEASE, cluster: bool = False) -> None:
        self._join = client.register_script(_JOIN)
        self._head = client.register_script(_HEAD)
        self._leave = client.register_script(_LEAVE)
        # On a Redis Cluster the line's name is the hash tag, so a script's four keys share a slot.
        stem = f"{prefix}:queue:{{{line}}}" if cluster else f"{prefix}:queue:{line}"
        self._keys = [f"{stem}:tags", f"{stem}:leases", f"{stem}:last", f"{stem}:v"]
        self._lease_ms = int(lease * 1000)
        self._ttl_ms = self._lease_ms * 4  # a line nobody vouches for disappears on its own
        self._local = LocalOrder()
        self._flows: dict[str, int] = {}  # this process's waiters in the line, and their tenants
        self._alarmed_at = -math.inf

    async def join(self, member: str, flow: int) -> None:
        self._local.add(member, flow)
        await self._run(self._join, [member, flow, _now_ms(), self._lease_ms, self._ttl_ms])
        self._flows[member] = flow  # joined: from now on, a line that lacks it has lost it

    async def head(self, members: Collection[str]) -> str | None:
        try:
            reply = await self._head(keys=self._keys, args=[_now_ms(), self._lease_ms, self._ttl_ms, *members])
        except (RedisError, OSError) as exc:
            self._alarm(exc)
            return self._local.first()
        head, *missing = (item.decode() if isinstance(item, bytes) else str(item) for item in reply)
        lost = [member for member in missing if member in self._flows]  # not those whose join is on its way
        for member in lost:  # joined while Redis was away, or lost with it: they join again, at the back
            await self._run(self._join, [member, self._flows[member], _now_ms(), self._lease_ms, self._ttl_ms])
        return head or (self._local.first() if lost else None)

    async def leave(self, member: str, *, served: bool) -> None:
        self._local.remove(member, served=served)
        self._flows.pop(member, None)
        await self._run(self._leave, [member, 1 if served else 0, self._ttl_ms])

    async def _run(self, script: AsyncScript, args: list[str | int]) -> None:
        try:
            await script(keys=self._keys, args=args)
        except (RedisError, OSError) as exc:
            self._alarm(exc)

    def _alarm(self, exc: Exception) -> None:
        now = time.monotonic()
        if now - self._alarmed_at >= ALARM_INTERVAL:
            self._alarmed_at = now
            logger.error("Redis does not answer the queue (%r): each process orders its own waiters until it does", exc)


def _now_ms() -> int:
    return int(time.time() * 1000)
