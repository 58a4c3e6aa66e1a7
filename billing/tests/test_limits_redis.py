"""What only `RedisLimiter` does: share limits between processes, keep its keys tidy, live through Redis outages."""

from __future__ import annotations

import asyncio
import logging
import math
from collections.abc import AsyncIterator

import pytest
from redis.asyncio import Redis
from redis.exceptions import NoScriptError, ResponseError

from billing.limits import Budget, LimiterFailed, LimiterUnavailable, RedisLimiter, Ticket
from billing.limits.clients import RedisPyClient, redis_client
from billing.limits.redis import is_outage
from billing.tests.test_limits import (
    REDIS_URL,
    FakeClock,
    admitted,
    ask,
    budget,
    drop_keys,
    key,
    new_prefix,
    ticket_of,
)

UNREACHABLE = "redis://127.0.0.1:1/0"


class RedisRelay:
    """A TCP relay to the test Redis that can drop every connection and refuse new ones: Redis going away."""

    def __init__(self) -> None:
        self.up = True
        self._writers: set[asyncio.StreamWriter] = set()
        self._handlers: set[asyncio.Task[None]] = set()

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.url = f"redis://127.0.0.1:{self._server.sockets[0].getsockname()[1]}/0"

    def cut(self) -> None:
        self.up = False
        for writer in self._writers:
            writer.close()

    async def close(self) -> None:
        self.cut()
        self._server.close()
        await self._server.wait_closed()
        await asyncio.gather(*self._handlers, return_exceptions=True)

    async def _serve(self, client_reader: asyncio.StreamReader, client_writer: asyncio.StreamWriter) -> None:
        handler = asyncio.current_task()
        assert handler is not None
        self._handlers.add(handler)
        if not self.up:
            client_writer.close()
            return
        redis_reader, redis_writer = await asyncio.open_connection("127.0.0.1", 6379)
        self._writers |= {client_writer, redis_writer}
        await asyncio.gather(self._pump(client_reader, redis_writer), self._pump(redis_reader, client_writer))

    @staticmethod
    async def _pump(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while data := await reader.read(65536):
                writer.write(data)
                await writer.drain()
        except OSError:
            pass
        finally:
            writer.close()


SETTLE_WAYS = ("settle", "settle_soon")


async def settle_by(way: str, limiter: RedisLimiter, ticket: Ticket, *, tokens: int, cost: int) -> None:
    """Settle one way or the other, and return once it has taken effect (a script reloaded and sent again too)."""
    if way == "settle":
        await limiter.settle(ticket, tokens=tokens, cost=cost)
        return
    # Its reply's error, if any, was dealt with by the limiter (logged, or kept to send again): not re-raised here.
    await asyncio.gather(limiter.settle_soon(ticket, tokens=tokens, cost=cost), return_exceptions=True)
    await asyncio.gather(*limiter._retries)


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
async def redis_prefix() -> AsyncIterator[str]:
    prefix = new_prefix()
    yield prefix
    await drop_keys(prefix)


@pytest.fixture
async def relay() -> AsyncIterator[RedisRelay]:
    relay = RedisRelay()
    await relay.start()
    yield relay
    await relay.close()


@pytest.fixture
async def redis() -> AsyncIterator[Redis]:
    client = Redis.from_url(REDIS_URL)
    yield client
    await client.aclose()


async def test_two_processes_share_one_limit(clock: FakeClock, redis_prefix: str) -> None:
    first = RedisLimiter(REDIS_URL, prefix=redis_prefix, clock=clock)
    second = RedisLimiter(REDIS_URL, prefix=redis_prefix, clock=clock)
    try:
        held = ticket_of(await first.acquire(ask(key(rpm=3, concurrency=1))))
        assert (await second.acquire(ask(key(rpm=3, concurrency=1)))).refused == "concurrency"
        await second.settle(held, tokens=0, cost=0)
        ticket_of(await second.acquire(ask(key(rpm=3))))
        ticket_of(await first.acquire(ask(key(rpm=3))))

        assert (await second.acquire(ask(key(rpm=3)))).refused == "requests"
    finally:
        await first.aclose()
        await second.aclose()


@pytest.mark.parametrize("way", SETTLE_WAYS)
async def test_concurrent_settles_on_the_one_connection_all_take_effect(
    clock: FakeClock, redis_prefix: str, redis: Redis, way: str
) -> None:
    limiter = RedisLimiter(REDIS_URL, prefix=redis_prefix, clock=clock)
    try:
        tickets = [ticket_of(await limiter.acquire(ask(key(concurrency=20, tpm=200), tokens=10))) for _ in range(20)]
        await redis.script_flush()  # settles in flight together must also survive Redis forgetting the script
        await asyncio.gather(*(settle_by(way, limiter, ticket, tokens=0, cost=0) for ticket in tickets))
        # Every slot is free again, and every unused token came back.
        again = [ticket_of(await limiter.acquire(ask(key(concurrency=20, tpm=200), tokens=10))) for _ in range(20)]
        refused = await limiter.acquire(ask(key(concurrency=20, tpm=200), tokens=10))
    finally:
        await limiter.aclose()

    assert len(again) == 20
    assert not refused.allowed  # and the limits hold again once the second round holds them


async def test_without_a_clock_it_reads_the_time_from_redis(redis_prefix: str) -> None:
    limiter = RedisLimiter(REDIS_URL, prefix=redis_prefix)
    try:
        ticket_of(await limiter.acquire(ask(key(rpm=1))))
        verdict = await limiter.acquire(ask(key(rpm=1)))
    finally:
        await limiter.aclose()

    assert verdict.refused == "requests"
    assert 59 < verdict.retry_after <= 60


async def test_it_reloads_its_scripts_when_redis_has_forgotten_them(
    clock: FakeClock, redis_prefix: str, redis: Redis
) -> None:
    limiter = RedisLimiter(REDIS_URL, prefix=redis_prefix, clock=clock)
    try:
        ticket = ticket_of(await limiter.acquire(ask(key(rpm=2, concurrency=1))))
        await redis.script_flush()
        await limiter.settle(ticket, tokens=0, cost=0)
        await redis.script_flush()
        second = await limiter.acquire(ask(key(rpm=2, concurrency=1)))
        third = await limiter.acquire(ask(key(rpm=2)))
    finally:
        await limiter.aclose()

    assert (second.allowed, third.refused) == (True, "requests")


async def test_idle_keys_expire(clock: FakeClock, redis_prefix: str, redis: Redis) -> None:
    limiter = RedisLimiter(REDIS_URL, prefix=redis_prefix, clock=clock, lease=600)
    budgets = (budget(limit=100, ttl=3600), budget(limit=100, period="all", ttl=0))
    try:
        ticket_of(await limiter.acquire(ask(key(rpm=60, tpm=1000, concurrency=5), budgets=budgets, tokens=500)))
    finally:
        await limiter.aclose()

    stem = f"{redis_prefix}:rl:key:1"
    assert 60_000 < await redis.pttl(f"{stem}:req") <= 61_000  # full again in 1 s, then a minute's margin
    assert 60_000 < await redis.pttl(f"{stem}:tok") <= 90_000
    assert 600_000 < await redis.pttl(f"{stem}:cc") <= 660_000
    assert 3590 < await redis.ttl(f"{redis_prefix}:budget:tenant:1:2026-11") <= 3600
    assert await redis.ttl(f"{redis_prefix}:budget:tenant:1:all") == -1


async def test_failing_open_it_limits_in_process_and_says_so_once(
    clock: FakeClock, caplog: pytest.LogCaptureFixture
) -> None:
    limiter = RedisLimiter(UNREACHABLE, prefix="unused", clock=clock, on_redis_error="open", recheck=0)
    try:
        with caplog.at_level(logging.ERROR, logger="billing.limits.redis"):
            first = await limiter.acquire(ask(key(rpm=2, concurrency=1)))
            second = await limiter.acquire(ask(key(rpm=2, concurrency=1)))
            await limiter.settle(ticket_of(first), tokens=0, cost=0)
            third = await limiter.acquire(ask(key(rpm=2, concurrency=1)))
            fourth = await limiter.acquire(ask(key(rpm=2)))
    finally:
        await limiter.aclose()

    assert ticket_of(first).local
    assert (second.refused, third.allowed, fourth.refused) == ("concurrency", True, "requests")
    assert [record.levelno for record in caplog.records] == [logging.ERROR]
    assert "enforcing limits in each process alone" in caplog.records[0].getMessage()


async def test_failing_closed_it_raises_while_redis_is_away(clock: FakeClock) -> None:
    limiter = RedisLimiter(UNREACHABLE, prefix="unused", clock=clock, on_redis_error="closed")
    try:
        with pytest.raises(LimiterUnavailable):
            await limiter.acquire(ask(key(rpm=2)))
        with pytest.raises(LimiterUnavailable):  # without asking Redis again within `recheck`
            await limiter.acquire(ask(key(rpm=2)))
        unlimited = await limiter.acquire(ask(key()))
    finally:
        await limiter.aclose()

    assert unlimited.allowed


@pytest.mark.parametrize("way", SETTLE_WAYS)
async def test_after_an_outage_redis_first_gets_the_settles_it_missed(
    clock: FakeClock, redis_prefix: str, relay: RedisRelay, caplog: pytest.LogCaptureFixture, way: str
) -> None:
    limiter = RedisLimiter(relay.url, prefix=redis_prefix, clock=clock, recheck=0)
    try:
        held = ticket_of(await limiter.acquire(ask(key(concurrency=1), budgets=(budget(limit=100),), cost=100)))
        relay.cut()
        await settle_by(way, limiter, held, tokens=0, cost=30)
        during = await limiter.acquire(ask(key(concurrency=1)))
        relay.up = True
        with caplog.at_level(logging.WARNING, logger="billing.limits.redis"):
            after = await limiter.acquire(ask(key(concurrency=1), budgets=(budget(limit=100),), cost=60))
            budget_left = await admitted(limiter, ask(budgets=(budget(limit=100),)), most=1)
    finally:
        await limiter.aclose()

    assert ticket_of(during).local
    assert not ticket_of(after).local
    assert budget_left == 1  # 30 charged + 60 reserved
    assert "answers the rate limiter again" in caplog.records[-1].getMessage()


async def test_a_settle_that_cannot_reach_redis_does_not_raise(clock: FakeClock, redis_prefix: str) -> None:
    issuer = RedisLimiter(REDIS_URL, prefix=redis_prefix, clock=clock)
    try:
        ticket = ticket_of(await issuer.acquire(ask(key(concurrency=1))))
    finally:
        await issuer.aclose()
    limiter = RedisLimiter(UNREACHABLE, prefix=redis_prefix, clock=clock, on_redis_error="closed")
    try:
        await limiter.settle(ticket, tokens=0, cost=0)
    finally:
        await limiter.aclose()


async def test_a_backlog_of_missed_settles_is_sent_in_batches(
    clock: FakeClock, redis_prefix: str, relay: RedisRelay
) -> None:
    limiter = RedisLimiter(relay.url, prefix=redis_prefix, clock=clock, recheck=0)
    crowd = key(concurrency=250)
    try:
        tickets = [ticket_of(await limiter.acquire(ask(crowd))) for _ in range(250)]
        relay.cut()
        for ticket in tickets:
            await limiter.settle(ticket, tokens=0, cost=0)
        relay.up = True

        assert await admitted(limiter, ask(crowd), most=251) == 250
    finally:
        await limiter.aclose()


# --- a script that fails on one request is that request's problem, not an outage ------------------


async def test_a_script_error_fails_that_request_alone_and_redis_stays_in_use(
    clock: FakeClock, redis_prefix: str, redis: Redis, caplog: pytest.LogCaptureFixture
) -> None:
    # A budget counter holding something else than a number: every check of that budget fails.
    await redis.hset(f"{redis_prefix}:budget:tenant:1:2026-11", "not", "a counter")
    limiter = RedisLimiter(REDIS_URL, prefix=redis_prefix, clock=clock, on_redis_error="closed")
    try:
        with caplog.at_level(logging.ERROR, logger="billing.limits.redis"):
            with pytest.raises(LimiterFailed):
                await limiter.acquire(ask(key(rpm=2, concurrency=1), budgets=(budget(limit=100),), cost=1))
            first = ticket_of(await limiter.acquire(ask(key(rpm=2, concurrency=1))))
            second = await limiter.acquire(ask(key(rpm=2)))
    finally:
        await limiter.aclose()

    assert not first.local
    assert second.allowed  # the failed request took neither a slot nor one of the two requests a minute
    [logged] = caplog.records  # no "Redis does not answer": it did, with an error about this request
    assert "acquire script failed" in logged.getMessage()


async def test_a_counter_that_cannot_take_a_reservation_leaves_every_other_as_it_was(
    clock: FakeClock, redis_prefix: str, redis: Redis
) -> None:
    # Arguments past what Redis counts (a caller that did not clamp them): the second INCRBY overflows.
    mine = Budget("key:1", "this API key", "2026-11", 100, 0, 3600)
    overflowing = Budget("tenant:1", "this organization", "2026-11", 2**64, 0, 3600)
    stem = f"{redis_prefix}:budget"
    await redis.set(f"{stem}:tenant:1:2026-11", 2**63 - 10)
    limiter = RedisLimiter(REDIS_URL, prefix=redis_prefix, clock=clock)
    try:
        with pytest.raises(LimiterFailed):
            await limiter.acquire(ask(key(rpm=2, concurrency=1), budgets=(mine, overflowing), cost=100))
    finally:
        await limiter.aclose()

    assert await redis.get(f"{stem}:key:1:2026-11") == b"0"
    assert await redis.get(f"{stem}:tenant:1:2026-11") == str(2**63 - 10).encode()
    assert await redis.zcard(f"{redis_prefix}:rl:key:1:cc") == 0
    assert await redis.exists(f"{redis_prefix}:rl:key:1:req") == 0


@pytest.mark.parametrize("way", SETTLE_WAYS)
async def test_a_settle_the_script_refuses_still_frees_the_slot_and_keeps_redis_in_use(
    clock: FakeClock, redis_prefix: str, redis: Redis, caplog: pytest.LogCaptureFixture, way: str
) -> None:
    counter = f"{redis_prefix}:budget:tenant:1:2026-11"
    limiter = RedisLimiter(REDIS_URL, prefix=redis_prefix, clock=clock)
    try:
        held = ticket_of(await limiter.acquire(ask(key(concurrency=1), budgets=(budget(limit=100),), cost=10)))
        await redis.delete(counter)
        await redis.hset(counter, "not", "a counter")
        with caplog.at_level(logging.ERROR, logger="billing.limits.redis"):
            await settle_by(way, limiter, held, tokens=0, cost=5)
        after = ticket_of(await limiter.acquire(ask(key(concurrency=1))))
    finally:
        await limiter.aclose()

    assert not after.local
    assert "settle script failed" in caplog.text
    assert "does not answer" not in caplog.text


@pytest.mark.parametrize(
    ("error", "outage"),
    [
        (ResponseError("LOADING Redis is loading the dataset in memory"), True),
        (ResponseError("BUSY Redis is busy running a script."), True),
        (ResponseError("OOM command not allowed when used memory > 'maxmemory'. script: ..."), True),
        (ResponseError("READONLY You can't write against a read only replica."), True),
        (NoScriptError("NOSCRIPT No matching script."), True),
        (ResponseError("WRONGTYPE Operation against a key holding the wrong kind of value script: ..."), False),
        (ResponseError("ERR value is not an integer or out of range"), False),
        (ResponseError("ERR user_script:12: attempt to compare nil with number"), False),
    ],
)
def test_only_error_replies_about_redis_itself_count_as_an_outage(error: ResponseError, outage: bool) -> None:
    assert is_outage(error) is outage


async def test_a_settle_written_before_the_connection_broke_is_sent_again_once_redis_is_back(
    clock: FakeClock, redis_prefix: str, relay: RedisRelay
) -> None:
    limiter = RedisLimiter(relay.url, prefix=redis_prefix, clock=clock, recheck=0)
    try:
        held = ticket_of(await limiter.acquire(ask(key(concurrency=1))))
        pending = limiter.settle_soon(held, tokens=0, cost=0)
        relay.cut()  # before the relay could pass the written settle on: Redis never gets it, nor a reply
        [lost] = await asyncio.gather(pending, return_exceptions=True)
        assert isinstance(lost, ConnectionError)  # dealt with by the limiter, which keeps the settle to send again
        relay.up = True
        again = ticket_of(await limiter.acquire(ask(key(concurrency=1))))
    finally:
        await limiter.aclose()

    assert not again.local  # Redis got the missed settle first: the slot was free


@pytest.mark.parametrize("connection", ["resp", "redis-py"])
async def test_an_acquire_whose_caller_left_before_its_reply_gives_back_what_it_reserved(
    clock: FakeClock, redis: Redis, connection: str
) -> None:
    # A client that leaves while its acquire is on the way (its task cancelled by the disconnect) must not
    # hold its slot in flight, its tokens or its budget until the slot's lease runs out: seen as a tenant's
    # concurrency taken for half a minute by the requests of clients that had gone.
    limits = key(rpm=2, concurrency=1, tpm=100)
    for _attempt in range(5):
        prefix = new_prefix()
        # redis-py's connection (a cluster's) runs the acquire in a task of its own; the hand-written one keeps
        # the reply of a caller that left.
        client = (
            RedisPyClient(redis_client(REDIS_URL, timeout=1.0, cluster=False)) if connection == "redis-py" else None
        )
        limiter = RedisLimiter(REDIS_URL, prefix=prefix, clock=clock, client=client)
        try:
            await limiter._client.call("PING")  # the connection is open, so the acquire is written at once
            leaving = asyncio.create_task(
                limiter.acquire(ask(limits, budgets=(budget(limit=100),), tokens=60, cost=10))
            )
            await asyncio.sleep(0)  # the acquire is written; its reply is not read before this task runs again
            leaving.cancel()
            with pytest.raises(asyncio.CancelledError):
                await leaving
            for _ in range(100):
                if await redis.get(f"{prefix}:budget:tenant:1:2026-11") == b"0":
                    break
                await asyncio.sleep(0.01)
            # The slot, the tokens and the budget are back: one more call may take each of them whole.
            after = ticket_of(await limiter.acquire(ask(limits, budgets=(budget(limit=100),), tokens=90, cost=100)))
            await limiter.settle(after, tokens=0, cost=0)
            # The request that left was made, as a call that ends before it begins is: it counts against the rpm.
            # Unless a test alongside flushed Redis's scripts, and the cancellation came while it was reloading
            # them: then nothing was reserved, and the case is tried again.
            reached = (await limiter.acquire(ask(limits))).refused == "requests"
        finally:
            await limiter.aclose()
            await drop_keys(prefix)
        assert not after.local
        if reached:
            return
    pytest.fail("the acquire of the caller that left never reached Redis")


async def test_slots_in_flight_are_scored_in_whole_milliseconds(
    clock: FakeClock, redis_prefix: str, redis: Redis
) -> None:
    # Redis inserts into a small sorted set of integer scores at a third of the cost of decimal ones: a slot's
    # lease end is rounded up to the millisecond, when taken and when renewed.
    clock.now += 0.0004567  # a time between two milliseconds
    limiter = RedisLimiter(REDIS_URL, prefix=redis_prefix, clock=clock, lease=30.0)
    slots = f"{redis_prefix}:rl:key:1:cc"
    try:
        held = ticket_of(await limiter.acquire(ask(key(concurrency=2))))
        taken, taken_at = await redis.zscore(slots, held.request_id), clock.now
        clock.advance(10.0003)
        await limiter.renew([held])
        renewed = await redis.zscore(slots, held.request_id)
    finally:
        await limiter.aclose()
    assert taken == math.ceil(taken_at * 1000 + 30_000)
    assert renewed == math.ceil(clock.now * 1000 + 30_000)
    assert await redis.object("ENCODING", slots) == b"listpack"  # small: the case the rounding is for
