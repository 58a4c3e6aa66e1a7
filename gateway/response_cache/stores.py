"""Where stored answers live: Redis, shared by every process, when REDIS_URL is set; else this process's memory.

Both forget an answer after its policy's TTL. The in-process store is a
bounded LRU: past PORTICO_RESPONSE_CACHE_ENTRIES answers or
PORTICO_RESPONSE_CACHE_BYTES bytes, the least recently used go first.

With Redis, each process also keeps the answers it has read or written in
such an LRU in front of it (`TieredStore`), until the time Redis will drop
them (stored with each answer): a process's repeated hits cost no round trip.
An answer another process replaced (a `no-cache` request) may therefore still
be served here until its own TTL ends, which an exact cache can afford: it
was a right answer to the same request.

The cache is an optimisation, never a dependency: Redis unreachable or slow
reads as a miss, and a failed write is logged and forgotten.

Each answer is one key and every call touches one key, so on a Redis Cluster
(`cluster=True`) redis-py's cluster client spreads the answers over every node
and no hash tag is needed.
"""

from __future__ import annotations

import functools
import logging
import struct
import time
from collections import OrderedDict
from collections.abc import Callable
from typing import Protocol

import redis.asyncio as aioredis
from django.conf import settings
from redis.exceptions import RedisError

from billing.limits.clients import redis_client

logger = logging.getLogger(__name__)

# A cache read must cost less than what it saves: Redis that does not answer this fast is treated as a miss.
REDIS_TIMEOUT = 0.25


# Before each answer in Redis: when it expires, in epoch milliseconds.
_EXPIRY = struct.Struct(">Q")


class AnswerStore(Protocol):
    async def get(self, key: str) -> bytes | None: ...

    async def put(self, key: str, answer: bytes, ttl: int) -> None: ...


class LocalStore:
    """An LRU of answers with a TTL each, bounded by count and by total bytes (one event loop's, no locking)."""

    def __init__(self, *, entries: int, max_bytes: int, clock: Callable[[], float] = time.monotonic) -> None:
        self.entries = entries
        self.max_bytes = max_bytes
        self.clock = clock
        self.size = 0  # bytes of the answers held
        self._items: OrderedDict[str, tuple[float, bytes]] = OrderedDict()

    def __len__(self) -> int:
        return len(self._items)

    def lookup(self, key: str) -> bytes | None:
        found = self._items.get(key)
        if found is None:
            return None
        expires, answer = found
        if expires <= self.clock():
            self._drop(key)
            return None
        self._items.move_to_end(key)
        return answer

    def keep(self, key: str, answer: bytes, ttl: float) -> None:
        if len(answer) > self.max_bytes:
            return
        if key in self._items:
            self._drop(key)
        self._items[key] = (self.clock() + ttl, answer)
        self.size += len(answer)
        while len(self._items) > self.entries or self.size > self.max_bytes:
            self._drop(next(iter(self._items)))

    def _drop(self, key: str) -> None:
        _expires, answer = self._items.pop(key)
        self.size -= len(answer)

    async def get(self, key: str) -> bytes | None:
        return self.lookup(key)

    async def put(self, key: str, answer: bytes, ttl: int) -> None:
        self.keep(key, answer, ttl)


class RedisStore:
    """Answers in Redis under `<prefix>:response-cache:<tenant id>:<hash>`, expiring with their TTL."""

    def __init__(self, url: str, *, prefix: str, clock: Callable[[], float] = time.time, cluster: bool = False) -> None:
        self.url = url
        self.prefix = f"{prefix}:response-cache:"
        self.clock = clock
        self.cluster = cluster
        self._client: aioredis.Redis | None = None

    def _redis(self) -> aioredis.Redis:
        # Made on first use, inside the server's event loop, which its connections then belong to.
        if self._client is None:
            self._client = redis_client(self.url, timeout=REDIS_TIMEOUT, cluster=self.cluster)
        return self._client

    async def read(self, key: str) -> tuple[bytes, float] | None:
        """The answer and the seconds it has left, or None."""
        try:
            found = await self._redis().get(self.prefix + key)
        except (RedisError, OSError) as exc:
            logger.warning("response cache read failed, served as a miss: %s", type(exc).__name__)
            return None
        if not isinstance(found, bytes) or len(found) < _EXPIRY.size:
            return None
        (expires_ms,) = _EXPIRY.unpack_from(found)
        left = expires_ms / 1000 - self.clock()
        return (found[_EXPIRY.size :], left) if left > 0 else None

    async def get(self, key: str) -> bytes | None:
        found = await self.read(key)
        return found[0] if found is not None else None

    async def put(self, key: str, answer: bytes, ttl: int) -> None:
        expires_ms = int((self.clock() + ttl) * 1000)
        try:
            await self._redis().set(self.prefix + key, _EXPIRY.pack(expires_ms) + answer, px=ttl * 1000)
        except (RedisError, OSError) as exc:
            logger.warning("response cache write failed, answer not stored: %s", type(exc).__name__)

    async def aclose(self) -> None:
        if self._client is not None:
            client, self._client = self._client, None
            await client.aclose()


class TieredStore:
    """Redis, with this process's LRU in front of it (see the module docstring)."""

    def __init__(self, near: LocalStore, shared: RedisStore) -> None:
        self.near = near
        self.shared = shared

    async def get(self, key: str) -> bytes | None:
        answer = self.near.lookup(key)
        if answer is not None:
            return answer
        found = await self.shared.read(key)
        if found is None:
            return None
        answer, left = found
        self.near.keep(key, answer, left)
        return answer

    async def put(self, key: str, answer: bytes, ttl: int) -> None:
        self.near.keep(key, answer, ttl)
        await self.shared.put(key, answer, ttl)


@functools.cache
def answer_store() -> AnswerStore:
    """The process's store, chosen once from the settings."""
    near = LocalStore(entries=settings.PORTICO_RESPONSE_CACHE_ENTRIES, max_bytes=settings.PORTICO_RESPONSE_CACHE_BYTES)
    if settings.REDIS_URL:
        shared = RedisStore(
            settings.REDIS_URL, prefix=settings.PORTICO_REDIS_PREFIX, cluster=settings.PORTICO_REDIS_CLUSTER
        )
        return TieredStore(near, shared)
    return near
