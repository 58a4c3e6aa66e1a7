"""The stores: the in-process LRU forgets after the TTL and past its bounds; Redis keeps an answer for its TTL."""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator

import pytest
import redis.asyncio as aioredis

from gateway.response_cache.stores import LocalStore, RedisStore, TieredStore


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def local(entries: int = 10, max_bytes: int = 1000) -> tuple[LocalStore, Clock]:
    clock = Clock()
    return LocalStore(entries=entries, max_bytes=max_bytes, clock=clock), clock


def test_it_serves_an_answer_until_its_ttl_passes() -> None:
    store, clock = local()
    store.keep("a", b"answer", ttl=60)

    clock.now += 59.9
    assert store.lookup("a") == b"answer"
    clock.now += 0.1
    assert store.lookup("a") is None
    assert (len(store), store.size) == (0, 0)


def test_each_answer_keeps_its_own_ttl() -> None:
    store, clock = local()
    store.keep("short", b"1", ttl=1)
    store.keep("long", b"2", ttl=100)

    clock.now += 2

    assert (store.lookup("short"), store.lookup("long")) == (None, b"2")


def test_past_its_count_it_forgets_the_least_recently_used() -> None:
    store, _clock = local(entries=2)
    store.keep("a", b"1", ttl=60)
    store.keep("b", b"2", ttl=60)
    assert store.lookup("a") == b"1"  # now "b" is the least recently used

    store.keep("c", b"3", ttl=60)

    assert (store.lookup("a"), store.lookup("b"), store.lookup("c")) == (b"1", None, b"3")
    assert len(store) == 2


def test_past_its_bytes_it_forgets_the_oldest_until_the_answers_fit() -> None:
    store, _clock = local(entries=100, max_bytes=10)
    store.keep("a", b"1234", ttl=60)
    store.keep("b", b"5678", ttl=60)

    store.keep("c", b"abcdef", ttl=60)

    assert (store.lookup("a"), store.lookup("b"), store.lookup("c")) == (None, b"5678", b"abcdef")
    assert store.size == 10


def test_an_answer_larger_than_the_whole_store_is_not_kept() -> None:
    store, _clock = local(max_bytes=4)
    store.keep("a", b"12", ttl=60)

    store.keep("big", b"12345", ttl=60)

    assert (store.lookup("a"), store.lookup("big")) == (b"12", None)


def test_storing_a_key_again_replaces_its_answer_and_ttl() -> None:
    store, clock = local()
    store.keep("a", b"old", ttl=1)
    store.keep("a", b"newer", ttl=60)

    clock.now += 2

    assert store.lookup("a") == b"newer"
    assert (len(store), store.size) == (1, 5)


@pytest.fixture
def wall() -> Clock:
    return Clock()


@pytest.fixture
async def redis_store(wall: Clock) -> AsyncIterator[RedisStore]:
    store = RedisStore(os.environ["REDIS_URL"], prefix=f"portico-test-cache-{uuid.uuid4().hex[:8]}", clock=wall)
    yield store
    await store.aclose()


@pytest.fixture
async def redis() -> AsyncIterator[aioredis.Redis]:
    client = aioredis.from_url(os.environ["REDIS_URL"])
    yield client
    await client.aclose()


async def test_redis_keeps_an_answer_for_its_ttl(redis_store: RedisStore, redis: aioredis.Redis) -> None:
    await redis_store.put("7:abc", b'{"id": "x"}', ttl=90)

    assert await redis_store.get("7:abc") == b'{"id": "x"}'
    assert await redis_store.get("8:abc") is None
    # Redis expires the key on its own clock: what matters is that it was given the policy's TTL.
    assert 89_000 < await redis.pttl(redis_store.prefix + "7:abc") <= 90_000


async def test_redis_says_how_long_an_answer_has_left(redis_store: RedisStore, wall: Clock) -> None:
    await redis_store.put("7:abc", b"answer", ttl=90)

    wall.now += 30
    assert await redis_store.read("7:abc") == (b"answer", pytest.approx(60))
    wall.now += 60  # past the expiry written with it, should Redis not have dropped it yet
    assert await redis_store.read("7:abc") is None


async def test_a_process_serves_again_what_it_read_from_redis_without_asking_again(
    redis_store: RedisStore, redis: aioredis.Redis, wall: Clock
) -> None:
    writer, _ = local()
    reader, reader_clock = local()
    await TieredStore(writer, redis_store).put("7:abc", b"answer", ttl=90)
    wall.now += 80
    tiered = TieredStore(reader, redis_store)

    assert await tiered.get("7:abc") == b"answer"  # from Redis, with 10 s left
    await redis.delete(redis_store.prefix + "7:abc")
    assert await tiered.get("7:abc") == b"answer"  # from this process
    reader_clock.now += 10
    assert await tiered.get("7:abc") is None  # gone here when it would have gone from Redis


async def test_redis_out_of_reach_reads_as_a_miss() -> None:
    store = RedisStore("redis://127.0.0.1:9/0", prefix="portico-test-cache")  # the discard port: refused
    try:
        await store.put("1:abc", b"answer", ttl=60)
        assert await store.get("1:abc") is None
    finally:
        await store.aclose()
