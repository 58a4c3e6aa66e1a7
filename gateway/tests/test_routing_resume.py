"""Mid-stream recovery in the routing loop: caps respected, and everything within the call's deadline.

A `StreamResume` is driven here as gateway.streaming drives it, with a stand-in
for `relay.attempt` that opens streams whose chunks the test controls (the real
relay carries a broken stream on in tests/integration/test_stream_recovery.py
and tests/integration/test_routing_deadline.py).
"""

from __future__ import annotations

import asyncio
import dataclasses
import time
from collections.abc import AsyncIterator
from typing import Any, cast

import pytest

from gateway import routing
from gateway.accounting import Call
from gateway.breakers import LocalBreakers
from gateway.errors import UpstreamTimeout
from gateway.recovery import Continuation, stall_error
from gateway.relay import Opened
from gateway.routing_caps import CapHold, cap_acquire
from gateway.routing_outcome import Trail
from gateway.routing_resume import StreamResume, resume_for
from gateway.tests import test_routing_caps
from gateway.tests.test_routing import deployment, model, new_call
from gateway.tests.test_routing_caps import Recording, Response, Translator
from providers.facade import RouteInfo

# The caps tests' fixtures: the process's limiter (in this process, or Redis) and breakers that open at a failure.
clock, limiter, breakers = test_routing_caps.clock, test_routing_caps.limiter, test_routing_caps.breakers

CONTINUATION = Continuation({"messages": []}, {"id": "chatcmpl-1"}, {"prompt_tokens": 3, "completion_tokens": 2})
RETRY = frozenset({"stall", "timeout", "connect", "5xx"})


class Streams:
    """Stands in for relay.attempt: each deployment opens a stream that sends one chunk, then whatever
    `after` says: nothing more for ever (None), or the end."""

    def __init__(self) -> None:
        self.tried: list[int] = []
        self.opening: set[int] = set()  # deployments that never get to their first event
        self.after: float | None = None  # seconds before the stream ends; None: it never does

    async def __call__(self, call: Call, route: RouteInfo, **_: object) -> Opened:
        self.tried.append(route.id)
        if route.id in self.opening:
            await asyncio.Event().wait()
        return Opened(cast(Any, Response()), self._chunks(), Translator(), cast(Any, None), b"data: {}\n\n")

    async def _chunks(self) -> AsyncIterator[bytes]:
        yield b"data: {}\n\n"
        if self.after is None:
            await asyncio.Event().wait()
        else:
            await asyncio.sleep(self.after)


@pytest.fixture
def streams(monkeypatch: pytest.MonkeyPatch) -> Streams:
    streams = Streams()
    monkeypatch.setattr(routing, "attempt", streams)
    return streams


def stream_call(*routes: RouteInfo, started: float | None = None) -> Call:
    call = new_call(model(*routes, mid_stream_recovery=True, retry_on=RETRY))
    call.body["stream"] = True
    call.streamed = True
    if started is not None:
        call.started = started
    return call


def resume(call: Call, rest: list[RouteInfo], seconds: float | None) -> StreamResume:
    return StreamResume(call, call.model, list(rest), seconds)


async def test_a_continuation_carries_on_on_the_next_deployment_with_room_under_its_caps(
    limiter: Recording, streams: Streams, breakers: LocalBreakers
) -> None:
    full, free = deployment(2, "b", max_in_flight=1), deployment(3, "c", max_in_flight=1)
    call = stream_call(deployment(1, "a"), full, free)
    held = await cap_acquire(route=full, call=call)  # another call's stream holds deployment 2's only slot
    assert isinstance(held, CapHold)

    carried_on = await resume(call, [full, free], None)(stall_error("a", 1), CONTINUATION)

    assert carried_on is not None
    opened, report = carried_on
    assert streams.tried == [3]
    report(True, "")
    held.release()
    assert await limiter.unsettled() == []


async def test_no_continuation_starts_once_the_calls_deadline_has_passed(
    limiter: Recording, streams: Streams, breakers: LocalBreakers
) -> None:
    routes = deployment(1, "a"), deployment(2, "b", max_in_flight=1)
    late = stream_call(*routes, started=time.monotonic() - 5)
    in_time = stream_call(*routes, started=time.monotonic())

    assert await resume(late, [routes[1]], 5.0)(stall_error("a", 1), CONTINUATION) is None
    assert streams.tried == []
    assert await resume(in_time, [routes[1]], 5.0)(stall_error("a", 1), CONTINUATION) is not None
    assert streams.tried == [2]


async def test_a_continuation_still_opening_at_the_deadline_is_abandoned_and_its_slot_freed(
    limiter: Recording, streams: Streams, breakers: LocalBreakers
) -> None:
    slow = deployment(2, "b", max_in_flight=1)
    call = stream_call(deployment(1, "a"), slow, started=time.monotonic())
    streams.opening.add(2)

    began = time.monotonic()
    async with asyncio.timeout(5):
        carried_on = await resume(call, [slow], 0.3)(stall_error("a", 1), CONTINUATION)

    assert carried_on is None
    assert 0.2 <= time.monotonic() - began < 2.0
    assert streams.tried == [2]
    assert await limiter.unsettled() == []
    assert not breakers.is_open(2)  # the deadline says nothing of the deployment's health


async def test_a_continuation_still_relaying_at_the_deadline_is_cut_with_a_timeout(
    limiter: Recording, streams: Streams, breakers: LocalBreakers
) -> None:
    slow = deployment(2, "b", max_in_flight=1)
    call = stream_call(deployment(1, "a"), slow, started=time.monotonic())
    carried_on = await resume(call, [slow], 0.3)(stall_error("a", 1), CONTINUATION)
    assert carried_on is not None
    opened, report = carried_on

    read: list[bytes] = []

    async def relay() -> None:
        async for chunk in opened.chunks:
            read.append(chunk)

    async with asyncio.timeout(5):
        with pytest.raises(UpstreamTimeout) as caught:
            await relay()
    report(False, caught.value.classification)  # as gateway.streaming reports a segment that failed

    assert read == [b"data: {}\n\n"]
    assert "deadline of 0.3 s" in caught.value.message
    assert time.monotonic() - call.started >= 0.3
    assert await limiter.unsettled() == []
    assert not breakers.is_open(2)


async def test_a_continuation_that_ends_before_the_deadline_is_reported_as_it_ended(
    limiter: Recording, streams: Streams, breakers: LocalBreakers
) -> None:
    quick = deployment(2, "b")
    call = stream_call(deployment(1, "a"), quick, started=time.monotonic())
    streams.after = 0.0
    carried_on = await resume(call, [quick], 30.0)(stall_error("a", 1), CONTINUATION)
    assert carried_on is not None
    opened, report = carried_on

    read = [chunk async for chunk in opened.chunks]
    report(False, "upstream_error")

    assert read == [b"data: {}\n\n"]
    assert breakers.is_open(2)  # a failure of its own still counts against it


def test_a_model_without_recovery_gets_no_resume() -> None:
    call = stream_call(deployment(1, "a"), deployment(2, "b"))
    trail = Trail()
    trail.served, trail.rest = dataclasses.replace(call.model, mid_stream_recovery=False), [deployment(2, "b")]
    assert resume_for(call, trail, None) is None
    trail.served = call.model
    assert isinstance(resume_for(call, trail, None), StreamResume)
