"""The gateway's shared state on a three-master Redis Cluster: breakers, queue lines, the answer cache, invalidation.

Two instances stand for two processes. The cluster is private to this module
(tests/redis_cluster.py); the same behaviours on a single Redis are tested
beside each module (test_breakers_redis.py, test_queue_orders.py, ...).
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any, cast

import pytest
from django.test import override_settings
from redis.asyncio import Redis, RedisCluster

from gateway import invalidation, refresh
from gateway.breakers import RedisBreakers
from gateway.queueing.orders import SharedOrder
from gateway.response_cache.stores import RedisStore
from gateway.snapshot import SnapshotStore, channel
from gateway.tests.test_breakers import ROUTE, RULES, FakeClock
from gateway.tests.test_breakers_redis import SEEN_WITHIN, eventually, fail
from tests.redis_cluster import ClusterNodes, running_cluster


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ClusterNodes]:
    with running_cluster(Path(tmp_path_factory.mktemp("cluster"))) as nodes:
        yield nodes


@pytest.fixture
def prefix() -> str:
    return f"portico-cluster-{uuid.uuid4().hex[:8]}"


@pytest.fixture
async def make_breakers(cluster: ClusterNodes, prefix: str) -> AsyncIterator[Callable[..., RedisBreakers]]:
    made: list[RedisBreakers] = []

    def make(**options: Any) -> RedisBreakers:
        breakers = RedisBreakers(cluster.url, prefix=prefix, rules=RULES, cluster=True, socket_timeout=2.0, **options)
        made.append(breakers)
        return breakers

    yield make
    for breakers in made:
        await breakers.stop()


@pytest.fixture
async def client(cluster: ClusterNodes) -> AsyncIterator[RedisCluster]:
    client = RedisCluster.from_url(cluster.url, socket_timeout=2, socket_connect_timeout=2)
    yield client
    await client.aclose()


async def test_a_breaker_opened_by_one_process_is_seen_by_another_and_so_is_its_reset(
    make_breakers: Callable[..., RedisBreakers],
) -> None:
    failing, other = make_breakers(), make_breakers()
    await failing.start()
    await other.start()
    await eventually(lambda: other.watching)
    fail(failing)
    await eventually(lambda: other.is_open(ROUTE), within=SEEN_WITHIN)
    await asyncio.to_thread(other.reset, ROUTE)
    await eventually(lambda: not failing.is_open(ROUTE))
    assert (await asyncio.to_thread(failing.state, ROUTE)).state == "closed"


async def test_breakers_of_many_deployments_live_on_several_nodes_and_all_are_read_back(
    make_breakers: Callable[..., RedisBreakers], cluster: ClusterNodes
) -> None:
    clock = FakeClock()
    writer, reader = make_breakers(clock=clock), make_breakers(clock=clock)
    routes = range(100, 112)
    for route in routes:
        fail(writer, route=route)
    await writer.flush()
    await reader._poll()  # what its watcher does every `poll` seconds
    assert all(reader.is_open(route) for route in routes)
    assert (await asyncio.to_thread(reader.state, routes[0])).last_errors, "the recent errors are kept"
    assert sum(1 for index in range(3) if _node_keys(cluster, index)) > 1, "every breaker on one node"


async def test_only_the_configured_probes_are_granted_across_processes(
    make_breakers: Callable[..., RedisBreakers],
) -> None:
    clock = FakeClock()
    first, second = make_breakers(clock=clock), make_breakers(clock=clock)
    fail(first)
    await first.flush()
    clock.advance(RULES.cooldown)
    second._open[ROUTE] = clock.now - 1  # as its watcher would have mirrored it
    first._open[ROUTE] = clock.now - 1
    grants = await asyncio.gather(*[breakers.acquire_probe(ROUTE) for breakers in (first, second) * 5])
    assert grants.count(True) == RULES.half_open_probes


async def test_a_shared_line_is_one_line_for_two_processes(client: RedisCluster, prefix: str) -> None:
    lines = [SharedOrder(client, prefix=prefix, line=f"deployment:{number}", cluster=True) for number in range(2)]
    other = SharedOrder(client, prefix=prefix, line="deployment:0", cluster=True)
    await lines[0].join("first", 1)
    await lines[1].join("elsewhere", 2)
    # `other` holds no waiter of its own: only Redis can tell it whose turn it is.
    assert await other.head([]) == "first"
    await lines[0].leave("first", served=True)
    assert await other.head([]) is None
    assert await client.exists(f"{prefix}:queue:{{deployment:1}}:tags") == 1


async def test_answers_are_stored_on_every_node_and_read_back_by_another_process(
    cluster: ClusterNodes, prefix: str
) -> None:
    writer = RedisStore(cluster.url, prefix=prefix, cluster=True)
    reader = RedisStore(cluster.url, prefix=prefix, cluster=True)
    try:
        for number in range(20):
            await writer.put(f"answer-{number}", b"reply %d" % number, ttl=60)
        assert [await reader.get(f"answer-{number}") for number in range(20)] == [
            b"reply %d" % number for number in range(20)
        ]
    finally:
        await writer.aclose()
        await reader.aclose()
    assert all(_node_keys(cluster, index) for index in range(3)), "answers spread over every node"


class CountingStore:
    """Stands in for the snapshot store: counts the reloads the refresher asks for."""

    def __init__(self) -> None:
        self.reloads = 0

    async def reload(self) -> Any:
        self.reloads += 1
        return SimpleNamespace(models={})


async def test_a_change_announced_on_one_node_reloads_a_process_subscribed_on_another(cluster: ClusterNodes) -> None:
    store = CountingStore()
    with override_settings(REDIS_URL=cluster.node_url(0), PORTICO_REDIS_CLUSTER=True, PORTICO_SNAPSHOT_POLL=60):
        task = asyncio.get_running_loop().create_task(refresh.refresh_with_redis(cast(SnapshotStore, store)))
        try:
            await eventually(lambda: store.reloads >= 1 and _subscribers(cluster, 0) == 1, within=5)
            # The refresher also reloads once as its subscription is confirmed; the count is taken after it.
            await asyncio.sleep(0.2)
            before = store.reloads
            with override_settings(REDIS_URL=cluster.node_url(2)):
                await asyncio.to_thread(invalidation.publish)
            await eventually(lambda: store.reloads > before, within=SEEN_WITHIN)
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)


async def test_a_plain_publish_reaches_a_subscriber_on_every_node(cluster: ClusterNodes) -> None:
    subscribers = [Redis.from_url(cluster.node_url(index), socket_timeout=2) for index in range(3)]
    channels = [client.pubsub() for client in subscribers]
    try:
        for pubsub in channels:
            await pubsub.subscribe(channel())
            assert (await pubsub.get_message(timeout=2))["type"] == "subscribe"
        with override_settings(REDIS_URL=cluster.node_url(1), PORTICO_REDIS_CLUSTER=True):
            await asyncio.to_thread(invalidation.publish)
        for pubsub in channels:
            message = await pubsub.get_message(ignore_subscribe_messages=True, timeout=2)
            assert message is not None
            assert message["data"] == b"changed"
    finally:
        for pubsub, client in zip(channels, subscribers, strict=True):
            await pubsub.aclose()
            await client.aclose()


def _node_keys(cluster: ClusterNodes, index: int) -> int:
    node = cluster.node(index)
    try:
        return cast(int, node.dbsize())
    finally:
        node.close()


def _subscribers(cluster: ClusterNodes, index: int) -> int:
    node = cluster.node(index)
    try:
        return cast(int, dict(node.pubsub_numsub(channel())).get(channel().encode(), 0))
    finally:
        node.close()
