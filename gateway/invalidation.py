"""Tells every Portico process that keys, tenants, providers or routes changed.

Connected to the models' change signals in `gateway.apps`: the admin, the CLI
and services all save through the ORM, so the signals catch every change
without each caller having to remember. The message is sent only once the
transaction commits, so no process reloads before the change is visible.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import redis
from django.conf import settings
from django.db import transaction
from redis.exceptions import RedisError

from gateway.snapshot import channel, store

logger = logging.getLogger(__name__)
_loop: asyncio.AbstractEventLoop | None = None


def serve_from(loop: asyncio.AbstractEventLoop) -> None:
    """Remember the server's event loop, so changes made in this process reload it at once."""
    global _loop  # noqa: PLW0603 - one loop per server process, set once at start-up
    _loop = loop


def serving_loop() -> asyncio.AbstractEventLoop | None:
    """The server's event loop, while it runs; None in a process that serves no requests (a worker)."""
    return _loop if _loop is not None and not _loop.is_closed() else None


def publish() -> None:
    if _loop is not None and not _loop.is_closed():
        _loop.call_soon_threadsafe(store.mark_stale)
    if settings.REDIS_URL:
        # On a Redis Cluster this is one node; the cluster hands a plain PUBLISH on to every other node.
        try:
            client = redis.Redis.from_url(settings.REDIS_URL, socket_timeout=2, socket_connect_timeout=2)
            client.publish(channel(), b"changed")
            client.close()
        except RedisError:
            logger.error(
                "could not announce a change through Redis; other processes pick it up at their next "
                "periodic reload (PORTICO_SNAPSHOT_POLL)"
            )


def on_change(**_: Any) -> None:
    transaction.on_commit(publish)
