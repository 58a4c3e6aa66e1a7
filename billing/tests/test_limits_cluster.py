"""`RedisLimiter` on a three-master Redis Cluster: one slot per script call, limits shared across clients.

Two limiters stand for two processes. The cluster is private to this module
(tests/redis_cluster.py); the single-Redis behaviour is test_limits_redis.py's.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import replace
from pathlib import Path

import pytest
from redis.crc import key_slot

from billing.limits import Ask, Budget, RedisLimiter, Window
from billing.limits.keys import shard_of
from billing.limits.verdicts import ticket_for
from billing.tests.test_limits import FakeClock, admitted, budget, ticket_of
from tests.redis_cluster import ClusterNodes, running_cluster


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ClusterNodes]:
    with running_cluster(Path(tmp_path_factory.mktemp("cluster"))) as nodes:
        yield nodes


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
async def make(cluster: ClusterNodes, clock: FakeClock) -> AsyncIterator[Callable[..., RedisLimiter]]:
    prefix = f"portico-cluster-{uuid.uuid4().hex[:8]}"
    made: list[RedisLimiter] = []

    def make(**options: float) -> RedisLimiter:
        limiter = RedisLimiter(cluster.url, prefix=prefix, clock=clock, cluster=True, socket_timeout=2.0, **options)
        made.append(limiter)
        return limiter

    yield make
    for limiter in made:
        await limiter.aclose()


def window(scope: str, **limits: int) -> Window:
    return Window(scope=scope, label=scope, **limits)


def call(*windows: Window, budgets: tuple[Budget, ...] = (), tokens: int = 0, cost: int = 0) -> Ask:
    return Ask(request_id=uuid.uuid4().hex, windows=windows, budgets=budgets, tokens=tokens, cost=cost)


def tenant_budget(limit: int) -> Budget:
    plain = budget(limit=limit)
    return Budget("tenant:3", "this organization", plain.period, plain.limit, plain.spent, plain.ttl)


CALLS = {
    "a key alone": call(window("key:12", rpm=5, tpm=100, concurrency=2)),
    "a key on a model": call(window("key:12:model:gpt-4o", rpm=5), window("key:12", concurrency=1)),
    "a key and its tenant": call(
        window("key:12", rpm=5, concurrency=1),
        window("tenant:3:model:gpt-4o", tpm=100),
        window("tenant:3", rpm=50),
        budgets=(tenant_budget(10**9),),
        tokens=10,
        cost=5,
    ),
    "a deployment's caps": call(window("deployment:5", rpm=5, tpm=100, concurrency=3)),
}


def slots(keys: list[str]) -> set[int]:
    return {key_slot(name.encode()) for name in keys}


def sharded(ask: Ask) -> Ask:
    """The ask as the limiter sends it to a cluster."""
    return replace(ask, shard=shard_of(ask))


@pytest.mark.parametrize("name", CALLS)
def test_every_key_of_an_acquire_its_settle_and_its_renewal_hashes_to_one_slot(name: str) -> None:
    limiter = RedisLimiter("redis://127.0.0.1:1/0", prefix="portico", cluster=True)
    ask = sharded(CALLS[name])
    ticket = ticket_for(ask, local=False)  # what an admitted acquire hands out
    acquire_keys, _ = limiter._acquire_call(ask)
    settle_keys, _ = limiter._settle_call(ticket, 1, 1)
    renew_keys, _ = limiter._renew_call([ticket])
    assert len(acquire_keys) > 1
    assert len(slots(acquire_keys + settle_keys + renew_keys)) == 1, acquire_keys + settle_keys


def test_a_renewal_of_many_tenants_slots_is_one_script_call_per_slot() -> None:
    limiter = RedisLimiter("redis://127.0.0.1:1/0", prefix="portico", cluster=True)
    tickets = [ticket_for(sharded(call(window(f"tenant:{n}", concurrency=1))), local=False) for n in range(9)]
    batches = limiter._renew_batches(tickets)
    assert sorted(len(batch) for batch in batches) == [1] * 9
    for batch in batches:
        keys, _ = limiter._renew_call(batch)
        assert len(slots(keys)) == 1


def test_a_tenant_s_keys_are_named_alike_whichever_of_its_api_keys_calls() -> None:
    limiter = RedisLimiter("redis://127.0.0.1:1/0", prefix="portico", cluster=True)
    tenant_wide = window("tenant:3", rpm=50)
    first = call(window("key:12", rpm=5), tenant_wide)
    second = call(window("key:13", rpm=5), tenant_wide)
    first_keys, _ = limiter._acquire_call(sharded(first))
    second_keys, _ = limiter._acquire_call(sharded(second))
    assert first_keys[1] == second_keys[1] == "portico:{tenant:3}:rl:tenant:3:req"


def test_on_a_single_redis_the_keys_keep_the_names_they_always_had() -> None:
    limiter = RedisLimiter("redis://127.0.0.1:1/0", prefix="portico", cluster=False)
    keys, _ = limiter._acquire_call(CALLS["a key and its tenant"])
    assert keys[0] == "portico:rl:key:12:req"
    assert keys[-1].startswith("portico:budget:tenant:3:")


def test_the_cluster_computes_the_same_slots(cluster: ClusterNodes) -> None:
    limiter = RedisLimiter(cluster.url, prefix="portico", cluster=True)
    ask = CALLS["a key and its tenant"]
    keys, _ = limiter._acquire_call(sharded(ask))
    node = cluster.node(0)
    try:
        assert {node.execute_command("CLUSTER", "KEYSLOT", name) for name in keys} == slots(keys)
    finally:
        node.close()


async def test_a_tenant_s_rpm_holds_across_two_clients_and_two_api_keys(make: Callable[..., RedisLimiter]) -> None:
    first, second = make(), make()
    tenant_wide = window("tenant:3", rpm=7)
    passed = 0
    for turn in range(20):
        limiter, key = (first, "key:12") if turn % 2 else (second, "key:13")
        verdict = await limiter.acquire(call(window(key, rpm=100), tenant_wide))
        passed += verdict.allowed
    assert passed == 7


async def test_limits_of_many_tenants_spread_over_the_nodes_and_each_holds(
    make: Callable[..., RedisLimiter], cluster: ClusterNodes
) -> None:
    limiter = make()
    tenants = [f"tenant:{number}" for number in range(12)]
    for scope in tenants:
        assert await admitted(limiter, call(window(scope, rpm=3)), most=10) == 3
    counted = []
    for index in range(len(cluster.ports)):
        node = cluster.node(index)
        try:
            counted.append(node.dbsize())
        finally:
            node.close()
    assert sum(1 for keys in counted if keys) > 1, f"every tenant's keys on one node: {counted}"


async def test_a_budget_and_a_slot_in_flight_are_settled_on_the_cluster(make: Callable[..., RedisLimiter]) -> None:
    limiter = make()
    spend = call(window("key:12", concurrency=1), budgets=(tenant_budget(100),), cost=60)
    held = ticket_of(await limiter.acquire(spend))
    assert not (await limiter.acquire(spend)).allowed, "the slot is held"
    await limiter.settle(held, tokens=0, cost=30)
    assert (await limiter.acquire(spend)).allowed, "the slot is free and 30 + 60 stays within 100"


async def test_a_renewal_keeps_slots_of_several_tenants_held(
    make: Callable[..., RedisLimiter], clock: FakeClock
) -> None:
    limiter = make(lease=30)
    holders = [call(window(f"tenant:{number}", concurrency=1)) for number in range(6)]
    tickets = [ticket_of(await limiter.acquire(holder)) for holder in holders]
    clock.advance(25)
    await limiter.renew(tickets)
    clock.advance(25)  # past the first lease, within the renewed one
    refused = [not (await limiter.acquire(holder)).allowed for holder in holders]
    assert all(refused), "every renewed slot is still held"
    clock.advance(10)
    assert all([(await limiter.acquire(holder)).allowed for holder in holders]), "the renewed leases ran out"
