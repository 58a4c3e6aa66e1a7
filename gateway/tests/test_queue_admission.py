"""Admission with a queue policy, through a call's session: wait in turn, the refusal after the wait, a job's run.

No servers and no database: the limiter is a `LocalLimiter`, the ledger a spool
file in a temporary directory (as gateway/tests/test_accounting.py), and the
tenant's limit is one request in flight.
"""

from __future__ import annotations

import asyncio
import dataclasses
import time
from collections.abc import AsyncIterator, Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import orjson
import pytest
from django.test import override_settings

from billing.facade import BillingSnapshot, BudgetInfo, LimitInfo
from billing.limits import LocalLimiter
from billing.metering import Meter
from gateway import accounting
from gateway.accounting import Call, CallSession
from gateway.errors import QuotaExceeded, RateLimited
from gateway.queueing.admission import Requeue
from gateway.queueing.lines import lines
from gateway.queueing.wish import JobRun, QueueWish
from gateway.tests.test_accounting import GRANT, HELLO, MODEL, TENANT, model_of, route
from tenants.facade import QueuePolicy

WAITS = dataclasses.replace(GRANT, queue=QueuePolicy(mode="wait", max_wait=5))
ONE_IN_FLIGHT = {("tenant", TENANT, ""): LimitInfo(requests_per_minute=None, tokens_per_minute=None, max_concurrent=1)}


@pytest.fixture
def ledger_dir(tmp_path: Path) -> Path:
    return tmp_path / "ledger"


@pytest.fixture
def meter(ledger_dir: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Meter]:
    fresh = Meter()
    fresh.limiter = LocalLimiter()
    monkeypatch.setattr(accounting, "accounts", fresh)
    with override_settings(PORTICO_LEDGER_DIR=str(ledger_dir)):
        yield fresh


@pytest.fixture(autouse=True)
async def shared_lines() -> AsyncIterator[None]:
    """The process's lines; the limits' lines are shared through the test Redis, whose connection is closed here."""
    yield
    await lines.aclose()


def billing(budget: BudgetInfo | None = None) -> BillingSnapshot:
    budgets = {("tenant", TENANT): budget} if budget is not None else {}
    return BillingSnapshot(limits=ONE_IN_FLIGHT, budgets=budgets, limited=frozenset({("tenant", TENANT)}))


def session(name: str, grant: Any = WAITS, *, wish: QueueWish | None = None, snapshot: Any = None) -> CallSession:
    call = Call(
        request_id=name,
        client_request_id="",
        grant=grant,
        model=model_of(route()),
        operation="chat",
        body={"model": MODEL, "messages": HELLO},
    )
    call.queue = wish
    return CallSession(call, snapshot or billing())


def served(call_session: CallSession) -> None:
    """The call ends, answered; its usage reported (no tokens to count, which would take a while the first time)."""
    call_session.call.usage = {"prompt_tokens": 5, "completion_tokens": 2, "total_tokens": 7}
    call_session.close()


def ledger(directory: Path) -> list[dict[str, Any]]:
    if not directory.exists():
        return []
    return [orjson.loads(line) for path in sorted(directory.iterdir()) for line in path.read_bytes().splitlines()]


async def test_a_call_over_its_limit_waits_and_is_admitted_as_soon_as_the_slot_is_free(meter: Meter) -> None:
    first = session("req_1")
    await first.admit()
    second = session("req_2")
    waiting = asyncio.create_task(second.admit())
    await asyncio.sleep(0.2)
    assert not waiting.done()

    served(first)
    freed_at = time.monotonic()
    headers = await asyncio.wait_for(waiting, 1)

    assert time.monotonic() - freed_at < 0.1  # woken by the end of the first call, not by a timer
    assert second.call.queue_ms is not None
    assert 150 <= second.call.queue_ms < 1000  # about the 0.2 s the first held the slot
    assert headers["x-portico-queue-time"] == str(second.call.queue_ms)


async def test_a_call_that_waited_until_its_deadline_gets_the_very_refusal_it_would_have_had(meter: Meter) -> None:
    holder = session("req_1")
    await holder.admit()
    with pytest.raises(RateLimited) as at_once:
        await session("req_2", GRANT).admit()  # no queue: refused now

    started = time.monotonic()
    with pytest.raises(RateLimited) as after_waiting:
        await session("req_3", wish=QueueWish(timeout=0.2)).admit()

    assert 0.2 <= time.monotonic() - started < 0.6
    assert after_waiting.value.body() == at_once.value.body()
    assert after_waiting.value.headers == at_once.value.headers
    assert after_waiting.value.headers["retry-after"] == "1"
    refused = [line for line in ledger(meter.spool.directory) if line["request_id"] == "req_3"]
    assert [(line["status"], line["error_type"]) for line in refused] == [(429, "rate_limit_exceeded")]
    assert 150 <= refused[0]["queue_ms"] < 600


async def test_a_spent_budget_is_refused_at_once_whatever_the_policy(meter: Meter) -> None:
    spent = BudgetInfo(
        id=1, period="none", amount=Decimal(1), soft_limit_percent=80, period_name="all", spent=Decimal(1)
    )

    spender = session("req_1", snapshot=billing(spent))
    spender.call.prompt_estimate = 10  # counted already: what is timed is the refusal, not a first token count

    started = time.monotonic()
    with pytest.raises(QuotaExceeded):
        await spender.admit()

    assert time.monotonic() - started < 0.1


async def test_a_call_whose_client_leaves_while_waiting_holds_nothing_and_its_row_says_so(meter: Meter) -> None:
    holder = session("req_1")
    await holder.admit()
    gone = session("req_2")
    waiting = asyncio.create_task(gone.admit())
    await asyncio.sleep(0.1)

    waiting.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiting
    served(holder)
    await asyncio.wait_for(session("req_3").admit(), 0.5)  # the freed slot: nobody holds it for the one gone

    rows = {line["request_id"]: line for line in ledger(meter.spool.directory)}
    assert rows["req_2"]["client_disconnected"]
    assert 50 <= rows["req_2"]["queue_ms"] < 500  # from its first refusal to its client leaving


def _job(*, slice_ends: float, deadline: float) -> QueueWish:
    now = time.time()
    return QueueWish(job=JobRun("qjob_1", queued_at=now - 2, deadline=now + deadline, slice_ends=now + slice_ends))


async def test_a_job_run_that_finds_no_room_in_its_slice_is_handed_back_and_writes_no_row(meter: Meter) -> None:
    await session("req_1").admit()

    with pytest.raises(Requeue) as handed_back:
        await session("qjob_1", GRANT, wish=_job(slice_ends=0.1, deadline=30)).admit()

    assert 0.05 <= handed_back.value.pause <= 1.0
    assert [line["request_id"] for line in ledger(meter.spool.directory)] == []


async def test_a_job_run_at_its_deadline_expires_and_its_row_counts_its_wait_since_it_was_accepted(
    meter: Meter,
) -> None:
    await session("req_1").admit()

    with pytest.raises(RateLimited) as expired:
        await session("qjob_1", GRANT, wish=_job(slice_ends=30, deadline=0.1)).admit()

    assert expired.value.code == "queue_expired"
    [row] = ledger(meter.spool.directory)
    assert (row["request_id"], row["status"], row["error_type"]) == ("qjob_1", 429, "queue_expired")
    assert row["queue_ms"] >= 2000  # accepted two seconds before this run
