"""Requests waiting in line, per tenant, in the admin's queue summary: from Redis, or from this process without it.

Waiters here are real ones, in a fresh `Lines` of the test's event loop,
waiting for a slot the test frees by hand; a queued job's run waiting beside
them is counted as a job, not as a request in line. With Redis the process's
tally is read back from Redis, added to another process's (written there as
that process would), under a prefix of the test's own.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from datetime import timedelta

import pytest
from asgiref.sync import sync_to_async
from django.contrib.auth.models import User
from django.db import connections
from django.test import Client, override_settings
from django.utils import timezone
from redis.asyncio import Redis

from billing.tests.test_limits import REDIS_URL, drop_keys
from gateway.queueing.lines import Lines, take_turn
from gateway.tests.test_queue_lines import Slots, until
from queueing.facade import TenantQueue
from queueing.selectors import queue_summary
from queueing.waiting import tally, waiting_key
from tenants.models import Tenant
from tenants.tests.factories import make_tenant

pytestmark = pytest.mark.django_db(transaction=True)


def _summary() -> dict[int, TenantQueue]:
    try:
        now = timezone.now()
        return {row.tenant_id: row for row in queue_summary(since=now - timedelta(hours=1), now=now)}
    finally:
        connections.close_all()


def _admin_page() -> str:
    try:
        client = Client()
        client.force_login(User.objects.create_superuser(f"ops-{uuid.uuid4().hex[:6]}", "ops@example.com", "pw"))
        response = client.get("/admin/queueing/queuedjob/")
        assert response.status_code == 200
        return response.content.decode()
    finally:
        connections.close_all()


def _tenants() -> tuple[Tenant, Tenant]:
    try:
        tag = uuid.uuid4().hex[:8]
        return make_tenant(slug=f"busy-{tag}"), make_tenant(slug=f"quiet-{tag}")
    finally:
        connections.close_all()


async def _wait_in_line(lines: Lines, slots: Slots, busy: int, quiet: int) -> list[asyncio.Task[bool]]:
    """Two requests of `busy` and one of `quiet` in line, and a job's run of `busy` behind them."""
    deadline = asyncio.get_running_loop().time() + 10
    line = lines.line(f"limits:test-{uuid.uuid4().hex}", shared=True)
    waits = [
        asyncio.create_task(take_turn(line, flow=flow, deadline=deadline, attempt=slots.attempt))
        for flow in (busy, busy, quiet)
    ]
    waits.append(asyncio.create_task(take_turn(line, flow=busy, deadline=deadline, attempt=slots.attempt, job=True)))
    await until(lambda: lines.depth(busy) == 3 and lines.depth(quiet) == 1)
    return waits


async def _all_served(lines: Lines, slots: Slots, waits: list[asyncio.Task[bool]]) -> None:
    for _ in waits:
        slots.release(lines)
    assert await asyncio.gather(*waits) == [True] * len(waits)


@override_settings(REDIS_URL="")
async def test_without_redis_the_summary_counts_this_processs_requests_waiting_in_line() -> None:
    busy, quiet = await sync_to_async(_tenants, thread_sensitive=False)()
    lines, slots = Lines(), Slots()
    waits = await _wait_in_line(lines, slots, busy.pk, quiet.pk)

    rows = await sync_to_async(_summary, thread_sensitive=False)()
    page = await sync_to_async(_admin_page, thread_sensitive=False)()

    assert (rows[busy.pk].in_line, rows[busy.pk].queued) == (2, 0)  # the job's run is not a request in line
    assert rows[quiet.pk].in_line == 1
    assert "waiting in line" in page
    assert f'<td><a href="?tenant__id__exact={busy.pk}">{busy.name}</a></td>\n        <td>2</td>' in page

    await _all_served(lines, slots, waits)
    rows = await sync_to_async(_summary, thread_sensitive=False)()
    assert busy.pk not in rows
    assert quiet.pk not in rows


@pytest.fixture
async def prefix() -> AsyncIterator[str]:
    name = f"portico-waiting-{uuid.uuid4().hex}"
    with override_settings(REDIS_URL=REDIS_URL, PORTICO_REDIS_PREFIX=name):
        yield name
    await drop_keys(name)


async def test_with_redis_the_summary_adds_up_every_processs_requests_waiting_in_line(prefix: str) -> None:
    busy, quiet = await sync_to_async(_tenants, thread_sensitive=False)()
    redis = Redis.from_url(REDIS_URL)
    # Another process, with a request of each tenant in line, as it publishes them.
    elsewhere = waiting_key(prefix, "other-host:4242:abcdef")
    await redis.hset(elsewhere, mapping={str(busy.pk): 1, str(quiet.pk): 1})
    await redis.pexpire(elsewhere, 5000)
    lines, slots = Lines(), Slots()
    waits = await _wait_in_line(lines, slots, busy.pk, quiet.pk)
    mine: list[bytes] = []
    for _ in range(40):  # published within MIN_GAP of the last join, and perhaps not yet at the first look
        mine = [name async for name in redis.scan_iter(match=waiting_key(prefix, "*")) if name.decode() != elsewhere]
        if mine and await redis.hget(mine[0], str(busy.pk)) == b"2":
            break
        await asyncio.sleep(0.05)
    tally.clear()  # the summary must read Redis, not this process's own count
    rows = await sync_to_async(_summary, thread_sensitive=False)()

    assert len(mine) == 1
    assert 0 < await redis.pttl(mine[0]) <= 5000  # a process that dies takes its count with it
    assert (rows[busy.pk].in_line, rows[quiet.pk].in_line) == (3, 2)

    await _all_served(lines, slots, waits)
    await until(lambda: not lines.depth(busy.pk))
    for _ in range(40):  # deleted once nobody waits
        if not await redis.exists(mine[0]):
            break
        await asyncio.sleep(0.05)
    rows = await sync_to_async(_summary, thread_sensitive=False)()
    await redis.aclose()
    await lines.aclose()
    assert (rows[busy.pk].in_line, rows[quiet.pk].in_line) == (1, 1)  # the other process's only


async def test_closing_the_lines_stops_their_publisher_before_it_can_open_another_connection(prefix: str) -> None:
    lines, slots = Lines(), Slots()
    waits = await _wait_in_line(lines, slots, 1, 2)  # tenants need not exist to be counted and published
    await _all_served(lines, slots, waits)
    publisher = lines._publisher
    assert publisher is not None
    assert publisher._task is not None  # still to write that nobody waits

    await lines.aclose()
    await asyncio.sleep(0.3)  # past MIN_GAP: a publisher left running would have written by now

    assert publisher._task is None
    assert lines._redis is None  # no client made again behind the closed one
