"""The in-process snapshot: what a build holds, how the store loads and swaps it, and the stale mark.

Snapshots are built in a worker thread with its own database connection, so
these tests commit their rows (`transaction=True`) for that thread to see them.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import pytest
import redis.asyncio as aioredis
from asgiref.sync import sync_to_async
from django.db import DatabaseError, connection, connections
from pytest_django import Settings

from gateway import snapshot as snapshot_module
from gateway.refresh import refresh_with_redis
from gateway.snapshot import Snapshot, SnapshotStore, build_snapshot, channel
from providers.models import ModelRoute
from tenants.services import api_key_revoke
from tenants.tests.factories import IssuedKey

pytestmark = pytest.mark.django_db(transaction=True)


async def in_worker_thread(work: Callable[[], Any]) -> Any:
    """Run ORM work off the event loop, closing the thread's connection as the snapshot's own builds do."""

    def run() -> Any:
        try:
            return work()
        finally:
            connections.close_all()

    return await sync_to_async(run, thread_sensitive=False)()


@pytest.fixture
def personas(owner: IssuedKey, teammate: IssuedKey, outsider: IssuedKey) -> dict[str, IssuedKey]:
    return {"owner": owner, "teammate": teammate, "outsider": outsider}


@pytest.fixture
def counted_builds(monkeypatch: pytest.MonkeyPatch) -> list[Snapshot]:
    """Every snapshot the store builds, in order."""
    built: list[Snapshot] = []

    def build() -> Snapshot:
        built.append(build_snapshot())
        return built[-1]

    monkeypatch.setattr(snapshot_module, "build_snapshot", build)
    return built


def test_a_build_holds_every_usable_key_by_prefix_and_every_route(
    personas: dict[str, IssuedKey], mock_route: ModelRoute
) -> None:
    api_key_revoke(api_key=personas["teammate"].api_key)

    built = build_snapshot()

    assert set(built.keys) == {personas["owner"].api_key.prefix, personas["outsider"].api_key.prefix}
    assert set(built.models) == {"mock-echo"}
    assert built.models["mock-echo"].routes[0].provider.kind == "mock"
    assert built.loaded_at > 0


def test_a_build_closes_the_connection_of_its_thread(personas: dict[str, IssuedKey]) -> None:
    build_snapshot()

    assert connection.connection is None


async def test_the_store_loads_on_first_use_then_serves_from_memory(
    personas: dict[str, IssuedKey], counted_builds: list[Snapshot]
) -> None:
    store = SnapshotStore()

    first = await store.get()
    again = await store.get()

    assert again is first
    assert counted_builds == [first]
    assert personas["owner"].api_key.prefix in first.keys


async def test_concurrent_first_requests_share_one_load(
    personas: dict[str, IssuedKey], counted_builds: list[Snapshot]
) -> None:
    store = SnapshotStore()

    snapshots = await asyncio.gather(*(store.get() for _ in range(5)))

    assert len(counted_builds) == 1
    assert all(snapshot is counted_builds[0] for snapshot in snapshots)


async def test_a_reload_swaps_in_a_snapshot_that_sees_the_change(personas: dict[str, IssuedKey]) -> None:
    store = SnapshotStore()
    before = await store.get()
    owner = personas["owner"].api_key

    await in_worker_thread(lambda: api_key_revoke(api_key=owner))
    after = await store.reload()

    assert after is not before
    assert store.current is after
    assert owner.prefix in before.keys  # a request that already holds the old snapshot keeps a consistent view
    assert owner.prefix not in after.keys
    assert personas["teammate"].api_key.prefix in after.keys


async def test_a_failed_reload_keeps_the_previous_snapshot(
    personas: dict[str, IssuedKey], monkeypatch: pytest.MonkeyPatch
) -> None:
    store = SnapshotStore()
    before = await store.get()

    def outage() -> Snapshot:
        raise DatabaseError("the database went away")

    monkeypatch.setattr(snapshot_module, "build_snapshot", outage)
    with pytest.raises(DatabaseError):
        await store.reload()

    assert store.current is before


async def test_a_fresh_store_is_not_stale() -> None:
    assert await SnapshotStore().wait_stale(0) is False


async def test_a_store_marked_stale_says_so_at_once() -> None:
    store = SnapshotStore()

    store.mark_stale()

    async with asyncio.timeout(5):
        assert await store.wait_stale(60) is True


async def test_marking_stale_wakes_a_waiting_refresher() -> None:
    store = SnapshotStore()
    waiting = asyncio.create_task(store.wait_stale(60))
    await asyncio.sleep(0)  # let the waiter start waiting
    assert not waiting.done()

    store.mark_stale()

    async with asyncio.timeout(5):
        assert await waiting is True


async def test_a_reload_clears_the_stale_mark(personas: dict[str, IssuedKey]) -> None:
    store = SnapshotStore()
    store.mark_stale()

    await store.reload()

    assert await store.wait_stale(0) is False


async def test_a_change_whose_reload_failed_is_reloaded_at_the_next_poll(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A revoked key must stop working even if the database blinked when the change was announced.
    settings.PORTICO_SNAPSHOT_POLL = 0.1
    loop = asyncio.get_running_loop()
    attempts = {number: asyncio.Event() for number in (1, 2, 3)}

    def flaky_build() -> Snapshot:
        number = next(counter)
        if number in attempts:  # this runs in a worker thread
            loop.call_soon_threadsafe(attempts[number].set)
        if number == 2:
            raise DatabaseError("the database went away")
        return Snapshot(loaded_at=float(number))

    counter = iter(range(1, 1000))
    monkeypatch.setattr(snapshot_module, "build_snapshot", flaky_build)
    store = SnapshotStore()
    refresher = asyncio.create_task(refresh_with_redis(store))
    client = aioredis.from_url(settings.REDIS_URL)
    try:
        async with asyncio.timeout(5):
            await attempts[1].wait()  # subscribed and loaded
        # One message and no version bump: the retry cannot come from a version poll noticing a change.
        await client.publish(channel(), b"changed")
        async with asyncio.timeout(5):
            await attempts[2].wait()  # the reload that failed
        async with asyncio.timeout(5):
            await attempts[3].wait()  # and its retry
    finally:
        refresher.cancel()
        await asyncio.gather(refresher, return_exceptions=True)
        await client.aclose()
