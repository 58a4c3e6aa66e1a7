"""Portico's own time per request: upstream and queue waits left out, fixed once, sent as x-portico-overhead-ms."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace

import httpx
import pytest

from gateway.observability import clock as clock_module
from gateway.observability.clock import RequestClock, current, start
from gateway.tests.test_fastpath import CHAT, bearer, house_route, personas, portico  # noqa: F401 - fixtures
from tenants.tests.factories import IssuedKey


class FakeTime:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def fake_time(monkeypatch: pytest.MonkeyPatch) -> FakeTime:
    time = FakeTime()
    monkeypatch.setattr(clock_module, "_now", time)
    return time


def test_upstream_waits_are_left_out(fake_time: FakeTime) -> None:
    clock = RequestClock(fake_time())
    fake_time.now += 0.002  # parsing, auth, routing
    clock.wait_begins()
    fake_time.now += 1.5  # the upstream
    clock.wait_ends()
    fake_time.now += 0.001  # translating the answer

    assert clock.freeze() == 3
    assert clock.seconds == pytest.approx(0.003)


def test_overlapping_waits_count_once(fake_time: FakeTime) -> None:
    clock = RequestClock(fake_time())
    clock.wait_begins()  # a hedge's first call
    fake_time.now += 1.0
    clock.wait_begins()  # and its second, while the first still waits
    fake_time.now += 0.5
    clock.wait_ends()
    fake_time.now += 0.25
    clock.wait_ends()
    fake_time.now += 0.004

    assert clock.freeze() == 4


def test_a_wait_still_open_when_fixed_is_left_out_up_to_then(fake_time: FakeTime) -> None:
    clock = RequestClock(fake_time())
    fake_time.now += 0.001
    clock.wait_begins()
    fake_time.now += 2.0

    assert clock.freeze() == 1


def test_the_figure_is_fixed_once(fake_time: FakeTime) -> None:
    clock = RequestClock(fake_time())
    fake_time.now += 0.007
    first = clock.freeze()
    fake_time.now += 5.0

    assert first == clock.freeze() == 7
    assert clock.seconds == pytest.approx(0.007)


def test_time_in_line_for_capacity_is_left_out(fake_time: FakeTime) -> None:
    clock = RequestClock(fake_time())
    fake_time.now += 2.503
    clock.call = SimpleNamespace(queue_ms=2500, queued_at=None)

    assert clock.freeze() == 3


def test_a_call_still_in_line_counts_its_wait_so_far(fake_time: FakeTime) -> None:
    clock = RequestClock(fake_time())
    fake_time.now += 0.002
    clock.call = SimpleNamespace(queue_ms=None, queued_at=fake_time.now)
    fake_time.now += 9.0

    assert clock.freeze() == 2


async def test_tasks_a_request_starts_share_its_clock() -> None:
    clock = start()

    async def child() -> RequestClock | None:
        return current()

    assert await asyncio.get_running_loop().create_task(child()) is clock


# --- on the fast path, in-process (the mock provider) ---


def overhead_of(response: httpx.Response) -> int:
    value = response.headers["x-portico-overhead-ms"]
    assert value.isdigit()
    return int(value)


@pytest.mark.django_db(transaction=True)  # the snapshot loads in its own thread: rows must be committed
async def test_whole_answers_streams_and_errors_carry_the_overhead(
    portico: httpx.AsyncClient,  # noqa: F811 - the fixture imported above
    owner: IssuedKey,
) -> None:
    whole = await portico.post("/v1/chat/completions", json=CHAT, headers=bearer(owner))
    async with portico.stream(
        "POST", "/v1/chat/completions", json={**CHAT, "stream": True}, headers=bearer(owner)
    ) as streamed:
        await streamed.aread()
    unauthenticated = await portico.post("/v1/chat/completions", json=CHAT)
    unknown = await portico.get("/v1/nowhere", headers=bearer(owner))

    assert whole.status_code == 200
    assert streamed.headers["content-type"].startswith("text/event-stream")
    assert unauthenticated.status_code == 401
    assert unknown.status_code == 404
    for response in (whole, streamed, unauthenticated, unknown):
        assert 0 <= overhead_of(response) < 1000
