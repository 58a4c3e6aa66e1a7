"""Waiting for a model's deployments, all at their caps: through gateway.routing's `serve`, without servers.

The upstream is a stand-in for `relay.attempt` (gateway/tests/test_routing_caps.py's
`Fleet`), whose gate holds a call in flight as long as a test wants; the caps
are counted by the process's limiter, in this process or in Redis, and the
ledger is a spool file in a temporary directory. The model has one deployment
that takes one call at a time. (Two real servers sharing one such deployment:
tests/integration/test_queue_deployments.py.)
"""

from __future__ import annotations

import asyncio
import dataclasses
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import orjson
import pytest
from django.http import HttpResponse
from django.test import override_settings

from billing.limits import Ask, LocalLimiter, RedisLimiter, Window
from billing.metering import Meter
from billing.tests.test_limits import REDIS_URL, drop_keys, new_prefix
from gateway import accounting, routing
from gateway.breakers import BreakerRules, LocalBreakers
from gateway.errors import NoDeployment, RateLimited
from gateway.extensions import NONE
from gateway.queueing import admission
from gateway.queueing.admission import Requeue
from gateway.queueing.deferral import Deferred
from gateway.queueing.lines import POLL, lines
from gateway.queueing.wish import JobRun, QueueWish
from gateway.routing_caps import CapFull, CapHold, CapWait, cap_acquire
from gateway.snapshot import Snapshot
from gateway.tests.test_accounting import GRANT
from gateway.tests.test_routing import deployment, model, new_call
from gateway.tests.test_routing_caps import Fleet
from providers.facade import ModelInfo
from tenants.facade import QueuePolicy

WAITS = dataclasses.replace(GRANT, queue=QueuePolicy(mode="wait", max_wait=5))
BOTH = dataclasses.replace(GRANT, queue=QueuePolicy(mode="both", max_wait=5))


@pytest.fixture
async def prefix() -> AsyncIterator[str]:
    """The limiter's keys in Redis: this test's own."""
    made = new_prefix()
    yield made
    await drop_keys(made)


@pytest.fixture(params=["local", "redis"])
async def limiter(request: pytest.FixtureRequest, prefix: str) -> AsyncIterator[LocalLimiter | RedisLimiter]:
    made = LocalLimiter() if request.param == "local" else RedisLimiter(REDIS_URL, prefix=prefix)
    yield made
    await made.aclose()


@pytest.fixture
def ledger_dir(tmp_path: Path) -> Path:
    return tmp_path / "ledger"


@pytest.fixture
def meter(limiter: LocalLimiter | RedisLimiter, ledger_dir: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Meter]:
    fresh = Meter()
    fresh.limiter = limiter
    monkeypatch.setattr(accounting, "accounts", fresh)
    with override_settings(PORTICO_LEDGER_DIR=str(ledger_dir)):
        yield fresh


@pytest.fixture(autouse=True)
async def shared_lines() -> AsyncIterator[None]:
    yield
    await lines.aclose()


@pytest.fixture
def fleet(monkeypatch: pytest.MonkeyPatch) -> Fleet:
    stand_in = Fleet()
    monkeypatch.setattr(routing, "attempt", stand_in)
    return stand_in


@pytest.fixture(autouse=True)
def breakers(monkeypatch: pytest.MonkeyPatch) -> LocalBreakers:
    local = LocalBreakers(rules=BreakerRules(consecutive_failures=1))
    monkeypatch.setattr(routing, "_breakers", lambda: local)
    return local


@pytest.fixture
def narrow() -> ModelInfo:
    """A model of its own (its line too) with one deployment taking one call at a time."""
    return model(deployment(1, "a", public_id=f"narrow-{uuid.uuid4().hex[:8]}", max_in_flight=1))


def serve(first: ModelInfo, grant: Any = WAITS, *, name: str = "req_1", wish: QueueWish | None = None) -> Any:
    built = new_call(first)
    built.request_id = name
    built.grant = grant
    built.queue = wish
    return routing.serve(built, Snapshot(models={first.public_id: first}), NONE)


def ledger(directory: Path) -> dict[str, dict[str, Any]]:
    if not directory.exists():
        return {}
    lines_ = [orjson.loads(line) for path in sorted(directory.iterdir()) for line in path.read_bytes().splitlines()]
    return {line["request_id"]: line for line in lines_}


async def holding(fleet: Fleet, first: ModelInfo) -> tuple[asyncio.Task[Any], asyncio.Event]:
    """A call in flight on the one deployment, held at the fleet's gate until the event is set."""
    gate = fleet.gate(1)
    task = asyncio.ensure_future(serve(first, GRANT, name="req_holder"))
    async with asyncio.timeout(5):
        await fleet.waiting[1].wait()
    return task, gate


async def test_a_call_that_may_wait_is_served_as_soon_as_the_deployment_frees_a_slot(
    meter: Meter, fleet: Fleet, narrow: ModelInfo, ledger_dir: Path
) -> None:
    holder, gate = await holding(fleet, narrow)
    waiting = asyncio.ensure_future(serve(narrow, name="req_waits"))
    await asyncio.sleep(0.2)
    assert not waiting.done()

    gate.set()
    await holder
    freed_at = time.monotonic()
    answer: HttpResponse = await asyncio.wait_for(waiting, 2)

    assert time.monotonic() - freed_at < 0.2  # woken by the slot freed here, not by a timer
    assert answer.status_code == 200
    waited = int(answer.headers["x-portico-queue-time"])
    assert 150 <= waited < 1000
    assert fleet.tried == [1, 1]
    await meter.drain()
    rows = ledger(ledger_dir)
    assert (rows["req_waits"]["status"], rows["req_waits"]["queue_ms"]) == (200, waited)
    assert rows["req_holder"]["queue_ms"] is None


async def test_a_call_without_a_queue_policy_gets_the_503_at_once(
    meter: Meter, fleet: Fleet, narrow: ModelInfo
) -> None:
    holder, gate = await holding(fleet, narrow)

    started = time.monotonic()
    with pytest.raises(NoDeployment) as refused:
        await serve(narrow, GRANT, name="req_plain")

    assert time.monotonic() - started < 0.1
    assert (refused.value.status, refused.value.headers["retry-after"]) == (503, "1")
    gate.set()
    await holder


async def test_a_call_whose_wait_ends_gets_the_very_503_it_would_have_had_and_a_row_with_its_wait(
    meter: Meter, fleet: Fleet, narrow: ModelInfo, ledger_dir: Path
) -> None:
    holder, gate = await holding(fleet, narrow)
    with pytest.raises(NoDeployment) as at_once:
        await serve(narrow, GRANT, name="req_plain")

    started = time.monotonic()
    with pytest.raises(NoDeployment) as after_waiting:
        await serve(narrow, name="req_short", wish=QueueWish(timeout=0.3))
    took = time.monotonic() - started
    gate.set()
    await holder

    assert 0.3 <= took < 0.8
    assert after_waiting.value.body() == at_once.value.body()
    assert after_waiting.value.headers["retry-after"] == at_once.value.headers["retry-after"]
    await meter.drain()
    row = ledger(ledger_dir)["req_short"]
    assert (row["status"], row["error_type"], row["attempts"]) == (503, "no_deployment_available", 0)
    assert 250 <= row["queue_ms"] < 800


async def test_a_slot_freed_by_another_process_is_taken_by_the_waiter_here_within_a_look(
    meter: Meter, fleet: Fleet, narrow: ModelInfo, limiter: LocalLimiter | RedisLimiter, prefix: str
) -> None:
    if isinstance(limiter, LocalLimiter):
        pytest.skip("another process shares the deployment's caps only through Redis")
    other = RedisLimiter(REDIS_URL, prefix=prefix)  # another server's limiter, on the same keys
    cap = Window("deployment:1", "deployment 1", concurrency=1)
    held = (await other.acquire(Ask("req_elsewhere:1", (cap,), (), 0, 0))).ticket
    assert held is not None
    waiting = asyncio.ensure_future(serve(narrow, name="req_waits"))
    await asyncio.sleep(0.3)
    assert not waiting.done()

    await other.settle(held, tokens=0, cost=0)  # no call of this process ends: nothing here hears of it
    freed_at = time.monotonic()
    answer = await asyncio.wait_for(waiting, 2)
    took = time.monotonic() - freed_at
    await other.aclose()

    assert answer.status_code == 200
    assert took < 4 * POLL  # the head looks every POLL


async def test_the_slot_reserved_in_line_is_the_attempt_s_and_every_slot_is_given_back(
    meter: Meter, fleet: Fleet, narrow: ModelInfo, limiter: LocalLimiter | RedisLimiter
) -> None:
    holder, gate = await holding(fleet, narrow)
    waiters = [asyncio.ensure_future(serve(narrow, name=f"req_{n}")) for n in range(3)]
    await asyncio.sleep(0.1)

    gate.set()
    answers = await asyncio.wait_for(asyncio.gather(holder, *waiters), 5)
    await meter.drain()

    assert [answer.status_code for answer in answers] == [200] * 4
    assert fleet.tried == [1] * 4  # one attempt each: the slot reserved in line was the one used
    assert len(limiter.leases) == 0  # every slot settled
    after = await cap_acquire(route=narrow.routes[0], call=new_call(narrow))
    assert isinstance(after, CapHold)
    after.release()


async def test_a_client_that_leaves_while_waiting_for_a_deployment_holds_nothing_and_its_row_says_so(
    meter: Meter, fleet: Fleet, narrow: ModelInfo, ledger_dir: Path
) -> None:
    holder, gate = await holding(fleet, narrow)
    gone = asyncio.ensure_future(serve(narrow, name="req_gone"))
    await asyncio.sleep(0.1)

    gone.cancel()
    with pytest.raises(asyncio.CancelledError):
        await gone
    gate.set()
    await holder
    answer = await asyncio.wait_for(serve(narrow, name="req_next"), 0.5)

    assert answer.status_code == 200
    assert "x-portico-queue-time" not in answer.headers  # nobody held the slot for the one that left
    await meter.drain()
    row = ledger(ledger_dir)["req_gone"]
    assert (row["client_disconnected"], row["attempts"]) == (True, 0)
    assert 50 <= row["queue_ms"] < 500


def _job(*, slice_ends: float, deadline: float) -> QueueWish:
    now = time.time()
    return QueueWish(job=JobRun("qjob_1", queued_at=now - 2, deadline=now + deadline, slice_ends=now + slice_ends))


async def test_a_job_run_that_finds_the_deployments_full_in_its_slice_is_handed_back_without_a_row(
    meter: Meter, fleet: Fleet, narrow: ModelInfo, ledger_dir: Path
) -> None:
    holder, gate = await holding(fleet, narrow)

    with pytest.raises(Requeue) as handed_back:
        await serve(narrow, GRANT, name="qjob_1", wish=_job(slice_ends=0.2, deadline=30))
    gate.set()
    await holder

    assert POLL <= handed_back.value.pause <= 1.0
    await meter.drain()
    assert "qjob_1" not in ledger(ledger_dir)


async def test_a_job_run_at_its_deadline_expires_with_its_wait_since_it_was_accepted(
    meter: Meter, fleet: Fleet, narrow: ModelInfo, ledger_dir: Path
) -> None:
    holder, gate = await holding(fleet, narrow)

    with pytest.raises(RateLimited) as expired:
        await serve(narrow, GRANT, name="qjob_1", wish=_job(slice_ends=30, deadline=0.2))
    gate.set()
    await holder

    assert expired.value.code == "queue_expired"
    await meter.drain()
    row = ledger(ledger_dir)["qjob_1"]
    assert (row["status"], row["error_type"]) == (429, "queue_expired")
    assert row["queue_ms"] >= 2000


async def test_a_request_that_asks_to_respond_asynchronously_becomes_a_job_rather_than_a_503(
    meter: Meter, fleet: Fleet, narrow: ModelInfo, ledger_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    kept: list[str] = []

    async def defer(call: Any, wish: QueueWish, policy: QueuePolicy) -> Deferred:
        kept.append(call.request_id)  # the job row and its hand-over: gateway/tests/test_queue_router.py
        return Deferred(job=SimpleNamespace(id="qjob_async"))  # type: ignore[arg-type]

    monkeypatch.setattr(admission, "defer", defer)
    holder, gate = await holding(fleet, narrow)

    with pytest.raises(Deferred):
        await serve(narrow, BOTH, name="req_async", wish=QueueWish(asynchronous=True))
    gate.set()
    await holder

    assert kept == ["req_async"]
    assert fleet.tried == [1]
    await meter.drain()
    assert "req_async" not in ledger(ledger_dir)  # the job's run writes its row


# --- what a wait tries between passes ---------------------------------------------------------------------------


async def test_a_wait_tries_each_deployment_found_full_keeps_the_first_slot_and_that_one_goes_first(
    meter: Meter,
) -> None:
    rpm, busy = deployment(1, "a", max_requests_per_minute=1), deployment(2, "b", max_in_flight=1)
    call = new_call(model(rpm, busy))
    taken = [await cap_acquire(route=route, call=call) for route in (rpm, busy)]
    waits = CapWait()
    for route in (rpm, busy):
        full = await cap_acquire(route=route, call=call)
        assert isinstance(full, CapFull)
        waits.skipped(route, full)

    pause = await waits.reserve(call)
    assert isinstance(taken[1], CapHold)
    taken[1].release()
    await meter.drain()
    reserved = await waits.reserve(call)

    assert pause == POLL  # a call in flight may end any moment: the next look
    assert reserved is None
    assert [route.id for route in waits.first([rpm, busy])] == [2, 1]
    assert waits.take(rpm) is None
    hold = waits.take(busy)
    assert isinstance(hold, CapHold)
    assert waits.take(busy) is None  # the attempt's now
    hold.release()


async def test_a_wait_on_per_minute_caps_alone_pauses_until_the_soonest_has_room(meter: Meter) -> None:
    rpm = deployment(1, "a", max_requests_per_minute=2)
    call = new_call(model(rpm))
    await cap_acquire(route=rpm, call=call)
    await cap_acquire(route=rpm, call=call)
    full = await cap_acquire(route=rpm, call=call)
    assert isinstance(full, CapFull)
    assert not full.in_flight
    waits = CapWait()
    waits.skipped(rpm, full)

    pause = await waits.reserve(call)

    assert pause == pytest.approx(30, abs=1)  # 2 a minute: room again in 30 s
    assert waits.refusal(call.model).headers["retry-after"] == "30"
