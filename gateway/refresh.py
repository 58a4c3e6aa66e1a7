"""Background loops of a server process: snapshot refresh and last-used bookkeeping.

Started from the ASGI lifespan (or lazily by the first request when a server
does not send lifespan events) and cancelled at shutdown.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime

import redis.asyncio as aioredis
from asgiref.sync import sync_to_async
from django.conf import settings
from django.db import DatabaseError, connections
from redis.exceptions import RedisError

from gateway.relay import upstreams
from gateway.snapshot import SnapshotStore, channel
from tenants.facade import record_key_use

logger = logging.getLogger(__name__)
_RETRY = 1.0


class KeyUseLog:
    """Last-used times of keys, kept in memory and written in batches off the request path."""

    def __init__(self) -> None:
        self._pending: dict[int, float] = {}  # seconds since the epoch: a datetime per request cost 1-2 µs

    def touch(self, key_id: int) -> None:
        self._pending[key_id] = time.time()

    def take(self) -> dict[int, datetime]:
        pending, self._pending = self._pending, {}
        return {key_id: datetime.fromtimestamp(when, UTC) for key_id, when in pending.items()}

    def restore(self, pending: dict[int, datetime]) -> None:
        """Put back times that could not be stored; newer ones recorded meanwhile win."""
        for key_id, when in pending.items():
            self._pending.setdefault(key_id, when.timestamp())


key_use = KeyUseLog()


def _flush_key_use(pending: dict[int, datetime]) -> None:
    try:
        record_key_use(last_used=pending)
    finally:
        connections.close_all()


async def flush_key_use_forever() -> None:
    while True:
        await asyncio.sleep(settings.PORTICO_LAST_USED_FLUSH)
        await flush_key_use()


async def flush_key_use() -> None:
    pending = key_use.take()
    if not pending:
        return
    try:
        await sync_to_async(_flush_key_use, thread_sensitive=False)(pending)
    except DatabaseError:
        logger.warning("could not store last-used times of %d key(s); will retry", len(pending))
        key_use.restore(pending)


async def _reload_quietly(store: SnapshotStore) -> bool:
    """Reload; on a database error keep serving the last good snapshot and say so (False)."""
    try:
        snapshot = await store.reload()
    except DatabaseError:
        logger.exception("snapshot reload failed; serving the previous snapshot")
        return False
    upstreams.retain({route.provider.id for model in snapshot.models.values() for route in model.routes})
    return True


async def refresh_without_redis(store: SnapshotStore) -> None:
    while True:
        await store.wait_stale(settings.PORTICO_SNAPSHOT_TTL)
        await _reload_quietly(store)


async def refresh_with_redis(store: SnapshotStore) -> None:
    """Reload on every invalidation message, and every PORTICO_SNAPSHOT_POLL seconds regardless.

    The periodic reload is the safety net: a message lost while Redis was away, for the
    publisher or for this process, is made good within one poll.

    On a Redis Cluster REDIS_URL names one node, and subscribing there is enough: a cluster
    passes every plain PUBLISH to all its nodes, whichever node it was sent to.
    """
    while True:
        client = aioredis.from_url(
            settings.REDIS_URL,
            socket_connect_timeout=2,
            # A half-open connection must fail, not block the refresher for the kernel's TCP timeout.
            socket_timeout=settings.PORTICO_SNAPSHOT_POLL + 5,
            health_check_interval=30,
        )
        try:
            async with client.pubsub() as pubsub:
                await pubsub.subscribe(channel())
                await _reload_quietly(store)  # anything missed while unsubscribed
                while True:
                    message = await pubsub.get_message(
                        ignore_subscribe_messages=True, timeout=settings.PORTICO_SNAPSHOT_POLL
                    )
                    # A burst of saves (an admin bulk action) is one reload, not one per message.
                    while message is not None and await pubsub.get_message(ignore_subscribe_messages=True, timeout=0):
                        pass
                    await _reload_quietly(store)
        except (RedisError, OSError):
            logger.warning("lost Redis for snapshot invalidation; reloading every %.0f s until it returns", _RETRY)
            await _reload_quietly(store)
            await asyncio.sleep(_RETRY)
        finally:
            await client.aclose()


async def _supervised(name: str, loop: Callable[[], Awaitable[None]]) -> None:
    """Run a background loop for the life of the process, restarting it if it ever fails."""
    while True:
        try:
            await loop()
        except Exception:
            # Deliberately broad: a loop that died silently would leave the snapshot stale for good.
            logger.exception("background %s stopped unexpectedly; restarting it", name)
        await asyncio.sleep(_RETRY)


def start(store: SnapshotStore) -> list[asyncio.Task[None]]:
    refresher = refresh_with_redis if settings.REDIS_URL else refresh_without_redis
    loop = asyncio.get_running_loop()
    return [
        loop.create_task(_supervised("snapshot refresh", lambda: refresher(store))),
        loop.create_task(_supervised("last-used flush", flush_key_use_forever)),
    ]
