"""Whose turn it is in a line: start-time fair queueing, in one process and shared through the real Redis."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator

import pytest
from django.conf import settings
from redis.asyncio import Redis

from gateway.queueing.orders import LocalOrder, Order, SharedOrder

A, B, C = 1, 2, 3


async def served_in_order(order: Order, members: list[str]) -> list[str]:
    """Serve the line's head until it is empty; the members in the order they were served."""
    served = []
    while (head := await order.head(members)) is not None:
        served.append(head)
        await order.leave(head, served=True)
    return served


async def test_a_burst_and_a_few_take_turns_rather_than_first_come_first_served() -> None:
    order = LocalOrder()
    for n in range(4):
        await order.join(f"a{n}", A)
    for n in range(2):
        await order.join(f"b{n}", B)

    assert await served_in_order(order, []) == ["a0", "b0", "a1", "b1", "a2", "a3"]


async def test_a_tenant_that_arrives_late_goes_ahead_of_another_s_backlog() -> None:
    order = LocalOrder()
    for n in range(6):
        await order.join(f"a{n}", A)
    for _ in range(3):  # three of A's served: V moves on with them
        await order.leave(await order.head() or "", served=True)

    await order.join("c0", C)
    await order.join("c1", C)

    assert await served_in_order(order, []) == ["c0", "a3", "c1", "a4", "a5"]


async def test_waiters_that_leave_unserved_take_their_turns_with_them_and_an_empty_line_forgets() -> None:
    order = LocalOrder()
    await order.join("a0", A)
    await order.join("a1", A)
    await order.leave("a0", served=False)
    assert await order.head() == "a1"
    await order.leave("a1", served=False)

    await order.join("b0", B)
    await order.join("a2", A)  # A's earlier tags are forgotten: it starts level with B

    assert await served_in_order(order, []) == ["b0", "a2"]


# --- shared through Redis --------------------------------------------------------------------------------------


@pytest.fixture
async def redis_client() -> AsyncIterator[Redis]:
    client = Redis.from_url(settings.REDIS_URL)
    yield client
    await client.aclose()


@pytest.fixture
def line() -> str:
    return f"test-{uuid.uuid4().hex[:8]}"


async def test_two_processes_share_one_order_and_take_turns_across_it(redis_client: Redis, line: str) -> None:
    prefix = settings.PORTICO_REDIS_PREFIX
    first, second = (
        SharedOrder(redis_client, prefix=prefix, line=line),
        SharedOrder(redis_client, prefix=prefix, line=line),
    )
    for n in range(3):
        await first.join(f"p1:a{n}", A)
    await second.join("p2:b0", B)

    waiting = {first: ["p1:a0", "p1:a1", "p1:a2"], second: ["p2:b0"]}
    heads = []
    for _ in range(4):
        # Each process asks with its own waiters; both see the same head.
        head = await first.head(waiting[first])
        assert await second.head(waiting[second]) == head
        heads.append(head)
        owner = first if head and head.startswith("p1") else second
        waiting[owner].remove(head or "")
        await owner.leave(head or "", served=True)

    assert heads == ["p1:a0", "p2:b0", "p1:a1", "p1:a2"]
    assert await first.head([]) is None
    assert not await redis_client.exists(*(f"{prefix}:queue:{line}:{part}" for part in ("tags", "leases", "last", "v")))


async def test_a_process_that_stops_vouching_for_its_waiters_loses_them_once_their_lease_runs_out(
    redis_client: Redis, line: str
) -> None:
    prefix = settings.PORTICO_REDIS_PREFIX
    dead = SharedOrder(redis_client, prefix=prefix, line=line, lease=0.2)
    alive = SharedOrder(redis_client, prefix=prefix, line=line, lease=0.2)
    await dead.join("p1:a0", A)
    await alive.join("p2:b0", B)
    assert await alive.head(["p2:b0"]) == "p1:a0"

    deadline = asyncio.get_running_loop().time() + 5
    while (head := await alive.head(["p2:b0"])) != "p2:b0":  # only `alive` renews its own
        assert asyncio.get_running_loop().time() < deadline, f"the dead process's waiter still heads the line: {head}"
        await asyncio.sleep(0.05)


async def test_waiters_a_restarted_redis_lost_join_the_line_again_rather_than_wait_for_ever(
    redis_client: Redis, line: str
) -> None:
    prefix = settings.PORTICO_REDIS_PREFIX
    order = SharedOrder(redis_client, prefix=prefix, line=line)
    await order.join("p1:a0", A)
    await redis_client.delete(*(f"{prefix}:queue:{line}:{part}" for part in ("tags", "leases", "last", "v")))

    assert await order.head(["p1:a0"]) == "p1:a0"
    assert await redis_client.zscore(f"{prefix}:queue:{line}:tags", "p1:a0") is not None


async def test_without_redis_a_shared_line_orders_this_process_s_own_waiters(line: str) -> None:
    unreachable = Redis.from_url("redis://127.0.0.1:1/0", socket_connect_timeout=0.2)
    order = SharedOrder(unreachable, prefix=settings.PORTICO_REDIS_PREFIX, line=line)
    try:
        await order.join("a0", A)
        await order.join("a1", A)
        await order.join("b0", B)
        assert await served_in_order(order, ["a0", "a1", "b0"]) == ["a0", "b0", "a1"]
    finally:
        await unreachable.aclose()
