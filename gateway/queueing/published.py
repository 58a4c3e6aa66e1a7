"""This process's requests waiting in line, per tenant, published to Redis for the admin (queueing.waiting).

    changed()   a waiter joined or left: the hash is rewritten at once (at most every MIN_GAP s), then
                every RENEW_EVERY s while the process has waiters, and deleted when it has none

One small hash per process, rewritten whole (a few tenants at most), so a
write lost to a Redis hiccup is mended by the next (a tenant that no longer
waits is written as 0 until the hash goes), and a process that dies
leaves a hash that expires on its own. Redis out of reach costs the admin's
count, never a request: errors are logged (at most every 30 s) and the writes
go on.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import Callable

from redis.asyncio import Redis
from redis.exceptions import RedisError

from queueing.waiting import RENEW_EVERY, TTL, Tally

logger = logging.getLogger(__name__)

MIN_GAP = 0.1  # seconds between two writes: a burst of waiters joining is one write, not one each
ALARM_INTERVAL = 30.0


class Publisher:
    def __init__(self, tally: Tally, client: Callable[[], Redis], key: str) -> None:
        self._tally = tally
        self._client = client
        self._key = key
        self._dirty = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._alarmed_at = -math.inf
        self._written: set[int] = set()  # the tenants the hash holds

    def changed(self) -> None:
        """Called on the serving loop whenever the tally changed."""
        self._dirty.set()
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._run(), name="portico-queue waiting")

    async def aclose(self) -> None:
        """Stop publishing (the loop is ending): a write left pending would open a connection nobody closes."""
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)

    async def _run(self) -> None:
        try:
            while True:
                self._dirty.clear()
                counts = self._tally.counts()
                await self._write(counts)
                if not counts and not self._dirty.is_set():
                    return  # nobody waits, and the hash is gone: the next waiter starts a new task
                await asyncio.sleep(MIN_GAP)
                try:
                    async with asyncio.timeout(RENEW_EVERY - MIN_GAP):
                        await self._dirty.wait()
                except TimeoutError:
                    pass  # renew the hash before it expires
        finally:
            self._task = None

    async def _write(self, counts: dict[int, int]) -> None:
        # Tenants that no longer wait are written as 0 rather than the hash deleted and rewritten: a reader
        # never finds it half written, and no MULTI is needed (a Redis Cluster pipeline has none).
        try:
            if counts:
                mapping = {str(tenant): counts.get(tenant, 0) for tenant in self._written | set(counts)}
                async with self._client().pipeline(transaction=False) as pipe:
                    pipe.hset(self._key, mapping=mapping)
                    pipe.pexpire(self._key, int(TTL * 1000))
                    await pipe.execute()
            else:
                await self._client().delete(self._key)
            self._written = set(counts)
        except (RedisError, OSError) as exc:
            now = time.monotonic()
            if now - self._alarmed_at >= ALARM_INTERVAL:
                self._alarmed_at = now
                logger.error("Redis does not answer: the admin's count of requests waiting in line is stale (%r)", exc)
            self._written |= set(counts)  # what the hash may still hold, to be zeroed by the next write
