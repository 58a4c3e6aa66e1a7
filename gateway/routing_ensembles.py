"""The routing loop's ensemble branch: one call answered by several upstream calls (gateway.ensembles).

A public model with an `ensemble` set is served here instead of by the one-at-a-time
loop of gateway.routing, when its mode suits the call and at least two deployments
are left once the loop's filters (operation, `provider` wishes, `max_cost_per_token`,
breakers) have run; otherwise the loop serves it as usual.

| mode      | serves                          | deployments, in the order of            |
|-----------|---------------------------------|-----------------------------------------|
| `cascade` | chat, not streamed              | provider cost, cheapest first           |
| `hedge`   | any operation, streamed or not  | the model's strategy (first two)        |
| `vote`    | chat, not streamed              | the model's strategy (first PORTICO_VOTE_N) |

Each upstream call is an attempt of the loop (`routing._try`: breakers, deployment
stats, first-byte timeout, caps reserved per upstream call and released when it
ends, cancelled or not) made on its own copy of the call, so concurrent calls do
not share a route or a stream's counted output. A deployment that is resting or
at its caps when its turn comes is skipped and not counted.

Billing: the tenant's limits and budget are reserved once, as for any call. The
ledger row's usage, and so its cost, is the sum over every upstream call: the
upstream's usage where it sent one, Portico's count of the prompt for a call
cancelled because another answered first (the upstream had read it), nothing for a
failed one. `attempts` is the number of upstream calls. The answer is the chosen
call's, with `x-portico-ensemble` (and `x-portico-votes` for a vote) beside the
usual `x-portico-*` headers. When no call answered, the chosen failure goes to the
client; the model's fallbacks are not tried.
"""

from __future__ import annotations

import asyncio
import copy
import dataclasses
import logging
import time
from collections.abc import Iterable, Mapping
from decimal import Decimal
from typing import Any

import orjson
from django.conf import settings
from django.http import HttpResponse

from billing.facade import BillingSnapshot
from billing.metering import Usage
from gateway import routing
from gateway.accounting import Call, CallSession, counted_usage, prompt_estimate
from gateway.breakers import Breakers
from gateway.ensembles import EnsembleResult, HedgedStream, Outcome, cascade, hedge, hedge_stream, vote
from gateway.errors import InternalError, NoDeployment, PorticoError
from gateway.extensions import Extensions
from gateway.relay import Opened, Whole, answer
from gateway.routing_caps import CapHold, cap_acquire, capped
from gateway.routing_outcome import Trail
from gateway.snapshot import Snapshot
from gateway.sse import EventStream
from providers.facade import ModelInfo, RouteInfo

logger = logging.getLogger(__name__)

_WHOLE_ONLY = {"cascade": frozenset({"chat"}), "vote": frozenset({"chat"})}


def ensemble_routes(call: Call, snapshot: Snapshot, ext: Extensions) -> list[RouteInfo]:
    """The deployments the call's ensemble may use, in the loop's filters; [] when the loop should serve it."""
    mode = call.model.ensemble
    if mode in _WHOLE_ONLY and (call.streamed or call.operation not in _WHOLE_ONLY[mode]):
        return []
    trail = Trail()
    if not routing._fits(call, call.model, trail):
        return []  # the loop tries the fallbacks, or says why nothing fits
    routes = routing._candidates(call, call.model, snapshot.billing, ext, trail, routing._breakers())
    if len(routes) < 2:
        return []
    model = dataclasses.replace(call.model, strategy="cost") if mode == "cascade" else call.model
    order, reason = routing._order(call, model, routes, snapshot.billing, ext)
    call.routing = f"{reason}; ensemble {mode}"
    return order


class _Resting(NoDeployment):
    """The deployment was resting or at its caps when its turn came: no upstream call was made."""


class EnsembleSession(CallSession):
    """A call session whose ledger line adds the usage of the upstream calls that were not relayed."""

    __slots__ = ("others",)

    def __init__(self, call: Call, billing: BillingSnapshot) -> None:
        super().__init__(call, billing)
        self.others = Usage()

    def close(self) -> Decimal:
        call = self.call
        if not call.finished and (self.others.prompt_tokens or self.others.completion_tokens):
            call.usage = _as_openai(_plus(self._relayed(), self.others))
        return super().close()

    def _relayed(self) -> Usage:
        # What the ledger would have counted for the relayed answer alone (see billing.metering.Meter.finish).
        call = self.call
        usage = Usage.from_openai(call.usage)
        if usage is not None:
            return usage
        return counted_usage(call) if call.outputs or call.status < 400 else Usage()


class _Ensemble:
    """The upstream calls of one ensemble: each an attempt of the loop on its own copy of the call."""

    def __init__(self, session: EnsembleSession, breakers: Breakers) -> None:
        self.session = session
        self.call = session.call
        self.breakers = breakers
        self.first_byte = self.call.model.first_byte_timeout
        self.calls = 0  # upstream calls made
        self.last: RouteInfo | None = None
        self.settled = False

    async def _try(self, route: RouteInfo) -> tuple[Call, Whole | Opened, routing.Attempt]:
        if not await self.breakers.acquire_probe(route.id):
            raise _Resting(route.public_id)
        hold = await self._hold(route) if capped(route) else None
        own = copy.copy(self.call)
        own.outputs, own.usage, own.attempts = [], None, 0
        self.calls += 1
        self.last = route
        stall = self.call.model.stall_timeout
        # From here the attempt owns the hold: its end, or its cancellation, releases it.
        served, tried = await routing._try(own, route, self.breakers, self.first_byte, stall=stall, hold=hold)
        return own, served, tried

    async def _hold(self, route: RouteInfo) -> CapHold:
        try:
            held = await cap_acquire(route=route, call=self.call)
        except PorticoError:  # the limiter cannot tell (see gateway.routing_caps): passed over like a full one
            raise _Resting(route.public_id) from None
        if not isinstance(held, CapHold):
            raise _Resting(route.public_id)
        return held

    async def whole(self, route: RouteInfo) -> Outcome:
        """One upstream call read to its end (an `Attempt` of gateway.ensembles); failures raise."""
        began = time.monotonic()
        _, served, tried = await self._try(route)
        assert isinstance(served, Whole)
        body = served.content
        parsed = served.body if served.body is not None else orjson.loads(body) if body[:1] == b"{" else None
        usage = parsed.get("usage") if isinstance(parsed, dict) else None
        ttfb = None if tried.first_byte is None else tried.first_byte - began
        return Outcome(route, 200, body, usage if isinstance(usage, dict) else None, time.monotonic() - began, ttfb)

    async def stream(self, route: RouteInfo) -> _Leg:
        """One upstream stream, open once its first event is in (an opener of `hedge_stream`)."""
        own, served, tried = await self._try(route)
        assert isinstance(served, Opened)
        return _Leg(own, served, tried)

    def settle(self, outcomes: Iterable[Outcome], chosen: Outcome | None, route: RouteInfo | None) -> None:
        """The call's attempts, route and the usage of the calls not relayed, for its headers and ledger line."""
        if self.settled:
            return
        self.settled = True
        call = self.call
        call.attempts = self.calls
        call.route = route or self.last or call.route
        for outcome in outcomes:
            if outcome.cancelled:
                routing.first_byte_times.record(outcome)  # how long it had waited counts toward the p95
            if outcome is not chosen:
                billed = _billed(call, outcome)
                self.session.others = _plus(self.session.others, billed)
                call.earlier = (*call.earlier, (outcome.route.id, billed))


@dataclasses.dataclass(slots=True)
class _Leg:
    """A hedged stream's upstream call: its own copy of the call, the stream opened, and the loop's attempt."""

    call: Call
    opened: Opened
    tried: routing.Attempt

    async def aclose(self) -> None:
        try:
            await self.opened.aclose()
        finally:
            self.tried.drop()  # it lost, which says nothing of the deployment's health


def _billed(call: Call, outcome: Outcome) -> Usage:
    if outcome.cancelled:
        return Usage(prompt_tokens=prompt_estimate(call))
    return Usage.from_openai(outcome.usage) or Usage()


def _plus(one: Usage, other: Usage) -> Usage:
    return Usage(
        prompt_tokens=one.prompt_tokens + other.prompt_tokens,
        completion_tokens=one.completion_tokens + other.completion_tokens,
        cached_tokens=one.cached_tokens + other.cached_tokens,
        reasoning_tokens=one.reasoning_tokens + other.reasoning_tokens,
    )


def _as_openai(usage: Usage) -> dict[str, Any]:
    return {
        "prompt_tokens": usage.prompt_tokens,
        "completion_tokens": usage.completion_tokens,
        "total_tokens": usage.total,
        "prompt_tokens_details": {"cached_tokens": usage.cached_tokens},
        "completion_tokens_details": {"reasoning_tokens": usage.reasoning_tokens},
    }


async def serve_ensemble(
    call: Call, snapshot: Snapshot, routes: list[RouteInfo], ext: Extensions
) -> HttpResponse | EventStream:
    """Admit the call once and answer it with its model's ensemble over `routes` (from `ensemble_routes`)."""
    session = EnsembleSession(call, snapshot.billing)
    limit_headers = await session.admit()
    ensemble = _Ensemble(session, routing._breakers())
    headers: dict[str, str] = {}
    try:
        async with routing._deadline(call, ext.timeout or call.model.timeout):
            if call.streamed:
                return await _hedged_stream(ensemble, routes, ext, limit_headers)
            result = await _run(ensemble, call.model, routes)
        headers = result.headers
        ensemble.settle(result.outcomes, result.chosen, result.chosen.route)
        if not result.chosen.ok:
            raise _error_of(result.chosen.error)
    except PorticoError as exc:
        ensemble.settle((), None, None)
        exc.headers.update({**routing.headers_of(call), **headers})
        session.fail(exc)
        raise
    except asyncio.CancelledError:
        ensemble.settle((), None, None)  # the calls that had answered are not known here, only their number
        session.abandon()
        raise
    chosen = result.chosen
    whole = Whole(chosen.body, "application/json")
    return answer(session, whole, _answer_headers(call, ext, limit_headers, headers))


async def _run(ensemble: _Ensemble, model: ModelInfo, routes: list[RouteInfo]) -> EnsembleResult:
    if model.ensemble == "cascade":
        return await cascade(routes, ensemble.whole, ensemble.call.body)
    if model.ensemble == "vote":
        return await vote(routes, ensemble.whole, settings.PORTICO_VOTE_N, ensemble.call.body)
    return await hedge(routes, ensemble.whole, routing.first_byte_times, first_byte_timeout_default=_hedge_after(model))


def _hedge_after(model: ModelInfo) -> float:
    """How long the first deployment has before the second is asked, until its own p95 is known."""
    return model.first_byte_timeout or settings.PORTICO_HEDGE_AFTER


async def _hedged_stream(
    ensemble: _Ensemble, routes: list[RouteInfo], ext: Extensions, limit_headers: Mapping[str, str]
) -> EventStream:
    call, session = ensemble.call, ensemble.session
    hedged: HedgedStream[_Leg] = await hedge_stream(
        routes, ensemble.stream, routing.first_byte_times, first_byte_timeout_default=_hedge_after(call.model)
    )
    ensemble.settle(hedged.outcomes, None, hedged.route)
    leg = hedged.stream
    if leg is None:
        failures = [outcome for outcome in hedged.outcomes if not outcome.cancelled]
        error = _error_of(failures[-1].error if failures else None)
        error.headers.update(hedged.headers)
        raise error
    # The winner's first event was counted on its own copy of the call; the relay goes on from there.
    call.outputs = leg.call.outputs
    return routing._stream(session, leg.opened, leg.tried, _answer_headers(call, ext, limit_headers, hedged.headers))


def _answer_headers(
    call: Call, ext: Extensions, limit_headers: Mapping[str, str], ensemble_headers: Mapping[str, str]
) -> dict[str, str]:
    headers = {**limit_headers, **routing.headers_of(call), **ensemble_headers}
    if ext.request_id:
        headers["x-request-id"] = ext.request_id
    return headers


def _error_of(error: BaseException | None) -> PorticoError:
    if isinstance(error, PorticoError):
        return error
    # Not an upstream failure: a bug in an attempt, which gateway.ensembles turned into an outcome.
    logger.error("an ensemble's upstream call failed unexpectedly", exc_info=error)
    return InternalError("The server had an error while processing your request.")
