"""The in-process snapshot of keys, models and prices that the hot path reads instead of the database.

Each process holds one `Snapshot`, swapped whole when it is rebuilt, so a
request always sees one consistent view. Rebuilds happen in the background:

* with REDIS_URL, on a pub/sub message that every process receives when a
  tenant, key, provider, public model, deployment or price changes, and every PORTICO_SNAPSHOT_POLL
  seconds in case a message was lost while Redis was away;
* without Redis, every PORTICO_SNAPSHOT_TTL seconds, and at once in the
  process that made the change.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass, field

from asgiref.sync import sync_to_async
from django.conf import settings
from django.db import connections

from billing.facade import BillingSnapshot, load_billing
from caching.facade import CachePolicies, load_cache_policies
from providers.facade import ModelInfo, load_models
from tenants.facade import KeyGrant, load_key_grants

logger = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Snapshot:
    keys: dict[str, KeyGrant] = field(default_factory=dict)
    models: dict[str, ModelInfo] = field(default_factory=dict)  # by public id
    billing: BillingSnapshot = field(default_factory=BillingSnapshot)
    caching: CachePolicies = field(default_factory=CachePolicies)  # the response cache's policies
    loaded_at: float = 0.0


def channel() -> str:
    return f"{settings.PORTICO_REDIS_PREFIX}:snapshot"


def build_snapshot() -> Snapshot:
    """Query the database for a fresh snapshot (runs in a worker thread, never on a request)."""
    try:
        return Snapshot(
            keys=load_key_grants(),
            models=load_models(),
            billing=load_billing(),
            caching=load_cache_policies(),
            loaded_at=time.time(),
        )
    finally:
        # This thread is not a request thread: nothing else would close its connection.
        connections.close_all()


class SnapshotStore:
    def __init__(self) -> None:
        self.current: Snapshot | None = None
        self._stale = asyncio.Event()
        self._lock: asyncio.Lock | None = None

    async def get(self) -> Snapshot:
        snapshot = self.current
        if snapshot is None:  # only before the first load, e.g. under a server that sends no lifespan
            async with self._reload_lock():
                snapshot = self.current or await self._load()
        return snapshot

    async def reload(self) -> Snapshot:
        async with self._reload_lock():
            return await self._load()

    def _reload_lock(self) -> asyncio.Lock:
        # Created on first use so it belongs to the server's event loop, not the importer's.
        if self._lock is None:
            self._lock = asyncio.Lock()
        return self._lock

    async def _load(self) -> Snapshot:
        self._stale.clear()
        self.current = await sync_to_async(build_snapshot, thread_sensitive=False)()
        return self.current

    def mark_stale(self) -> None:
        """Ask the refresher to rebuild soon; safe to call only from the event loop's thread."""
        self._stale.set()

    def is_stale(self) -> bool:
        return self._stale.is_set()

    async def wait_stale(self, seconds: float) -> bool:
        """Wait until marked stale or `seconds` pass; True if it was marked."""
        try:
            async with asyncio.timeout(seconds):
                await self._stale.wait()
        except TimeoutError:
            return False
        return True


store = SnapshotStore()
