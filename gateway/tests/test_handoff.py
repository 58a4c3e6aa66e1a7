"""Who drains the hand-off: a server's event loop, in turns, or a thread where no server's loop runs."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Iterator

import pytest
from prometheus_client import CollectorRegistry

from gateway.observability import handoff
from gateway.observability.clock import RequestClock
from gateway.observability.handoff import TURN, HandOff
from gateway.observability.metrics import Metrics


def answered(hand_off: HandOff) -> float:
    value = hand_off.metrics.registry.get_sample_value(
        "portico_requests_total", {"model": "", "provider": "", "status_class": "2xx", "error_class": ""}
    )
    return value or 0.0


def hand_over(hand_off: HandOff, count: int) -> None:
    clock = RequestClock(0.0)
    clock.seconds, clock.ms = 0.0001, 0
    for _ in range(count):
        hand_off.answer(200, clock, "/v1/models")


async def counted(hand_off: HandOff, total: int) -> None:
    """Once the loop has drained `total` answers, or five seconds have gone."""
    for _ in range(5000):
        if answered(hand_off) >= total:
            return
        await asyncio.sleep(0.001)


@pytest.fixture
def hand_off() -> Iterator[HandOff]:
    made = HandOff(Metrics(CollectorRegistry(), tenant_labels=False), interval=0.005)
    yield made
    made.stop()


async def test_a_servers_loop_drains_a_few_items_a_turn_and_no_thread(hand_off: HandOff) -> None:
    count = 2 * TURN + 5
    hand_over(hand_off, count)  # before the server starts: the first item starts a thread
    assert hand_off._thread is not None

    hand_off.serve_on(asyncio.get_running_loop())  # the loop takes over, once the thread has drained its items
    assert hand_off._thread is None
    assert answered(hand_off) == count
    hand_over(hand_off, count)
    waiting = []
    deadline = time.monotonic() + 5
    while hand_off._pending and time.monotonic() < deadline:
        waiting.append(len(hand_off._pending))
        await asyncio.sleep(0)  # one turn of the loop: the drain must leave this coroutine its turns
        if answered(hand_off) != count:
            assert not hand_off._pending  # the metrics are updated once the pass is over, not turn by turn

    assert not hand_off._pending
    assert answered(hand_off) == 2 * count
    assert hand_off._thread is None
    observed = [*waiting, 0]
    steps = [before - after for before, after in zip(observed, observed[1:], strict=False)]
    assert max(steps) <= TURN  # never more than a turn's share between two turns of this coroutine
    assert 1 <= waiting.count(count - TURN) <= 2  # ...and the turns came one after another, not an interval apart


async def test_the_loop_samples_the_gauges_and_drains_again_each_interval(
    hand_off: HandOff, monkeypatch: pytest.MonkeyPatch
) -> None:
    sampled: list[Metrics] = []
    monkeypatch.setattr(handoff.gauges, "sample", sampled.append)
    hand_off.serve_on(asyncio.get_running_loop())
    for round_ in range(1, 4):
        hand_over(hand_off, 3)
        await counted(hand_off, 3 * round_)
        assert answered(hand_off) == 3 * round_
        passes = len(sampled)
        for _ in range(5000):  # the pass that drained them ends with a sample, and so does the next, with none
            if len(sampled) >= passes + 1:
                break
            await asyncio.sleep(0.001)
        assert len(sampled) > passes
    assert set(map(id, sampled)) == {id(hand_off.metrics)}


async def test_a_scrape_draining_on_its_thread_does_not_hold_up_the_loop(hand_off: HandOff) -> None:
    hand_off.serve_on(asyncio.get_running_loop())
    held, release = threading.Event(), threading.Event()

    def scrape() -> None:
        with hand_off._lock:  # as HandOff.drain holds it for a scrape's whole drain
            held.set()
            release.wait(5)

    scraper = threading.Thread(target=scrape)
    scraper.start()
    held.wait(5)
    try:
        hand_over(hand_off, 1)
        started = time.monotonic()
        await asyncio.sleep(0.1)  # a dozen intervals, each of which finds the lock taken
        assert time.monotonic() - started < 1.0
        assert answered(hand_off) == 0
    finally:
        release.set()
        scraper.join(5)
    await counted(hand_off, 1)
    assert answered(hand_off) == 1


async def test_stopping_drains_what_is_left_and_a_later_item_starts_a_thread(hand_off: HandOff) -> None:
    slow = HandOff(Metrics(CollectorRegistry(), tenant_labels=False), interval=60.0)
    slow.serve_on(asyncio.get_running_loop())
    hand_over(slow, 4)

    slow.stop()  # as the server's shutdown does: what was handed over is counted at once

    assert answered(slow) == 4
    assert slow._thread is None
    hand_over(slow, 1)  # the process goes on without a loop draining: a worker's batch line, say
    assert slow._thread is not None
    assert slow._thread.is_alive()
    slow.stop()
    assert answered(slow) == 5
