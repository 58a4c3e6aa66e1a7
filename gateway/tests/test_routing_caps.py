"""Deployment caps in the routing loop: shared through the process's limiter, held per attempt, released once.

The loop runs with a stand-in for `relay.attempt` (the real one meets loopback
upstreams in tests/integration/test_deployment_caps.py), against a `LocalLimiter`
and a `RedisLimiter` on the test Redis alike, both on a fake clock. The limiter
records every reservation it grants and every settle it gets, so a test can
tell that each attempt's reservation was settled exactly once, whatever ended it.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import AsyncIterator, Awaitable
from typing import Any, cast

import orjson
import pytest

from billing.facade import BillingSnapshot
from billing.limits import Ask, Limiter, LocalLimiter, RedisLimiter, Ticket, Verdict, spares
from billing.metering import Meter
from billing.tests.test_limits import REDIS_URL, FakeClock, drop_keys, new_prefix
from billing.tests.test_limits_spares import redis_url as redis_url  # noqa: F401 - the fixture: a Redis of its own
from gateway import accounting, routing, routing_ensembles
from gateway.accounting import Call
from gateway.breakers import BreakerRules, LocalBreakers
from gateway.errors import InvalidRequest, LimitsUnavailable, NoDeployment, PorticoError, UpstreamError, UpstreamTimeout
from gateway.extensions import NONE
from gateway.recovery import Continuation, Resumed
from gateway.relay import Opened, Whole
from gateway.routing import Attempt, _run, _run_within
from gateway.routing_caps import CapFull, CapHold, cap_acquire
from gateway.routing_outcome import Trail
from gateway.snapshot import Snapshot
from gateway.tests.test_routing import deployment, model, new_call
from providers.facade import RouteInfo

USAGE = {"prompt_tokens": 300, "completion_tokens": 400, "total_tokens": 700}
UNREACHABLE = "redis://127.0.0.1:1/0"


class Recording:
    """A limiter that notes what it granted and what it was told to settle."""

    def __init__(self, inner: Limiter) -> None:
        self.inner = inner
        self.granted: dict[str, Ticket] = {}
        self.settled: list[tuple[str, int]] = []

    async def acquire(self, ask: Ask) -> Verdict:
        verdict = await self.inner.acquire(ask)
        if verdict.ticket is not None:
            self.granted[ask.request_id] = verdict.ticket
        return verdict

    def settle_soon(self, ticket: Ticket, *, tokens: int, cost: int) -> Awaitable[None]:
        return self.settle(ticket, tokens=tokens, cost=cost)

    async def settle(self, ticket: Ticket, *, tokens: int, cost: int) -> None:
        self.settled.append((ticket.request_id, tokens))
        await self.inner.settle(ticket, tokens=tokens, cost=cost)

    async def aclose(self) -> None:
        await self.inner.aclose()

    async def unsettled(self) -> list[str]:
        """The reservations not settled (once the settles sent off the response path have run); none twice."""
        await accounting.accounts.drain()
        counts = Counter(request_id for request_id, _ in self.settled)
        assert all(count == 1 for count in counts.values()), counts
        assert set(counts) <= set(self.granted)
        return sorted(set(self.granted) - set(counts))


class Fleet:
    """Stands in for relay.attempt: per deployment, an error to raise or a gate to wait at; else an answer."""

    def __init__(self) -> None:
        self.tried: list[int] = []
        self.failures: dict[int, PorticoError] = {}
        self.gates: dict[int, asyncio.Event] = {}
        self.waiting: dict[int, asyncio.Event] = {}
        self.streams: set[int] = set()  # deployments whose answer is a stream, opened

    def gate(self, route_id: int) -> asyncio.Event:
        self.waiting[route_id] = asyncio.Event()
        gate = self.gates[route_id] = asyncio.Event()
        return gate

    async def __call__(self, call: Call, route: RouteInfo, **_: object) -> Whole | Opened:
        self.tried.append(route.id)
        if route.id in self.gates:
            self.waiting[route.id].set()
            await self.gates[route.id].wait()
        if route.id in self.failures:
            raise self.failures[route.id]
        if route.id in self.streams:
            return opened(Translator())
        return Whole(orjson.dumps({"usage": USAGE}), "application/json")


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


def meter_with(limiter: Limiter, monkeypatch: pytest.MonkeyPatch) -> Recording:
    meter = Meter()
    meter.limiter = recording = Recording(limiter)
    monkeypatch.setattr(accounting, "accounts", meter)
    return recording


@pytest.fixture(params=["local", "redis"])
async def limiter(
    request: pytest.FixtureRequest, clock: FakeClock, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[Recording]:
    """The process's limiter, as Portico picks it: in this process, or in Redis."""
    prefix = new_prefix()
    inner: Limiter = (
        RedisLimiter(REDIS_URL, prefix=prefix, clock=clock) if request.param == "redis" else LocalLimiter(clock=clock)
    )
    recording = meter_with(inner, monkeypatch)
    yield recording
    await accounting.accounts.drain()
    await inner.aclose()
    await drop_keys(prefix)


@pytest.fixture
def breakers(monkeypatch: pytest.MonkeyPatch) -> LocalBreakers:
    # One failure opens a breaker: a test sees at once whether an attempt's end was reported as a failure.
    local = LocalBreakers(rules=BreakerRules(consecutive_failures=1))
    monkeypatch.setattr(routing, "_breakers", lambda: local)
    return local


@pytest.fixture
def fleet(monkeypatch: pytest.MonkeyPatch) -> Fleet:
    fleet = Fleet()
    monkeypatch.setattr(routing, "attempt", fleet)
    return fleet


async def serve(first: Any, **options: Any) -> Call:
    """One call through the loop; the call, with the deployment that answered as its route."""
    call = new_call(first)
    call.body.update(options)
    await _run(call, Snapshot(models={"gpt-x": first}), NONE, Trail())
    return call


async def wait(event: asyncio.Event) -> None:
    async with asyncio.timeout(5):
        await event.wait()


# --- shared counts -----------------------------------------------------------------------------------------------


async def test_a_deployment_at_its_requests_per_minute_passes_the_rest_to_the_next(
    limiter: Recording, fleet: Fleet, breakers: LocalBreakers, clock: FakeClock
) -> None:
    first = model(deployment(1, "a", max_requests_per_minute=2), deployment(2, "b"))

    for _ in range(4):
        await serve(first)
    clock.advance(30)  # a bucket of 2 per minute has room for one more every 30 s
    await serve(first)

    assert fleet.tried == [1, 1, 2, 2, 1]
    assert await limiter.unsettled() == []


async def test_two_processes_share_one_deployments_cap_through_redis(
    fleet: Fleet, breakers: LocalBreakers, clock: FakeClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    prefix = new_prefix()
    processes = [RedisLimiter(REDIS_URL, prefix=prefix, clock=clock) for _ in range(2)]
    first = model(deployment(1, "a", max_requests_per_minute=3), deployment(2, "b"))
    try:
        for turn in range(8):
            meter_with(processes[turn % 2], monkeypatch)
            await serve(first)
            await accounting.accounts.drain()
    finally:
        for process in processes:
            await process.aclose()
        await drop_keys(prefix)

    assert Counter(fleet.tried) == {1: 3, 2: 5}


async def test_a_deployments_attempts_share_one_packed_acquire_until_its_caps_change(
    fleet: Fleet, breakers: LocalBreakers, clock: FakeClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    prefix = new_prefix()
    process = RedisLimiter(REDIS_URL, prefix=prefix, clock=clock)
    meter_with(process, monkeypatch)
    try:
        for _ in range(3):
            await serve(model(deployment(1, "a", max_requests_per_minute=2), deployment(2, "b")))
        assert fleet.tried == [1, 1, 2]
        assert len(process._acquire_shapes) == 1  # one deployment, one window tuple, one shape

        # A snapshot that raises the cap: a new window, and the new limit counts at once. At 3 a minute there is
        # room again after 20 s; at the old 2 a minute only after 30 s.
        clock.advance(20)
        await serve(model(deployment(1, "a", max_requests_per_minute=3), deployment(2, "b")))
        assert fleet.tried == [1, 1, 2, 1]
        assert len(process._acquire_shapes) == 2
        await accounting.accounts.drain()
    finally:
        await process.aclose()
        await drop_keys(prefix)


async def test_a_request_in_flight_holds_its_slot_until_its_attempt_ends(
    limiter: Recording, fleet: Fleet, breakers: LocalBreakers
) -> None:
    first = model(deployment(1, "a", max_in_flight=1), deployment(2, "b"))
    gate = fleet.gate(1)

    slow = asyncio.create_task(serve(first))
    await wait(fleet.waiting[1])
    async with asyncio.timeout(5):  # a deployment that ignored its cap would hold this call at the gate too
        meanwhile = await serve(first)
    gate.set()
    await slow
    del fleet.gates[1]
    await accounting.accounts.drain()
    after = await serve(first)

    assert (meanwhile.route.id, (await slow).route.id, after.route.id) == (2, 1, 1)
    assert await limiter.unsettled() == []


async def test_tokens_per_minute_are_reserved_as_asked_and_settled_as_the_upstream_counted(
    limiter: Recording, fleet: Fleet, breakers: LocalBreakers
) -> None:
    first = model(deployment(1, "a", max_tokens_per_minute=10_000))

    call = await serve(first, max_tokens=50)

    [(request_id, ticket)] = limiter.granted.items()
    assert ticket.tokens == (call.prompt_estimate or 0) + 50
    assert await limiter.unsettled() == []
    assert limiter.settled == [(request_id, USAGE["total_tokens"])]


async def test_an_uncapped_deployment_never_asks_the_limiter(
    fleet: Fleet, breakers: LocalBreakers, monkeypatch: pytest.MonkeyPatch
) -> None:
    class Untouchable(LocalLimiter):
        async def acquire(self, ask: Ask) -> Verdict:
            raise AssertionError("an uncapped deployment asked the limiter")

    meter_with(Untouchable(), monkeypatch)

    call = await serve(model(deployment(1, "a"), deployment(2, "b")))

    assert call.route.id == 1


# --- every exit releases ----------------------------------------------------------------------------------------


async def run_until_waiting(fleet: Fleet, route_id: int, run: Awaitable[Any]) -> asyncio.Task[Any]:
    task = asyncio.ensure_future(run)
    await wait(fleet.waiting[route_id])
    return task


@pytest.mark.parametrize(
    "ending", ["answered", "failed over", "rested after a 429", "a client error", "cancelled", "deadline passed"]
)
async def test_every_way_an_attempt_ends_settles_its_reservation_once(
    limiter: Recording, fleet: Fleet, breakers: LocalBreakers, ending: str
) -> None:
    first = model(deployment(1, "a", max_in_flight=1), deployment(2, "b", max_in_flight=1))
    call = new_call(first)
    snapshot = Snapshot(models={"gpt-x": first})
    if ending == "failed over":
        fleet.failures[1] = UpstreamError("down", status=502)
    elif ending == "rested after a 429":
        fleet.failures[1] = rested = UpstreamError("slow down", status=429)
        rested.cool_down = 30
    elif ending == "a client error":
        fleet.failures[1] = InvalidRequest("bad")

    if ending == "cancelled":
        fleet.gate(1)
        task = await run_until_waiting(fleet, 1, _run(call, snapshot, NONE, Trail()))
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
    elif ending == "deadline passed":
        fleet.gate(1)
        with pytest.raises(UpstreamTimeout):
            await _run_within(call, snapshot, NONE, Trail(), 0.05)
    elif ending == "a client error":
        with pytest.raises(InvalidRequest):
            await _run(call, snapshot, NONE, Trail())
    else:
        await _run(call, snapshot, NONE, Trail())

    assert len(limiter.granted) == (2 if ending in ("failed over", "rested after a 429") else 1)
    assert await limiter.unsettled() == []
    fleet.failures.clear()
    fleet.gates.clear()
    breakers.reset(1)
    assert (await serve(first)).route.id == 1  # its slot is free again


async def test_with_every_deployment_at_its_caps_the_client_gets_a_503_saying_when_to_retry(
    limiter: Recording, fleet: Fleet, breakers: LocalBreakers
) -> None:
    first = model(deployment(1, "a", max_requests_per_minute=1), deployment(2, "b", max_requests_per_minute=2))
    for _ in range(3):
        await serve(first)

    with pytest.raises(NoDeployment) as caught:
        await serve(first)

    error = caught.value
    assert error.status == 503
    assert error.body()["error"]["code"] == "no_deployment_available"
    assert "at their capacity" in error.message
    assert error.headers["retry-after"] == "30"  # deployment 2 has room again first
    assert fleet.tried == [1, 2, 2]


# --- the limiter away -------------------------------------------------------------------------------------------


async def test_with_redis_away_and_limits_failing_closed_a_capped_deployment_is_skipped(
    fleet: Fleet, breakers: LocalBreakers, clock: FakeClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    down = RedisLimiter(UNREACHABLE, prefix="unused", clock=clock, on_redis_error="closed")
    meter_with(down, monkeypatch)
    capped = deployment(1, "a", max_in_flight=5)
    try:
        served = await serve(model(capped, deployment(2, "b")))
        with pytest.raises(LimitsUnavailable) as caught:
            await serve(model(capped))
    finally:
        await down.aclose()

    assert served.route.id == 2
    assert (caught.value.status, caught.value.code) == (503, "limiter_unavailable")
    assert fleet.tried == [2]


async def test_with_redis_away_and_limits_failing_open_each_process_holds_the_cap_alone(
    fleet: Fleet, breakers: LocalBreakers, clock: FakeClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    down = RedisLimiter(UNREACHABLE, prefix="unused", clock=clock, on_redis_error="open")
    recording = meter_with(down, monkeypatch)
    first = model(deployment(1, "a", max_requests_per_minute=1), deployment(2, "b"))
    try:
        for _ in range(2):
            await serve(first)
        assert await recording.unsettled() == []
    finally:
        await down.aclose()

    assert fleet.tried == [1, 2]


# --- streams and ensembles ---------------------------------------------------------------------------------------


class Translator:
    done = failed = False
    usage: dict[str, int] | None = None

    def feed(self, event: bytes) -> list[bytes]:
        return []


class Response:
    closed = False

    async def aclose(self) -> None:
        self.closed = True


def opened(translator: Any) -> Opened:
    """A stream open up to its first event, as far as the routing loop looks at one."""
    return Opened(cast(Any, Response()), cast(Any, None), translator, cast(Any, None), b"")


async def test_a_streams_attempt_is_settled_once_with_the_tokens_its_own_upstream_reported(
    limiter: Recording, breakers: LocalBreakers
) -> None:
    route = deployment(1, "a", max_tokens_per_minute=10_000, max_in_flight=1)
    call = new_call(model(route))
    hold = await cap_acquire(route=route, call=call)
    assert isinstance(hold, CapHold)
    inner = Translator()
    # A continuation's usage adds the broken attempts' tokens; the cap is charged this deployment's own.
    carried = Continuation({}, {}, {"prompt_tokens": 100, "completion_tokens": 50})
    tried = Attempt(route, breakers, hold)
    hold.answered(opened(Resumed(inner, carried)))

    inner.usage = {"prompt_tokens": 20, "completion_tokens": 30, "total_tokens": 50}
    tried.end(True)
    tried.drop()  # the stream's release after its end: nothing more to settle

    assert await limiter.unsettled() == []
    assert [tokens for _, tokens in limiter.settled] == [50]


async def test_an_ensemble_call_cancelled_or_closed_releases_its_deployments_caps(
    limiter: Recording, fleet: Fleet, breakers: LocalBreakers
) -> None:
    slow, other = deployment(1, "a", max_in_flight=1), deployment(2, "b", max_in_flight=1)
    call = new_call(model(slow, other))
    session = routing_ensembles.EnsembleSession(call, BillingSnapshot())
    ensemble = routing_ensembles._Ensemble(session, breakers)
    fleet.gate(1)
    fleet.streams.add(2)

    hedged = asyncio.ensure_future(ensemble.whole(slow))
    await wait(fleet.waiting[1])
    hedged.cancel()  # the other deployment answered first
    with pytest.raises(asyncio.CancelledError):
        await hedged
    leg = await ensemble.stream(other)
    assert await limiter.unsettled() == [next(reversed(limiter.granted))]  # the open stream holds its slot
    await leg.aclose()  # a hedged stream that lost

    assert len(limiter.granted) == 2
    assert await limiter.unsettled() == []


async def test_a_call_cancelled_while_its_deployment_slot_is_reserved_leaves_the_slot_free(
    clock: FakeClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The client leaves while the acquire of a capped deployment's slot is on the way to Redis: whatever the
    # acquire reserved there is given back as its reply comes, so the next call finds the slot free.
    route = deployment(1, "a", max_in_flight=1, max_requests_per_minute=2)
    for _attempt in range(5):
        prefix = new_prefix()
        limiter = RedisLimiter(REDIS_URL, prefix=prefix, clock=clock)
        meter_with(limiter, monkeypatch)
        try:
            await limiter._client.call("PING")  # open: the acquire is written at once
            leaving = asyncio.create_task(cap_acquire(route=route, call=new_call(model(route))))
            await asyncio.sleep(0)  # written; its reply is on the way
            leaving.cancel()
            with pytest.raises(asyncio.CancelledError):
                await leaving
            for _ in range(100):
                held = await cap_acquire(route=route, call=new_call(model(route)))
                if isinstance(held, CapHold):
                    break
                await asyncio.sleep(0.01)
            assert isinstance(held, CapHold), "the slot of the call that left is still held"
            held.release()
            await accounting.accounts.drain()
            # The call that left reached Redis and counts against the rpm (2): a third finds none left. Unless a
            # test alongside flushed Redis's scripts while it was being sent: nothing was reserved, and it is
            # tried again.
            third = await cap_acquire(route=route, call=new_call(model(route)))
            reached = isinstance(third, CapFull) and not third.in_flight
        finally:
            await accounting.accounts.drain()
            await limiter.aclose()
            await drop_keys(prefix)
        if reached:
            return
    pytest.fail("the acquire of the call that left never reached Redis")


async def test_an_attempt_that_reports_no_usage_settles_what_it_asked_even_from_a_spare(
    clock: FakeClock, monkeypatch: pytest.MonkeyPatch, redis_url: str
) -> None:
    monkeypatch.setattr(spares, "DENSE", 60.0)  # every attempt counts as steady, however slow the machine
    prefix = new_prefix()
    recording = meter_with(RedisLimiter(redis_url, prefix=prefix, clock=clock), monkeypatch)
    route = deployment(1, "a", max_tokens_per_minute=100_000)
    call = new_call(model(route))
    call.body["max_tokens"] = 50
    try:
        holds = []
        for _ in range(3):
            hold = await cap_acquire(route=route, call=call)
            assert isinstance(hold, CapHold)
            holds.append(hold.ticket)
            hold.release()  # ended before any answer: nothing reported
            await accounting.accounts.drain()
            await asyncio.sleep(0.01)  # the spare asked for after the second attempt comes in
    finally:
        await recording.aclose()  # the keys go with this module's own Redis

    asked = (call.prompt_estimate or 0) + 50
    spare = 1 << (asked - 1).bit_length()  # a spare's tokens: the second attempt's, rounded up to a power of two
    assert asked < spare
    assert [ticket.tokens for ticket in holds if ticket] == [asked, asked, spare]
    assert [tokens for _, tokens in recording.settled] == [asked] * 3
