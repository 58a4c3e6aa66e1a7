"""What every limiter must do: each test runs against `RedisLimiter` (on the real Redis) and `LocalLimiter`.

Time is a fake clock that both read (the Redis scripts take it as an argument),
so windows pass by `clock.advance`, never by sleeping.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import replace
from typing import Any

import pytest
from django.conf import settings
from redis.asyncio import Redis

from billing.limits import (
    RESERVATION_MAX,
    Ask,
    Budget,
    Limiter,
    LocalLimiter,
    RedisLimiter,
    Ticket,
    Verdict,
    Window,
    format_reset,
)
from billing.limits.verdicts import DEBT_MAX_MS, verdict_from_reply

REDIS_URL = settings.REDIS_URL or "redis://127.0.0.1:6379/0"
USD = 1_000_000_000  # nano-USD


class FakeClock:
    def __init__(self) -> None:
        self.now = 1_790_000_000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


def key(**limits: int) -> Window:
    return Window("key:1", "this API key", **limits)


def tenant(**limits: int) -> Window:
    return Window("tenant:1", "this organization", **limits)


def budget(*, limit: int, spent: int = 0, period: str = "2026-11", ttl: int = 3600, ends_at: float = 0.0) -> Budget:
    return Budget("tenant:1", "this organization", period, limit, spent, ttl, ends_at)


def ask(*windows: Window, budgets: tuple[Budget, ...] = (), tokens: int = 0, cost: int = 0) -> Ask:
    return Ask(uuid.uuid4().hex, windows, budgets, tokens, cost)


async def admitted(limiter: Limiter, request: Ask, *, most: int = 100) -> int:
    """How many copies of `request` pass before the first refusal."""
    for count in range(most):
        verdict = await limiter.acquire(replace(request, request_id=uuid.uuid4().hex))
        if not verdict.allowed:
            return count
    return most


def ticket_of(verdict: Verdict) -> Ticket:
    assert verdict.allowed, verdict.message
    assert verdict.ticket is not None
    return verdict.ticket


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


def new_prefix() -> str:
    return f"{settings.PORTICO_REDIS_PREFIX}-limits-{uuid.uuid4().hex}"


async def drop_keys(prefix: str) -> None:
    client = Redis.from_url(REDIS_URL)
    names = [name async for name in client.scan_iter(match=f"{prefix}:*")]
    if names:
        await client.delete(*names)
    await client.aclose()


@pytest.fixture
async def redis_prefix() -> AsyncIterator[str]:
    prefix = new_prefix()
    yield prefix
    await drop_keys(prefix)


@pytest.fixture(params=["redis", "local"])
async def make_limiter(
    request: pytest.FixtureRequest, clock: FakeClock, redis_prefix: str
) -> AsyncIterator[Callable[..., Limiter]]:
    made: list[Limiter] = []

    def make(**options: float) -> Limiter:
        limiter: Limiter
        if request.param == "redis":
            limiter = RedisLimiter(REDIS_URL, prefix=redis_prefix, clock=clock, **options)
        else:
            limiter = LocalLimiter(clock=clock, **options)
        made.append(limiter)
        return limiter

    yield make
    for limiter in made:
        await limiter.aclose()


@pytest.fixture
def limiter(make_limiter: Callable[..., Limiter]) -> Limiter:
    return make_limiter()


@pytest.mark.parametrize(
    ("seconds", "text"),
    [
        (0, "0s"),
        (-3, "0s"),
        (0.017, "17ms"),
        (0.0171, "18ms"),
        (0.999, "999ms"),
        (0.9996, "1s"),
        (1, "1s"),
        (2.5, "2.5s"),
        (2.142, "2.142s"),
        (59.9, "59.9s"),
        (60, "1m0s"),
        (90.5, "1m30.5s"),
        (360, "6m0s"),
        (3600, "1h0m0s"),
        (3723, "1h2m3s"),
    ],
)
def test_format_reset_writes_durations_as_openai_does(seconds: float, text: str) -> None:
    assert format_reset(seconds) == text


@pytest.mark.parametrize("rpm", [1, 3, 7, 60])
async def test_it_allows_a_burst_of_the_rpm_then_refuses_for_one_interval(limiter: Limiter, rpm: int) -> None:
    assert await admitted(limiter, ask(key(rpm=rpm))) == rpm

    verdict = await limiter.acquire(ask(key(rpm=rpm)))

    assert (verdict.allowed, verdict.refused, verdict.ticket) == (False, "requests", None)
    assert verdict.retry_after == pytest.approx(60 / rpm, abs=0.001)
    assert verdict.message == (
        f"Rate limit reached for requests per minute (RPM) on this API key: Limit {rpm}, Used {rpm}, "
        f"Requested 1. Please try again in {format_reset(60 / rpm)}."
    )


@pytest.mark.parametrize(("elapsed", "refilled"), [(0.5, 0), (1, 1), (2.5, 2), (30, 30), (60, 60), (600, 60)])
async def test_requests_refill_continuously_up_to_the_limit(
    limiter: Limiter, clock: FakeClock, elapsed: float, refilled: int
) -> None:
    assert await admitted(limiter, ask(key(rpm=60))) == 60

    clock.advance(elapsed)

    assert await admitted(limiter, ask(key(rpm=60))) == refilled


@pytest.mark.parametrize(
    ("reserved", "used", "remaining"),
    [(600, 100, 900), (600, 600, 400), (600, 0, 1000), (300, 900, 100)],
)
async def test_settle_moves_the_tokens_by_the_difference_between_use_and_reservation(
    limiter: Limiter, reserved: int, used: int, remaining: int
) -> None:
    ticket = ticket_of(await limiter.acquire(ask(key(tpm=1000), tokens=reserved)))
    assert ticket_of(await limiter.acquire(ask(key(tpm=1000))))  # a zero-token probe

    await limiter.settle(ticket, tokens=used, cost=0)

    probe = await limiter.acquire(ask(key(tpm=1000)))
    assert probe.headers["x-ratelimit-remaining-tokens"] == str(remaining)


async def test_a_reservation_is_held_until_settled(limiter: Limiter) -> None:
    ticket_of(await limiter.acquire(ask(key(tpm=1000), tokens=600)))

    verdict = await limiter.acquire(ask(key(tpm=1000), tokens=600))

    assert verdict.refused == "tokens"
    assert verdict.retry_after == pytest.approx(200 * 60 / 1000, abs=0.001)
    assert verdict.message == (
        "Rate limit reached for tokens per minute (TPM) on this API key: Limit 1000, Used 600, "
        "Requested 600. Please try again in 12s."
    )


# Both leave the bucket 500 tokens in debt: a bucket that sat full for a while is just full, not more.
@pytest.mark.parametrize(("idle", "used"), [(0, 1500), (120, 1600)])
async def test_using_more_than_reserved_leaves_a_debt_that_later_requests_wait_out(
    limiter: Limiter, clock: FakeClock, idle: float, used: int
) -> None:
    ticket = ticket_of(await limiter.acquire(ask(key(tpm=1000), tokens=100)))
    clock.advance(idle)
    await limiter.settle(ticket, tokens=used, cost=0)

    verdict = await limiter.acquire(ask(key(tpm=1000), tokens=1))

    assert verdict.refused == "tokens"
    assert verdict.retry_after == pytest.approx(501 * 60 / 1000, abs=0.001)
    assert "Limit 1000, Used 1500, Requested 1." in verdict.message
    assert verdict.headers["x-ratelimit-remaining-tokens"] == "0"
    clock.advance(verdict.retry_after - 0.01)
    assert not (await limiter.acquire(ask(key(tpm=1000), tokens=1))).allowed
    clock.advance(0.01)
    assert (await limiter.acquire(ask(key(tpm=1000), tokens=1))).allowed


async def test_settle_never_fills_a_bucket_above_its_capacity(limiter: Limiter, clock: FakeClock) -> None:
    ticket = ticket_of(await limiter.acquire(ask(key(tpm=1000), tokens=500)))
    clock.advance(60)

    await limiter.settle(ticket, tokens=0, cost=0)

    assert (await limiter.acquire(ask(key(tpm=1000), tokens=1000))).allowed
    assert (await limiter.acquire(ask(key(tpm=1000), tokens=1))).refused == "tokens"


async def test_it_refuses_a_request_larger_than_the_whole_tpm_for_good(limiter: Limiter) -> None:
    verdict = await limiter.acquire(ask(key(rpm=10, tpm=1000), tokens=1001))

    assert (verdict.refused, verdict.retry_after) == ("tokens", 0.0)
    assert verdict.message == (
        "Request too large for tokens per minute (TPM) on this API key: Limit 1000, Requested 1001. "
        "The input or output tokens must be reduced in order to run successfully."
    )
    assert verdict.headers["x-ratelimit-remaining-requests"] == "10"


@pytest.mark.parametrize(
    ("request_", "refused"),
    [
        (ask(key(rpm=0)), "requests"),
        (ask(key(tpm=0)), "tokens"),
        (ask(key(concurrency=0)), "concurrency"),
        (ask(budgets=(budget(limit=0),)), "budget"),
    ],
)
async def test_a_limit_of_zero_refuses_every_request(limiter: Limiter, request_: Ask, refused: str) -> None:
    assert (await limiter.acquire(request_)).refused == refused


async def test_concurrency_caps_requests_in_flight_until_one_settles(limiter: Limiter) -> None:
    first = ticket_of(await limiter.acquire(ask(key(concurrency=2))))
    ticket_of(await limiter.acquire(ask(key(concurrency=2))))

    refused = await limiter.acquire(ask(key(concurrency=2)))
    await limiter.settle(first, tokens=0, cost=0)
    after = await limiter.acquire(ask(key(concurrency=2)))

    assert (refused.refused, refused.retry_after) == ("concurrency", 1.0)
    assert refused.message == (
        "Too many concurrent requests on this API key: Limit 2, In flight 2. Please try again in 1s."
    )
    assert after.allowed


async def test_a_slot_never_settled_is_freed_when_its_lease_ends(
    make_limiter: Callable[..., Limiter], clock: FakeClock
) -> None:
    limiter = make_limiter(lease=10)
    ticket_of(await limiter.acquire(ask(key(concurrency=1))))

    clock.advance(9.9)
    assert (await limiter.acquire(ask(key(concurrency=1)))).refused == "concurrency"
    clock.advance(0.1)
    assert (await limiter.acquire(ask(key(concurrency=1)))).allowed


async def test_a_renewed_slot_is_held_for_a_lease_from_its_last_renewal(
    make_limiter: Callable[..., Any], clock: FakeClock
) -> None:
    limiter = make_limiter(lease=10)
    held = ticket_of(await limiter.acquire(ask(key(concurrency=1), tenant(concurrency=1))))

    for _ in range(3):  # 24 s in all: well past the first lease
        clock.advance(8)
        await limiter.renew([held])
    clock.advance(9.9)
    refused = [await limiter.acquire(ask(window)) for window in (key(concurrency=1), tenant(concurrency=1))]
    clock.advance(0.1)

    assert [verdict.refused for verdict in refused] == ["concurrency", "concurrency"]
    assert (await limiter.acquire(ask(key(concurrency=1), tenant(concurrency=1)))).allowed


@pytest.mark.parametrize("gone", ["settled", "lapsed"])
async def test_a_renewal_never_brings_back_a_slot_that_was_settled_or_whose_lease_ran_out(
    make_limiter: Callable[..., Any], clock: FakeClock, gone: str
) -> None:
    limiter = make_limiter(lease=10)
    held = ticket_of(await limiter.acquire(ask(key(concurrency=1))))
    if gone == "settled":
        await limiter.settle(held, tokens=0, cost=0)
    else:
        clock.advance(10)

    await limiter.renew([held])

    assert (await limiter.acquire(ask(key(concurrency=1)))).allowed


async def test_a_slot_in_flight_is_kept_by_its_process_from_its_acquire_to_its_settle(
    make_limiter: Callable[..., Any],
) -> None:
    limiter = make_limiter()
    in_flight = ticket_of(await limiter.acquire(ask(key(concurrency=1), tenant(rpm=10))))
    rated = ticket_of(await limiter.acquire(ask(tenant(rpm=10))))
    refused = await limiter.acquire(ask(key(concurrency=1)))
    kept = len(limiter.leases)

    await limiter.settle(rated, tokens=0, cost=0)
    await limiter.settle(in_flight, tokens=0, cost=0)

    assert refused.refused == "concurrency"
    assert kept == 1  # only the ticket with a slot in flight: a rate limit has nothing to renew
    assert len(limiter.leases) == 0


@pytest.mark.parametrize(
    ("limit", "spent", "cost", "count"),
    [(1000, 0, 400, 3), (1000, 999, 400, 1), (1000, 1000, 1, 0), (1000, 0, 0, 5), (1000, 0, 5000, 1)],
)
async def test_a_budget_admits_while_spent_and_reserved_stay_under_its_limit(
    limiter: Limiter, limit: int, spent: int, cost: int, count: int
) -> None:
    assert await admitted(limiter, ask(budgets=(budget(limit=limit, spent=spent),), cost=cost), most=5) == count


@pytest.mark.parametrize(("reserved", "charged", "admits_again"), [(1000, 300, True), (1000, 1000, False)])
async def test_settle_replaces_the_budget_reservation_with_the_actual_cost(
    limiter: Limiter, reserved: int, charged: int, admits_again: bool
) -> None:
    ticket = ticket_of(await limiter.acquire(ask(budgets=(budget(limit=1000),), cost=reserved)))
    assert (await limiter.acquire(ask(budgets=(budget(limit=1000),)))).refused == "budget"

    await limiter.settle(ticket, tokens=0, cost=charged)

    assert (await limiter.acquire(ask(budgets=(budget(limit=1000),)))).allowed is admits_again


async def test_a_budget_counter_starts_from_the_ledger_and_never_falls_below_it(limiter: Limiter) -> None:
    def spend(spent: int, cost: int = 0) -> Ask:
        return ask(budgets=(budget(limit=1000, spent=spent),), cost=cost)

    assert (await limiter.acquire(spend(500, cost=400))).allowed  # seeded at 500, now 900
    assert (await limiter.acquire(spend(200, cost=400))).allowed  # an older snapshot does not lower it: 1300
    assert "Used $0.0000013." in (await limiter.acquire(spend(0))).message
    assert "Used $0.000002." in (await limiter.acquire(spend(2000))).message  # the ledger knows of more spend


@pytest.mark.parametrize(
    ("period", "ends_in", "retry_after", "which"),
    [
        ("2026-11", 3600.0, 3600.0, "Budget of this organization for 2026-11: Limit $10.00, Used $10.50."),
        ("all", None, 0.0, "Budget of this organization: Limit $10.00, Used $10.50."),
    ],
)
async def test_a_budget_refusal_names_the_budget_and_when_it_renews(
    limiter: Limiter, clock: FakeClock, period: str, ends_in: float | None, retry_after: float, which: str
) -> None:
    ends_at = 0.0 if ends_in is None else clock.now + ends_in
    spent_up = budget(limit=10 * USD, spent=10 * USD + USD // 2, period=period, ends_at=ends_at)

    verdict = await limiter.acquire(ask(budgets=(spent_up,)))

    assert (verdict.refused, verdict.retry_after, verdict.ticket) == ("budget", pytest.approx(retry_after), None)
    assert verdict.message == (f"You exceeded your current quota, please check your plan and billing details. {which}")


async def test_a_budget_refusal_outranks_a_rate_limit(limiter: Limiter) -> None:
    ticket_of(await limiter.acquire(ask(key(rpm=1))))

    verdict = await limiter.acquire(ask(key(rpm=1), budgets=(budget(limit=10, spent=10),)))

    assert verdict.refused == "budget"


def _used_rpm() -> Ask:
    return ask(tenant(rpm=1))


def _used_tpm() -> Ask:
    return ask(tenant(tpm=150), tokens=100)


def _held_slot() -> Ask:
    return ask(tenant(concurrency=1))


@pytest.mark.parametrize(
    ("setup", "failing", "refused"),
    [
        (_used_rpm, tenant(rpm=1), "requests"),
        (_used_tpm, tenant(tpm=150), "tokens"),
        (None, tenant(tpm=50), "tokens"),
        (_held_slot, tenant(concurrency=1), "concurrency"),
        (None, tenant(rpm=5), None),  # the control: this one passes, so the key's limits are taken
    ],
)
async def test_a_refused_request_reserves_nothing_anywhere(
    limiter: Limiter, setup: Callable[[], Ask] | None, failing: Window, refused: str | None
) -> None:
    own = key(rpm=1, tpm=100, concurrency=1)
    own_budget = Budget("key:1", "this API key", "all", limit=100, spent=0, ttl=0)
    if setup is not None:
        ticket_of(await limiter.acquire(setup()))

    verdict = await limiter.acquire(ask(own, failing, budgets=(own_budget,), tokens=100, cost=100))
    again = await limiter.acquire(ask(own, budgets=(own_budget,), tokens=100, cost=100))

    assert verdict.refused == refused
    assert again.allowed is (refused is not None)


async def test_a_refused_budget_reserves_nothing_in_the_windows(limiter: Limiter) -> None:
    own = key(rpm=1, tpm=100, concurrency=1)

    verdict = await limiter.acquire(ask(own, budgets=(budget(limit=5, spent=5),), tokens=100))

    assert verdict.refused == "budget"
    assert (await limiter.acquire(ask(own, tokens=100))).allowed


async def test_headers_describe_the_window_with_the_least_left(limiter: Limiter) -> None:
    verdict = await limiter.acquire(ask(key(rpm=60, tpm=10_000), tenant(rpm=1000, tpm=2000), tokens=500))

    assert verdict.headers == {
        "x-ratelimit-limit-requests": "60",
        "x-ratelimit-remaining-requests": "59",
        "x-ratelimit-reset-requests": "1s",
        "x-ratelimit-limit-tokens": "2000",
        "x-ratelimit-remaining-tokens": "1500",
        "x-ratelimit-reset-tokens": "15s",
    }


def test_of_two_windows_with_as_few_left_the_headers_describe_the_one_that_takes_longer_to_refill() -> None:
    # An acquire's reply: admitted, the time in ms, then (wait, remaining, reset ms) per window for requests, then
    # for tokens. Both windows have 40 requests and 900 tokens left; the tenant's requests take longer to refill,
    # the key's tokens do.
    reply = [1, 1_790_000_000_000, 0, 40, 1_500, 0, 900, 30_000, 0, 40, 20_000, 0, 900, 2_000]

    verdict = verdict_from_reply(ask(key(rpm=60, tpm=1000), tenant(rpm=100, tpm=5000)), reply, local=False)

    assert verdict.headers == {
        "x-ratelimit-limit-requests": "100",
        "x-ratelimit-remaining-requests": "40",
        "x-ratelimit-reset-requests": "20s",
        "x-ratelimit-limit-tokens": "1000",
        "x-ratelimit-remaining-tokens": "900",
        "x-ratelimit-reset-tokens": "30s",
    }


async def test_headers_count_time_since_the_last_request(limiter: Limiter, clock: FakeClock) -> None:
    for _ in range(30):
        ticket_of(await limiter.acquire(ask(key(rpm=60))))
    clock.advance(10.25)

    verdict = await limiter.acquire(ask(key(rpm=60)))

    assert verdict.headers["x-ratelimit-remaining-requests"] == "39"
    assert verdict.headers["x-ratelimit-reset-requests"] == "20.75s"


@pytest.mark.parametrize(
    ("window", "units"),
    [(key(concurrency=3), set()), (key(rpm=5), {"requests"}), (key(tpm=5), {"tokens"})],
)
async def test_headers_are_left_out_for_limits_no_window_has(limiter: Limiter, window: Window, units: set[str]) -> None:
    verdict = await limiter.acquire(ask(window))

    assert {name.rsplit("-", 1)[1] for name in verdict.headers} == units
    assert len(verdict.headers) == 3 * len(units)


async def test_a_request_without_limits_passes_and_settles_as_a_no_op(limiter: Limiter) -> None:
    verdict = await limiter.acquire(ask(key(), tokens=10**9, cost=10**12))

    assert (verdict.allowed, verdict.headers) == (True, {})
    await limiter.settle(ticket_of(verdict), tokens=5, cost=5)


# --- values past what a counter holds ------------------------------------------------------------

HUGE = 2**64 - 1  # what a client can make a reservation, or an upstream a usage report, add up to


async def test_a_reservation_past_64_bits_is_clamped_rather_than_overflowing(limiter: Limiter) -> None:
    spend = (budget(limit=100 * USD),)

    ticket = ticket_of(await limiter.acquire(ask(budgets=spend, tokens=HUGE, cost=HUGE)))
    refused = await limiter.acquire(ask(budgets=spend, cost=1))
    await limiter.settle(ticket, tokens=0, cost=USD)
    after = await limiter.acquire(ask(budgets=spend, cost=1))

    assert (ticket.tokens, ticket.cost) == (RESERVATION_MAX, RESERVATION_MAX)
    assert ticket.local == isinstance(limiter, LocalLimiter)  # Redis did not fail over to the process's own
    assert refused.refused == "budget"
    assert ticket_of(after).local == ticket.local


async def test_a_settle_past_64_bits_leaves_a_bounded_debt(limiter: Limiter) -> None:
    ticket = ticket_of(await limiter.acquire(ask(key(tpm=1), tokens=1)))
    await limiter.settle(ticket, tokens=HUGE, cost=HUGE)

    verdict = await limiter.acquire(ask(key(tpm=1), tokens=1))
    elsewhere = ticket_of(await limiter.acquire(ask(tenant(rpm=5))))

    assert verdict.refused == "tokens"
    assert verdict.retry_after == pytest.approx(DEBT_MAX_MS / 1000)
    assert elsewhere.local == isinstance(limiter, LocalLimiter)
