"""The routing loop: which deployments a call tries, in what order, and when it moves on.

For each public model of the call's chain (the model asked for, then the
request's `models` or the model's own fallbacks, each one the key may use):

    candidates = its deployments that can do the operation, match the `provider` wishes, cost no more than
                 `max_cost_per_token` and are not resting (breaker open, cooling down after a 429)
    order      = strategies.decide(model.strategy, candidates, ...)      skipped when there is one candidate
    for each deployment in order with room under its caps (requests and tokens per minute, requests in flight;
    shared by every process, gateway.routing_caps): one attempt (gateway.relay), until one answers or opens its
    stream

A call that may wait for capacity (its key's queue policy, a queued job's run)
and finds only deployments at their caps waits for a slot on one of them, then
makes another pass (gateway.routing_caps.run_in_turn); any other call gets the
503 at once.

A failure moves on only before the client has seen a byte, and only if its class
is in the model's `retry_on`:

    class           failures                                      then
    connect         refused, reset, dropped before any answer     the next deployment
    timeout         no first byte within `first_byte_timeout`,    the next deployment
                    or the provider's own timeouts
    stall           an answer begun, then silent for the stall    the next deployment
                    timeout (`stall_timeout`, else
                    PORTICO_STREAM_STALL_TIMEOUT)
    5xx             an upstream 5xx (and a refused credential)    the next deployment
    429             an upstream 429                               the next deployment; with Retry-After the
                                                                  deployment rests until then
    context_length  the prompt is too long for the window         the next model with a larger window
    content_filter  the upstream's content filter refused         the next deployment

Any other failure (a 400 the client caused) goes to the client at once, as do
the failures of the last deployment tried. After the first byte a failure ends
the stream with an error event, unless the model has mid-stream recovery: then
the stream carries on with the model's next deployments (gateway.routing_resume,
gateway.streaming), for the failures of the same classes. Each deployment is
tried once per call, so there is no backoff to wait: retries go elsewhere. The
whole chain runs within the call's deadline (`x-portico-timeout`, else the
model's `timeout`), a stream's continuations included. An upload (gateway.routing_uploads)
goes through the same loop, its body re-sent from a spool on each attempt.

Every attempt's end goes to the process's `DeploymentStats`, to the breakers and,
on a capped deployment, to its caps. The call's limits and budget are charged
once, by its session (gateway.accounting.CallSession), whatever the number of attempts.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass

from django.http import HttpResponse

from billing.facade import BillingSnapshot
from gateway import routing_ensembles, routing_resume
from gateway.accounting import Call, CallSession, prompt_estimate
from gateway.breakers import Breakers, breakers_for_settings
from gateway.ensembles import FirstByteTimes
from gateway.errors import PorticoError, UpstreamError, UpstreamTimeout, UpstreamUnreachable
from gateway.extensions import Extensions
from gateway.intake import capable, kind_serves
from gateway.queueing.admission import may_queue
from gateway.recovery import STALL, Continuation
from gateway.relay import Opened, Whole, answer, attempt, put_headers
from gateway.routing_caps import CapHold, CapWait, cap_acquire, run_in_turn
from gateway.routing_outcome import Trail, deadline_passed, headers_of, nothing_served
from gateway.snapshot import Snapshot
from gateway.sse import EventStream
from gateway.strategies import DeploymentStats, decide
from gateway.streaming import Resume, relay_stream
from providers.facade import ModelInfo, RouteInfo

# This process's view of each deployment's load and latency (the strategies read it).
stats = DeploymentStats()
# Each deployment's recent times to first byte, from every attempt: when a hedged call asks a second deployment.
first_byte_times = FirstByteTimes()
_rng = random.Random()
_CONTENT_FILTER_CODES = frozenset({"content_filter", "content_policy_violation"})
# Failure classes that count against a deployment's breaker; the others say nothing of its health.
_DEPLOYMENT_FAULTS = frozenset({"connect", "timeout", "5xx", "429"})


def failure_class(error: PorticoError) -> str | None:
    """The retry class of a failed attempt (see the table above); None for a failure the client caused."""
    if isinstance(error, UpstreamError) and error.reason == STALL:
        return "stall"
    if isinstance(error, UpstreamTimeout):
        return "timeout"
    if isinstance(error, UpstreamUnreachable):
        return "connect"
    if not isinstance(error, UpstreamError):
        return None
    if error.code == "context_length_exceeded":
        return "context_length"
    if error.code in _CONTENT_FILTER_CODES:
        return "content_filter"
    if error.status == 429:
        return "429"
    return "5xx" if error.status >= 500 else None


class Attempt:
    """One try on one deployment; its end is reported once, to the stats, the breakers and its caps."""

    __slots__ = ("breakers", "ended", "first_byte", "hold", "route", "started")

    def __init__(self, route: RouteInfo, breakers: Breakers, hold: CapHold | None = None) -> None:
        self.route = route
        self.breakers = breakers
        self.hold = hold  # what it reserved of its deployment's caps; None on an uncapped deployment
        self.started = time.monotonic()
        self.first_byte: float | None = None
        self.ended = False
        if route.observed:
            stats.started(route.id)

    def end(self, ok: bool, reason: str = "") -> None:
        if self.ended:
            return
        self.ended = True
        latency = time.monotonic() - self.started
        ttfb = None if self.first_byte is None else self.first_byte - self.started
        if self.route.observed:
            stats.finished(self.route.id, latency=latency, ttfb=ttfb, ok=ok)
            if ok and ttfb is not None:
                first_byte_times.observe(self.route.id, ttfb)
        self.breakers.record(self.route.id, self.route.name, ok=ok, latency=latency, ttfb=ttfb, reason=reason)
        if self.hold is not None:
            self.hold.release()

    def drop(self) -> None:
        """Abandoned (the client left, the deadline passed): its load is released, and the breaker learns nothing."""
        if not self.ended:
            self.ended = True
            if self.route.observed:
                stats.finished(self.route.id, latency=time.monotonic() - self.started, ttfb=None, ok=True)
            if self.hold is not None:
                self.hold.release()


def _price(billing: BillingSnapshot, route: RouteInfo, at: float) -> tuple[float, float] | None:
    """The deployment's provider cost per token (input, output), if known."""
    schedule = billing.costs.get(route.id)
    price = schedule.at(at) if schedule is not None else None
    if price is None:
        return None
    return float(price.input) / 1_000_000, float(price.output) / 1_000_000


def _candidates(
    call: Call, model: ModelInfo, billing: BillingSnapshot, ext: Extensions, trail: Trail, breakers: Breakers
) -> list[RouteInfo]:
    wish, ceiling = ext.provider, ext.max_cost_per_token
    routes = [route for route in model.routes if kind_serves(route, call.operation)]
    if wish is not None:
        routes = [route for route in routes if wish.admits(route.provider.name)]
        if not routes:
            trail.excluded = trail.excluded or "provider"
            return routes
    if ceiling is not None:
        routes = [route for route in routes if _within(_price(billing, route, call.started_at), ceiling)]
        if not routes:
            trail.excluded = trail.excluded or "max_cost_per_token"
            return routes
    return [route for route in routes if not breakers.is_open(route.id)]


def _within(price: tuple[float, float] | None, ceiling: float) -> bool:
    return price is not None and max(price) <= ceiling


def _order(
    call: Call, model: ModelInfo, routes: list[RouteInfo], billing: BillingSnapshot, ext: Extensions
) -> tuple[list[RouteInfo], str]:
    if len(routes) == 1:
        return routes, f"strategy={model.strategy}; only deployment"

    def cost(route: RouteInfo) -> float | None:
        price = _price(billing, route, call.started_at)
        return None if price is None else sum(price) / 2

    decision = decide(model.strategy, routes, stats, cost=cost, rng=_rng)
    order = list(decision.order)
    if ext.provider is not None and ext.provider.order:
        # The client's order goes first, stable: among the rest, the strategy's order stands.
        rank = {name: index for index, name in enumerate(ext.provider.order)}
        order.sort(key=lambda route: rank.get(route.provider.name, len(rank)))
    return order, decision.reason


def _chain(call: Call, snapshot: Snapshot, ext: Extensions) -> Iterable[ModelInfo]:
    """The call's model, then the fallbacks the key may use; one it may not is skipped without a word."""
    if ext.models is None and not call.model.fallbacks:
        return (call.model,)  # the common case, without a generator's frame
    return _with_fallbacks(call, snapshot, ext)


def _with_fallbacks(call: Call, snapshot: Snapshot, ext: Extensions) -> Iterator[ModelInfo]:
    yield call.model
    seen = {call.model.public_id}
    for name in ext.models if ext.models is not None else call.model.fallbacks:
        model = snapshot.models.get(name)
        if name in seen or model is None or not call.grant.may_use(name):
            continue
        seen.add(name)
        if capable(model, call.operation, call.body):
            yield model


def _fits(call: Call, model: ModelInfo, trail: Trail) -> bool:
    window = model.context_window
    if trail.min_window and (window is None or window <= trail.min_window):
        return False
    if window is None or call.operation not in ("chat", "completions"):
        return True
    if trail.need is None:
        cap = call.body.get("max_completion_tokens") or call.body.get("max_tokens") or 0
        trail.need = prompt_estimate(call) + (cap if isinstance(cap, int) else 0)
    return trail.need <= window


Served = tuple[Whole | Opened, Attempt]
# What one attempt sends: gateway.relay.attempt, unless the call is an upload (gateway.routing_uploads).
Send = Callable[..., Awaitable[Whole | Opened]]


async def _try(
    call: Call,
    route: RouteInfo,
    breakers: Breakers,
    first_byte: float | None,
    *,
    stall: float | None = None,
    continuation: Continuation | None = None,
    hold: CapHold | None = None,
    send: Send | None = None,
) -> Served:
    """One attempt; a whole answer's outcome is reported at once, a stream's at its end. Raises its error.

    `hold` is what the attempt reserved of its deployment's caps: from here on, its end releases it.
    """
    call.attempts += 1
    call.route = route
    tried = Attempt(route, breakers, hold)
    try:
        result = await (send or attempt)(call, route, first_byte=first_byte, stall=stall, continuation=continuation)
    except PorticoError as exc:
        kind = failure_class(exc)
        rest = exc.cool_down if isinstance(exc, UpstreamError) else 0.0
        if rest > 0:
            tried.drop()
            breakers.cool_down(route.id, route.name, rest, "upstream rate limit (Retry-After or spent quota)")
        else:
            tried.end(kind not in _DEPLOYMENT_FAULTS, exc.classification)
        raise
    except BaseException:
        tried.drop()
        raise
    tried.first_byte = time.monotonic()
    if hold is not None:
        hold.answered(result)
    if result.cool_down > 0:
        breakers.cool_down(route.id, route.name, result.cool_down, "x-ratelimit-remaining-requests: 0")
    if isinstance(result, Whole):
        tried.end(True)
    return result, tried


async def _hold(route: RouteInfo, call: Call, trail: Trail, waits: CapWait | None) -> CapHold | None:
    """A capped deployment's reservation for one attempt (the one a waiting call reserved, if on this deployment);
    None, noted in the trail, if it is skipped."""
    if waits is not None and (reserved := waits.take(route)) is not None:
        return reserved
    try:
        held = await cap_acquire(route=route, call=call)
    except PorticoError as exc:  # the limiter cannot tell: the deployment is skipped (see gateway.routing_caps)
        trail.error = trail.error or exc
        return None
    if isinstance(held, CapHold):
        return held
    trail.full = held.retry_after if trail.full is None else min(trail.full, held.retry_after)
    if waits is not None:
        waits.skipped(route, held)
    return None


async def _run(
    call: Call,
    snapshot: Snapshot,
    ext: Extensions,
    trail: Trail,
    send: Send | None = None,
    waits: CapWait | None = None,
) -> Served:
    breakers = _breakers()
    for model in _chain(call, snapshot, ext):
        if not _fits(call, model, trail):
            continue
        routes = _candidates(call, model, snapshot.billing, ext, trail, breakers)
        if not routes:
            continue
        order, reason = _order(call, model, routes, snapshot.billing, ext)
        if waits is not None:
            order = waits.first(order)
        call.routing = reason if model is call.model else f"{reason}; fallback model {model.public_id}"
        for index, route in enumerate(order):
            if not breakers.allow(route.id) and not await breakers.acquire_probe(route.id):
                continue
            hold = None
            # Three attribute reads are all an uncapped deployment pays (routing_caps.capped, inlined).
            if (
                route.max_requests_per_minute is not None
                or route.max_tokens_per_minute is not None
                or route.max_in_flight is not None
            ):
                hold = await _hold(route, call, trail, waits)
                if hold is None:
                    continue
            try:
                served = await _try(
                    call, route, breakers, model.first_byte_timeout, stall=model.stall_timeout, hold=hold, send=send
                )
                trail.served, trail.rest = model, order[index + 1 :]
                return served
            except PorticoError as exc:
                kind = failure_class(exc)
                trail.error = exc
                if kind is None or kind not in model.retry_on:
                    raise
                if kind == "context_length":
                    trail.min_window = max(trail.min_window, model.context_window or 0) or 1
                    break
    raise nothing_served(call, trail)


@contextlib.asynccontextmanager
async def _deadline(call: Call, seconds: float | None) -> AsyncIterator[None]:
    """The call's deadline around an ensemble's calls."""
    if seconds is None:
        yield
        return
    try:
        async with asyncio.timeout(seconds):
            yield
    except TimeoutError:
        raise deadline_passed(call, seconds) from None


async def _run_within(
    call: Call,
    snapshot: Snapshot,
    ext: Extensions,
    trail: Trail,
    seconds: float | None,
    send: Send | None = None,
    waits: CapWait | None = None,
) -> Served:
    """The loop within the call's deadline, if it has one."""
    if seconds is None:
        return await _run(call, snapshot, ext, trail, send, waits)
    try:
        async with asyncio.timeout(seconds):
            return await _run(call, snapshot, ext, trail, send, waits)
    except TimeoutError:
        raise deadline_passed(call, seconds) from None


@dataclass(slots=True)
class Routed:
    """A call admitted and served by one deployment: what came back, and what the answer tells of it."""

    session: CallSession
    result: Whole | Opened
    tried: Attempt
    headers: dict[str, str]  # the limits', the routing's and the client's own request id
    trail: Trail
    seconds: float | None  # the call's deadline, if it has one (a stream's resumption keeps to it)

    def resume(self) -> routing_resume.StreamResume | None:
        return routing_resume.resume_for(self.session.call, self.trail, self.seconds)


async def route(call: Call, snapshot: Snapshot, ext: Extensions, send: Send | None = None) -> Routed:
    """Admit the call once and route it within its deadline, waiting in line where its key's policy allows.

    Every surface answers from here in its own shape: OpenAI's (`serve`), Anthropic's and the Responses API's.
    A refusal or failure is raised with the routing headers, the call finished as failed.
    """
    session = CallSession(call, snapshot.billing)
    limit_headers = await session.admit()
    try:
        trail, seconds = Trail(), ext.timeout or call.model.timeout
        if may_queue(call):  # it may wait for its model's deployments too
            (result, tried), waited = await run_in_turn(
                session, trail, lambda waits: _run_within(call, snapshot, ext, trail, seconds, send, waits)
            )
            limit_headers = {**limit_headers, **waited}
        elif seconds is None:  # no timer to arm, and one coroutine less: the common case
            result, tried = await _run(call, snapshot, ext, trail, send)
        else:
            result, tried = await _run_within(call, snapshot, ext, trail, seconds, send)
    except PorticoError as exc:
        exc.headers.update(headers_of(call))
        session.fail(exc)
        raise
    except asyncio.CancelledError:
        session.abandon()
        raise
    headers = {**limit_headers, **headers_of(call)}
    if ext.request_id:
        headers["x-request-id"] = ext.request_id
    return Routed(session, result, tried, headers, trail, seconds)


async def serve(call: Call, snapshot: Snapshot, ext: Extensions) -> HttpResponse | EventStream:
    """Admit the call once, route it, and answer: whole, or as a stream that finishes the call at its end."""
    if call.model.ensemble and (routes := routing_ensembles.ensemble_routes(call, snapshot, ext)):
        return await routing_ensembles.serve_ensemble(call, snapshot, routes, ext)
    routed = await route(call, snapshot, ext)
    if isinstance(routed.result, Whole):
        return answer(routed.session, routed.result, routed.headers)
    return _stream(routed.session, routed.result, routed.tried, routed.headers, routed.resume())


def _stream(
    session: CallSession,
    opened: Opened,
    tried: Attempt,
    headers: Mapping[str, str],
    resume: Resume | None = None,
) -> EventStream:
    async def release() -> None:
        # Runs after the events' generator is closed; a stream that never began has not reported yet.
        await opened.aclose()
        tried.drop()
        await session.release()

    stream = EventStream(relay_stream(session, opened, tried.end, resume), release=release)
    put_headers(stream, headers)
    return stream


def _breakers() -> Breakers:
    return breakers_for_settings()
