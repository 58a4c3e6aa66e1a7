"""What every breaker must do: each test runs against `RedisBreakers` (on the real Redis) and `LocalBreakers`.

Time is a fake clock that both read (the Redis scripts take it as an argument),
so cooldowns and windows pass by `clock.advance`, never by sleeping. Outcomes
reach Redis when `told()` flushes them, as the background task would.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import replace

import pytest
from django.conf import settings
from redis.asyncio import Redis

from gateway.breakers import (
    CLOSED,
    HALF_OPEN,
    OPEN,
    BreakerRules,
    LocalBreakers,
    RedisBreakers,
    Transition,
    TransitionLog,
)

REDIS_URL = settings.REDIS_URL or "redis://127.0.0.1:6379/0"
ROUTE = 7
NAME = "acme/gpt-4o"
RULES = BreakerRules(
    window=30,
    error_ratio=0.5,
    min_requests=10,
    consecutive_failures=3,
    cooldown=30,
    half_open_probes=2,
    latency_multiple=4,
    latency_floor=0,
)

Breakers = LocalBreakers | RedisBreakers


class FakeClock:
    def __init__(self) -> None:
        self.now = 1_790_000_000.25

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


class History(TransitionLog):
    """The history, kept in a list instead of the database."""

    def __init__(self) -> None:
        self.written: list[Transition] = []
        super().__init__(insert=lambda transitions, process: self.written.extend(transitions))

    def moves(self) -> list[tuple[str, str]]:
        self.flush()
        return [(change.from_state, change.to_state) for change in self.written]


def new_prefix() -> str:
    return f"{settings.PORTICO_REDIS_PREFIX}-breakers-{uuid.uuid4().hex}"


async def drop_keys(prefix: str) -> None:
    client = Redis.from_url(REDIS_URL)
    names = [name async for name in client.scan_iter(match=f"{prefix}:*")]
    if names:
        await client.delete(*names)
    await client.aclose()


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def history() -> History:
    return History()


@pytest.fixture(params=["redis", "local"])
async def make(
    request: pytest.FixtureRequest, clock: FakeClock, history: History
) -> AsyncIterator[Callable[..., Breakers]]:
    prefix = new_prefix()
    made: list[Breakers] = []

    def make(**rules: float) -> Breakers:
        chosen = replace(RULES, **rules)
        breakers: Breakers
        if request.param == "redis":
            breakers = RedisBreakers(REDIS_URL, prefix=prefix, rules=chosen, clock=clock, history=history)
        else:
            breakers = LocalBreakers(rules=chosen, clock=clock, history=history)
        made.append(breakers)
        return breakers

    yield make
    for breakers in made:
        await breakers.stop()
    await drop_keys(prefix)


async def told(breakers: Breakers, *outcomes: bool, reason: str = "502 from upstream") -> None:
    for ok in outcomes:
        breakers.record(ROUTE, NAME, ok=ok, reason="" if ok else reason)
    await breakers.flush()


async def opened(breakers: Breakers) -> None:
    await told(breakers, False, False, False)
    assert breakers.is_open(ROUTE)


async def probes(breakers: Breakers, count: int) -> list[bool]:
    return [await breakers.acquire_probe(ROUTE) for _ in range(count)]


async def test_it_opens_after_the_configured_failures_in_a_row(make: Callable[..., Breakers]) -> None:
    breakers = make()
    await told(breakers, False, False)
    assert not breakers.is_open(ROUTE)
    await told(breakers, False)
    assert breakers.is_open(ROUTE)
    assert not breakers.allow(ROUTE)
    state = breakers.state(ROUTE)
    assert state.state == OPEN
    assert state.reason == "3 failures in a row: 502 from upstream"


async def test_a_success_between_failures_starts_the_count_again(make: Callable[..., Breakers]) -> None:
    breakers = make()
    await told(breakers, False, False, True, False, False)
    assert not breakers.is_open(ROUTE)
    assert breakers.allow(ROUTE)
    assert breakers.state(ROUTE).state == CLOSED


async def test_it_opens_on_the_error_ratio_once_the_window_holds_enough_requests(
    make: Callable[..., Breakers],
) -> None:
    breakers = make(consecutive_failures=0)
    await told(breakers, *[True, False] * 4)
    assert not breakers.is_open(ROUTE), "8 requests are fewer than the minimum of 10"
    await told(breakers, True, False)
    assert breakers.is_open(ROUTE)
    assert breakers.state(ROUTE).reason == "5 of 10 requests failed within 30 s: 502 from upstream"


async def test_it_stays_closed_under_the_error_ratio(make: Callable[..., Breakers]) -> None:
    breakers = make(consecutive_failures=0)
    await told(breakers, *[True, True, True, False] * 10)
    assert not breakers.is_open(ROUTE)


async def test_outcomes_that_left_the_window_no_longer_count(make: Callable[..., Breakers], clock: FakeClock) -> None:
    breakers = make(consecutive_failures=0, window=10, min_requests=4)
    await told(breakers, False, False, False)
    clock.advance(11)
    await told(breakers, True, True, True, False)
    assert not breakers.is_open(ROUTE), "1 failure in 4 requests within the window"
    await told(breakers, False, False)
    assert breakers.is_open(ROUTE), "3 failures in 6 requests within the window"


async def test_it_stays_open_for_the_cooldown_then_lets_only_the_configured_probes_through(
    make: Callable[..., Breakers], clock: FakeClock
) -> None:
    breakers = make()
    await opened(breakers)
    clock.advance(29.9)
    assert breakers.is_open(ROUTE)
    assert await probes(breakers, 1) == [False]
    clock.advance(0.2)
    assert not breakers.is_open(ROUTE), "past the cooldown: the router may ask for a probe"
    assert not breakers.allow(ROUTE), "only a probe may go"
    assert await probes(breakers, 3) == [True, True, False]
    assert breakers.state(ROUTE).state == HALF_OPEN


async def test_a_probe_that_succeeds_closes_it(make: Callable[..., Breakers], clock: FakeClock) -> None:
    breakers = make()
    await opened(breakers)
    clock.advance(30)
    assert await probes(breakers, 1) == [True]
    await told(breakers, True)
    assert breakers.state(ROUTE).state == CLOSED
    assert breakers.state(ROUTE).reason == "a probe succeeded"
    assert await probes(breakers, 5) == [True] * 5
    assert breakers.allow(ROUTE)


async def test_a_probe_that_fails_opens_it_for_another_cooldown(
    make: Callable[..., Breakers], clock: FakeClock
) -> None:
    breakers = make()
    await opened(breakers)
    clock.advance(30)
    assert await probes(breakers, 1) == [True]
    await told(breakers, False, reason="timeout")
    assert breakers.is_open(ROUTE)
    assert breakers.state(ROUTE).reason == "a probe failed: timeout"
    clock.advance(29)
    assert breakers.is_open(ROUTE)
    clock.advance(1)
    assert await probes(breakers, 1) == [True]


async def test_probes_that_never_answer_are_replaced_after_a_cooldown(
    make: Callable[..., Breakers], clock: FakeClock
) -> None:
    breakers = make()
    await opened(breakers)
    clock.advance(30)
    assert await probes(breakers, 3) == [True, True, False]
    clock.advance(10)
    assert await probes(breakers, 1) == [False]
    clock.advance(20)
    assert await probes(breakers, 3) == [True, True, False]


async def test_outcomes_recorded_while_open_are_ignored(make: Callable[..., Breakers], clock: FakeClock) -> None:
    breakers = make()
    await opened(breakers)
    await told(breakers, True, True)
    assert breakers.is_open(ROUTE), "answers to requests sent before it opened"


async def test_a_cool_down_opens_it_for_that_long_and_never_cuts_a_longer_one_short(
    make: Callable[..., Breakers], clock: FakeClock
) -> None:
    breakers = make()
    breakers.cool_down(ROUTE, NAME, 60, "429 with Retry-After: 60")
    assert breakers.is_open(ROUTE), "at once in this process, before any flush"
    await breakers.flush()
    breakers.cool_down(ROUTE, NAME, 5, "x-ratelimit-remaining-requests: 0")
    await breakers.flush()
    clock.advance(59)
    assert breakers.is_open(ROUTE)
    assert breakers.state(ROUTE).reason == "429 with Retry-After: 60"
    clock.advance(1)
    assert not breakers.is_open(ROUTE)
    assert await probes(breakers, 1) == [True]


async def test_a_reset_closes_it_and_is_written_to_the_history_at_once(
    make: Callable[..., Breakers], clock: FakeClock, history: History
) -> None:
    breakers = make()
    await opened(breakers)
    history.flush()
    breakers.reset(ROUTE)
    assert not breakers.is_open(ROUTE)
    assert breakers.allow(ROUTE)
    assert breakers.state(ROUTE).state == CLOSED
    assert history.written[-1].reason == "reset by an operator"
    assert history.moves() == [(CLOSED, OPEN), (OPEN, CLOSED)]


async def test_the_state_says_since_when_and_keeps_the_last_errors_newest_first(
    make: Callable[..., Breakers], clock: FakeClock
) -> None:
    breakers = make(consecutive_failures=0, error_ratio=1.0, min_requests=100)
    for number in range(12):
        breakers.record(ROUTE, NAME, ok=False, reason=f"error {number}")
        await breakers.flush()
        clock.advance(1)
    state = breakers.state(ROUTE)
    assert state.state == CLOSED
    assert state.since is None
    assert [error.reason for error in state.last_errors] == [f"error {number}" for number in range(11, 1, -1)]
    assert state.last_errors[0].at.timestamp() == pytest.approx(clock.now - 1)
    breakers.cool_down(ROUTE, NAME, 30, "429 with Retry-After: 30")
    await breakers.flush()
    since = breakers.state(ROUTE).since
    assert since is not None
    assert since.timestamp() == pytest.approx(clock.now)


async def test_every_transition_is_kept_with_the_deployment_name(
    make: Callable[..., Breakers], clock: FakeClock, history: History
) -> None:
    breakers = make()
    await opened(breakers)
    clock.advance(30)
    await probes(breakers, 1)
    await told(breakers, True)
    assert history.moves() == [(CLOSED, OPEN), (OPEN, HALF_OPEN), (HALF_OPEN, CLOSED)]
    assert {change.route_name for change in history.written} == {NAME}
    assert {change.route_id for change in history.written} == {ROUTE}


def latencies(breakers: Breakers, seconds: Sequence[float], *, streamed: bool = False) -> None:
    for value in seconds:
        if streamed:
            breakers.record(ROUTE, NAME, ok=True, latency=value * 10, ttfb=value)
        else:
            breakers.record(ROUTE, NAME, ok=True, latency=value)


@pytest.mark.parametrize("streamed", [False, True], ids=["latency", "time to first token"])
async def test_it_opens_when_the_recent_median_passes_the_multiple_of_its_baseline(
    make: Callable[..., Breakers], streamed: bool
) -> None:
    breakers = make()
    latencies(breakers, [0.1, 0.2] * 40, streamed=streamed)
    await breakers.flush()
    assert not breakers.is_open(ROUTE)
    latencies(breakers, [1.0] * 20, streamed=streamed)
    await breakers.flush()
    assert breakers.is_open(ROUTE)
    assert breakers.state(ROUTE).reason.startswith("degraded: median")


@pytest.mark.parametrize(("floor", "opens"), [(0.25, False), (0, True)], ids=["floor", "no floor"])
async def test_a_fast_deployment_slowed_by_the_gateways_own_queueing_stays_closed_under_the_floor(
    make: Callable[..., Breakers], floor: float, opens: bool
) -> None:
    # A baseline of a millisecond, then 8 ms under load: eight baselines, but nothing a client would notice.
    breakers = make(latency_floor=floor)
    latencies(breakers, [0.001] * 60 + [0.008] * 40)
    await breakers.flush()
    assert breakers.is_open(ROUTE) is opens


async def test_it_stays_closed_while_latency_varies_within_the_multiple(make: Callable[..., Breakers]) -> None:
    breakers = make()
    latencies(breakers, [0.05, 0.3, 0.1, 0.25, 0.4] * 60)
    await breakers.flush()
    assert not breakers.is_open(ROUTE)


async def test_a_latency_multiple_of_zero_turns_the_latency_rule_off(make: Callable[..., Breakers]) -> None:
    breakers = make(latency_multiple=0)
    latencies(breakers, [0.1] * 60 + [5.0] * 40)
    await breakers.flush()
    assert not breakers.is_open(ROUTE)


async def test_deployments_have_breakers_of_their_own(make: Callable[..., Breakers]) -> None:
    breakers = make()
    await opened(breakers)
    assert not breakers.is_open(ROUTE + 1)
    assert await breakers.acquire_probe(ROUTE + 1)
