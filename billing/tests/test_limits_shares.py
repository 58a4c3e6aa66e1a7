"""Calls that may fill only part of a limit (batch lines): how far they go, and the room they leave the others.

Each test runs against `RedisLimiter` (on the real Redis) and `LocalLimiter`, on
the fake clock of test_limits.py. "A batch line" here is an ask with a share
below 1, as billing.metering makes one for a line of a batch; any other is interactive.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from dataclasses import replace

import pytest

from billing.limits import Ask, Limiter, LocalLimiter, RedisLimiter, Verdict
from billing.limits.verdicts import ceiling
from billing.tests.test_limits import REDIS_URL, FakeClock, admitted, ask, drop_keys, key, new_prefix, tenant, ticket_of


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
async def prefix() -> AsyncIterator[str]:
    made = new_prefix()
    yield made
    await drop_keys(made)


@pytest.fixture(params=["redis", "local"])
async def limiter(request: pytest.FixtureRequest, clock: FakeClock, prefix: str) -> AsyncIterator[Limiter]:
    made: Limiter
    if request.param == "redis":
        made = RedisLimiter(REDIS_URL, prefix=prefix, clock=clock)
    else:
        made = LocalLimiter(clock=clock)
    yield made
    await made.aclose()


async def batch_line(limiter: Limiter, request: Ask, share: float) -> Verdict:
    """The verdict on one copy of `request`, made as a batch line that may fill `share`."""
    return await limiter.acquire(replace(request, request_id=uuid.uuid4().hex, share=share))


async def batch_admitted(limiter: Limiter, request: Ask, share: float, *, most: int = 100) -> int:
    """How many copies of `request`, made as batch lines that may fill `share`, pass before the first refusal."""
    return await admitted(limiter, replace(request, share=share), most=most)


@pytest.mark.parametrize(
    ("limit", "share", "amount", "most"),
    [
        (10, 0.8, 1, 8),
        (5, 0.8, 1, 4),
        (2, 0.8, 1, 1),
        (1, 0.8, 1, 1),  # a limit of 1 still admits a line, when nothing else holds it
        (1, 0.01, 1, 1),
        (100, 0.29, 1, 29),  # 0.29 × 100 is 28.999… in floating point
        (10, 1.0, 1, 10),
        (1000, 0.5, 300, 500),
        (1000, 0.5, 900, 900),  # a line larger than its share still fits once the window is that empty
        (1000, 0.5, 1200, 1000),  # and one larger than the whole limit is refused as any call is
        (0, 0.5, 1, 0),
    ],
)
def test_a_share_of_a_limit_rounds_down_to_at_least_the_calls_own_amount(
    limit: int, share: float, amount: int, most: int
) -> None:
    assert ceiling(limit, share, amount=amount) == most


async def test_batch_lines_fill_their_share_of_the_rpm_and_interactive_calls_get_the_rest(limiter: Limiter) -> None:
    assert await batch_admitted(limiter, ask(tenant(rpm=10)), 0.8) == 8

    refused = await batch_line(limiter, ask(tenant(rpm=10)), 0.8)

    # The next line waits until the tenant's window is back under 8 of 10: one request's interval.
    assert (refused.allowed, refused.refused) == (False, "requests")
    assert refused.retry_after == pytest.approx(6.0, abs=0.001)
    assert await admitted(limiter, ask(tenant(rpm=10))) == 2


async def test_batch_lines_wait_while_interactive_calls_hold_more_than_the_share(
    limiter: Limiter, clock: FakeClock
) -> None:
    assert await admitted(limiter, ask(key(rpm=10), tenant(rpm=10)), most=9) == 9

    assert await batch_admitted(limiter, ask(key(rpm=10), tenant(rpm=10)), 0.8) == 0
    assert (await limiter.acquire(ask(key(rpm=10), tenant(rpm=10)))).allowed  # the 10th is still interactive's
    clock.advance(18)  # three intervals: the window is at 7 of 10
    assert await batch_admitted(limiter, ask(key(rpm=10), tenant(rpm=10)), 0.8) == 1


async def test_a_limit_of_one_lets_a_batch_line_through_once_the_window_is_empty(
    limiter: Limiter, clock: FakeClock
) -> None:
    assert await batch_admitted(limiter, ask(key(rpm=1)), 0.8) == 1
    clock.advance(30)
    assert await batch_admitted(limiter, ask(key(rpm=1)), 0.8) == 0
    clock.advance(30)
    assert await batch_admitted(limiter, ask(key(rpm=1)), 0.8) == 1


async def test_batch_lines_hold_their_share_of_the_slots_in_flight(limiter: Limiter) -> None:
    line = replace(ask(tenant(concurrency=5)), share=0.8)
    for _ in range(4):
        ticket_of(await limiter.acquire(replace(line, request_id=uuid.uuid4().hex)))
    refused = await limiter.acquire(replace(line, request_id=uuid.uuid4().hex))

    assert (refused.allowed, refused.refused) == (False, "concurrency")
    assert refused.message.startswith("Too many concurrent requests on this organization: Limit 4, In flight 4.")
    interactive = ticket_of(await limiter.acquire(ask(tenant(concurrency=5))))
    assert not (await limiter.acquire(ask(tenant(concurrency=5)))).allowed
    await limiter.settle(interactive, tokens=0, cost=0)
    assert (await limiter.acquire(ask(tenant(concurrency=5)))).allowed


async def test_a_single_slot_in_flight_goes_to_a_batch_line_only_while_it_is_free(limiter: Limiter) -> None:
    interactive = ticket_of(await limiter.acquire(ask(key(concurrency=1))))
    assert not (await batch_line(limiter, ask(key(concurrency=1)), 0.8)).allowed

    await limiter.settle(interactive, tokens=0, cost=0)

    line = ticket_of(await batch_line(limiter, ask(key(concurrency=1)), 0.8))
    assert not (await limiter.acquire(ask(key(concurrency=1)))).allowed  # the line holds the only slot
    await limiter.settle(line, tokens=0, cost=0)


async def test_batch_lines_fill_their_share_of_the_tpm_counted_at_the_whole_limits_rate(limiter: Limiter) -> None:
    ticket_of(await batch_line(limiter, ask(key(tpm=1000), tokens=300), 0.5))

    refused = await batch_line(limiter, ask(key(tpm=1000), tokens=300), 0.5)

    assert (refused.allowed, refused.refused) == (False, "tokens")
    assert refused.retry_after == pytest.approx(100 * 60 / 1000, abs=0.001)  # until 100 tokens have drained
    assert "Limit 1000, Used 300, Requested 300." in refused.message
    assert (await limiter.acquire(ask(key(tpm=1000), tokens=700))).allowed
    assert (await limiter.acquire(ask(key(tpm=1000), tokens=1))).refused == "tokens"


async def test_a_line_larger_than_its_share_of_the_tpm_waits_for_an_empty_window_not_forever(
    limiter: Limiter, clock: FakeClock
) -> None:
    ticket_of(await limiter.acquire(ask(key(tpm=1000), tokens=100)))

    refused = await batch_line(limiter, ask(key(tpm=1000), tokens=900), 0.5)

    assert refused.refused == "tokens"
    assert refused.retry_after == pytest.approx(100 * 60 / 1000, abs=0.001)
    clock.advance(refused.retry_after)
    assert (await batch_line(limiter, ask(key(tpm=1000), tokens=900), 0.5)).allowed


async def test_a_share_of_one_leaves_a_batch_line_the_whole_limit(limiter: Limiter) -> None:
    assert await batch_admitted(limiter, ask(key(rpm=10, concurrency=20)), 1.0) == 10


async def test_the_share_is_exact_across_processes(clock: FakeClock, prefix: str) -> None:
    """Two processes' limiters on one Redis: lines from one, interactive calls from the other, see one window."""
    worker = RedisLimiter(REDIS_URL, prefix=prefix, clock=clock)
    server = RedisLimiter(REDIS_URL, prefix=prefix, clock=clock)
    try:
        for _ in range(3):
            assert await admitted(server, ask(tenant(rpm=20)), most=1) == 1
        assert await batch_admitted(worker, ask(tenant(rpm=20)), 0.5) == 7
        assert await admitted(server, ask(tenant(rpm=20))) == 10
    finally:
        await worker.aclose()
        await server.aclose()
