"""What only `RedisBreakers` does: share breakers between processes, keep its keys tidy, live through Redis outages.

Two instances on one prefix stand for two processes here; the test of real
separate processes is tests/integration/test_breakers_shared.py.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Callable

import pytest
from redis.asyncio import Redis

from gateway.breakers import CLOSED, OPEN, RedisBreakers
from gateway.tests.test_breakers import NAME, REDIS_URL, ROUTE, RULES, FakeClock, drop_keys, new_prefix
from tests.tcp_proxy import TcpProxy

SEEN_WITHIN = 1.0  # seconds another process may take to see a transition


@pytest.fixture
async def prefix() -> AsyncIterator[str]:
    prefix = new_prefix()
    yield prefix
    await drop_keys(prefix)


@pytest.fixture
async def make(prefix: str) -> AsyncIterator[Callable[..., RedisBreakers]]:
    made: list[RedisBreakers] = []

    def make(**options: object) -> RedisBreakers:
        options.setdefault("url", REDIS_URL)
        breakers = RedisBreakers(prefix=prefix, rules=RULES, **options)  # type: ignore[arg-type]
        made.append(breakers)
        return breakers

    yield make
    for breakers in made:
        await breakers.stop()


async def eventually(check: Callable[[], bool], *, within: float = SEEN_WITHIN) -> float:
    """How long `check` took to hold, polling every 5 ms; fails past `within` seconds."""
    started = time.monotonic()
    while not check():
        assert time.monotonic() - started < within, "not within the bound"
        await asyncio.sleep(0.005)
    return time.monotonic() - started


def fail(breakers: RedisBreakers, times: int = 3, route: int = ROUTE) -> None:
    for _ in range(times):
        breakers.record(route, NAME, ok=False, reason="connection refused")


async def test_its_keys_carry_the_prefix_and_the_deployment_as_hash_tag(
    make: Callable[..., RedisBreakers], prefix: str
) -> None:
    breakers = make()
    fail(breakers)
    await breakers.flush()
    client = Redis.from_url(REDIS_URL)
    names = sorted([name.decode() async for name in client.scan_iter(match=f"{prefix}:*")])
    await client.aclose()
    assert names == [
        f"{prefix}:breaker:{{{ROUTE}}}:errors",
        f"{prefix}:breaker:{{{ROUTE}}}:state",
        f"{prefix}:breakers:known",
    ], "the window goes when the breaker opens"


async def test_a_failure_reaches_redis_at_once_while_successes_wait_for_their_batch(
    make: Callable[..., RedisBreakers], prefix: str
) -> None:
    breakers = make(success_flush=30.0)
    await breakers.start()
    client = Redis.from_url(REDIS_URL)
    state_key = f"{prefix}:breaker:{{{ROUTE}}}:state"
    breakers.record(ROUTE, NAME, ok=False, reason="reset by peer")
    started = time.monotonic()
    while await client.hget(state_key, "consecutive") != b"1":
        assert time.monotonic() - started < 0.1, "a failure must reach Redis within tens of milliseconds"
        await asyncio.sleep(0.002)
    breakers.record(ROUTE, NAME, ok=True)
    await asyncio.sleep(0.05)  # long enough for a flush that would have been due
    assert await client.hget(state_key, "consecutive") == b"1", "a success alone waits for the batch"
    await client.aclose()


async def test_a_breaker_opened_by_one_process_is_seen_by_another_and_so_is_its_reset(
    make: Callable[..., RedisBreakers],
) -> None:
    failing, other = make(), make()
    await failing.start()
    await other.start()
    await eventually(lambda: other.watching)
    fail(failing)
    took = await eventually(lambda: other.is_open(ROUTE))
    assert took < SEEN_WITHIN
    await asyncio.to_thread(other.reset, ROUTE)
    await eventually(lambda: not failing.is_open(ROUTE))
    assert failing.allow(ROUTE)


async def test_only_the_configured_probes_are_granted_across_processes(make: Callable[..., RedisBreakers]) -> None:
    clock = FakeClock()
    first, second = make(clock=clock), make(clock=clock)
    fail(first)
    await first.flush()
    await second.flush()
    clock.advance(RULES.cooldown)
    second._open[ROUTE] = clock.now - 1  # as its watcher would have mirrored it
    grants = await asyncio.gather(*[breakers.acquire_probe(ROUTE) for breakers in (first, second) * 5])
    assert grants.count(True) == RULES.half_open_probes


async def test_the_periodic_read_makes_good_a_lost_message(make: Callable[..., RedisBreakers], prefix: str) -> None:
    watcher = make(poll=0.1)
    await watcher.start()
    await eventually(lambda: watcher.watching)
    client = Redis.from_url(REDIS_URL)
    # A transition whose message never came: written as the scripts write it, without the publish.
    until = time.time() + 60
    await client.hset(f"{prefix}:breaker:{{{ROUTE}}}:state", mapping={"state": OPEN, "open_until": until})
    await client.sadd(f"{prefix}:breakers:known", ROUTE)
    await client.aclose()
    await eventually(lambda: watcher.is_open(ROUTE))


async def test_without_redis_every_breaker_counts_as_closed_and_the_outage_is_logged_once(
    make: Callable[..., RedisBreakers], caplog: pytest.LogCaptureFixture
) -> None:
    proxy = TcpProxy("127.0.0.1", 6379)
    proxy.start()
    try:
        clock = FakeClock()
        breakers = make(url=f"redis://127.0.0.1:{proxy.port}/0", clock=clock)
        fail(breakers)
        await breakers.flush()
        assert breakers.is_open(ROUTE)
        clock.advance(RULES.cooldown)
        proxy.cut()
        with caplog.at_level(logging.ERROR, logger="gateway.breakers.redis"):
            assert await breakers.acquire_probe(ROUTE), "a probe that cannot be asked for is granted"
            for _ in range(3):
                fail(breakers)
                await breakers.flush()
            assert not breakers.is_open(ROUTE)
            assert breakers.state(ROUTE).state == CLOSED
        assert len([record for record in caplog.records if record.levelno == logging.ERROR]) == 1
        proxy.restore()
        fail(breakers, route=ROUTE + 1)
        await breakers.flush()
        assert breakers.is_open(ROUTE + 1), "breakers work again once Redis answers"
    finally:
        proxy.stop()


async def test_stopping_right_after_a_failure_never_hangs(make: Callable[..., RedisBreakers]) -> None:
    # The failure wakes the flush task just as stop() cancels it: the cancel must not be lost.
    for _ in range(30):
        breakers = make()
        await breakers.start()
        await asyncio.sleep(0)
        fail(breakers, times=1)
        async with asyncio.timeout(5):
            await breakers.stop()
