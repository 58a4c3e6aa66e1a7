"""Mid-stream recovery: a stream that broke after its first byte carries on with its model's next deployments.

gateway.streaming asks a `StreamResume` for another deployment's stream when
the one it relays breaks (for a model with `mid_stream_recovery`). It tries the
deployments after the one that served, in the loop's order and by its rules:
breakers and caps respected, only for the failures in the model's `retry_on`,
the call's limits not charged again.

The call's deadline (`x-portico-timeout`, else the model's `timeout`), counted
from the call's start, bounds the continuations as it bounds the chain:

    deadline passed before a continuation would start   it does not start: the stream ends with the error
                                                        event of what broke it
    passes while a continuation is opening              the attempt is abandoned, likewise
    passes while a continuation is being relayed        it is cut: the stream ends with a timeout error event

An attempt cut by the deadline is dropped rather than reported as failed: the
deadline says nothing of the deployment's health. Only a continuation pays
for the deadline (a timer per event it relays); a stream that never breaks
pays nothing.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

from gateway import routing
from gateway.accounting import Call
from gateway.errors import PorticoError, UpstreamTimeout
from gateway.recovery import Continuation
from gateway.relay import Opened, Report
from gateway.routing_caps import CapHold, cap_acquire, capped
from gateway.routing_outcome import Trail
from providers.facade import ModelInfo, RouteInfo


class StreamResume:
    """The `Resume` of one stream: its model's deployments after the one that served, within the deadline."""

    __slots__ = ("breakers", "call", "deadline", "model", "rest", "seconds")

    def __init__(self, call: Call, model: ModelInfo, rest: list[RouteInfo], seconds: float | None) -> None:
        self.call, self.model, self.rest, self.breakers = call, model, rest, routing._breakers()
        self.seconds = seconds
        self.deadline = None if seconds is None else call.started + seconds  # time.monotonic()

    async def __call__(self, error: PorticoError, continuation: Continuation) -> tuple[Opened, Report] | None:
        if routing.failure_class(error) not in self.model.retry_on:
            return None
        while self.rest:
            if self._left() <= 0:
                return None  # the deadline has passed: nothing starts now
            route = self.rest.pop(0)
            if not self.breakers.allow(route.id) and not await self.breakers.acquire_probe(route.id):
                continue
            hold = None
            if capped(route):
                held = await _held(route, self.call)
                if held is None:
                    continue
                hold = held
            try:
                carried_on = await self._open(route, continuation, hold)
            except TimeoutError:
                if self._left() > 0:
                    raise  # not the deadline's
                return None  # the deadline passed while it was opening
            except PorticoError as exc:
                if routing.failure_class(exc) not in self.model.retry_on:
                    return None
                continue
            if carried_on is not None:
                return carried_on
        return None

    def _left(self) -> float:
        return float("inf") if self.deadline is None else self.deadline - time.monotonic()

    async def _open(
        self, route: RouteInfo, continuation: Continuation, hold: CapHold | None
    ) -> tuple[Opened, Report] | None:
        """The continuation's stream on `route`, opened within the deadline; TimeoutError if it passes first."""
        call, model = self.call, self.model
        first_byte, stall = model.first_byte_timeout, model.stall_timeout
        if self.deadline is None:
            opened, tried = await routing._try(
                call, route, self.breakers, first_byte, stall=stall, continuation=continuation, hold=hold
            )
        else:
            async with asyncio.timeout(self._left()):
                opened, tried = await routing._try(
                    call, route, self.breakers, first_byte, stall=stall, continuation=continuation, hold=hold
                )
        if not isinstance(opened, Opened):
            return None  # a whole answer to a stream: reported already, and nothing to carry on with
        if self.deadline is None or self.seconds is None:
            return opened, tried.end
        cut = _Cut(tried, _deadline_cut(call.model, self.seconds))
        opened.chunks = cut.chunks(opened.chunks, self.deadline)
        return opened, cut.report


async def _held(route: RouteInfo, call: Call) -> CapHold | None:
    # A continuation has no trail to explain itself with: a deployment it cannot hold is simply passed over.
    try:
        held = await cap_acquire(route=route, call=call)
    except PorticoError:
        return None
    return held if isinstance(held, CapHold) else None


class _Cut:
    """A continuation's chunks, cut at the call's deadline; its end reported as a drop if that is what ended it."""

    __slots__ = ("error", "fired", "tried")

    def __init__(self, tried: routing.Attempt, error: UpstreamTimeout) -> None:
        self.tried = tried
        self.error = error
        self.fired = False

    async def chunks(self, inner: AsyncIterator[bytes], deadline: float) -> AsyncIterator[bytes]:
        when = asyncio.get_running_loop().time() + (deadline - time.monotonic())
        while True:
            try:
                async with asyncio.timeout_at(when):
                    chunk = await anext(inner)
            except StopAsyncIteration:
                return
            except TimeoutError:
                self.fired = True
                raise self.error from None
            yield chunk

    def report(self, ok: bool, reason: str) -> None:
        if self.fired:
            self.tried.drop()
        else:
            self.tried.end(ok, reason)


def _deadline_cut(model: ModelInfo, seconds: float) -> UpstreamTimeout:
    return UpstreamTimeout(
        f"The stream of the model `{model.public_id}` did not finish within the request's deadline of {seconds:g} s."
    )


def resume_for(call: Call, trail: Trail, seconds: float | None) -> StreamResume | None:
    """How a stream carries on if it breaks: only for a model with mid-stream recovery and deployments left."""
    model = trail.served
    if model is None or not model.mid_stream_recovery or not trail.rest:
        return None
    return StreamResume(call, model, list(trail.rest), seconds)
