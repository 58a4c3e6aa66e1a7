"""The routing loop: which deployments a call tries, in what order, and when it moves on.

For each public model of the call's chain (the model asked for, then the
request's `models` or the model's own fallbacks, each one the key may use):

    candidates = its deployments that can do the operation, match the `provider` wishes, cost no more than
                 `max_cost_per_token`, are not resting (breaker open, cooling down after a 429) and have room
                 under their caps (requests and tokens per minute, requests in flight; this process's count)
    order      = strategies.decide(model.strategy, candidates, ...)      skipped when there is one candidate
    for each deployment in order: one attempt (gateway.relay), until one answers or opens its stream

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
the stream carries on with the model's next deployments (`_Resume`, see
gateway.streaming), for the failures of the same classes. Each deployment is
tried once per call, so there is no backoff to wait: retries go elsewhere. The
whole chain runs within the call's deadline (`x-portico-timeout`, else the model's `timeout`).

Every attempt's end goes to the process's `DeploymentStats` and to the breakers.
The call's limits and budget are charged once, by its session
(gateway.accounting.CallSession), whatever the number of attempts.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import random
import time
from collections import deque
from collections.abc import AsyncIterator, Callable, Iterator, Mapping

from django.conf import settings
from django.http import HttpResponse

from billing.facade import BillingSnapshot
from gateway import routing_ensembles
from gateway.accounting import Call, CallSession, prompt_estimate
from gateway.breakers import Breakers, breakers_for_settings
from gateway.ensembles import FirstByteTimes
from gateway.errors import (
    InvalidRequest,
    NoDeployment,
    PorticoError,
    UpstreamError,
    UpstreamTimeout,
    UpstreamUnreachable,
)
from gateway.extensions import Extensions
from gateway.intake import capable, kind_serves
from gateway.recovery import STALL, Continuation
from gateway.relay import Opened, Report, Whole, answer, attempt, attempt_upload, put_headers
from gateway.snapshot import Snapshot
from gateway.sse import EventStream
from gateway.strategies import DeploymentStats, decide
from gateway.streaming import relay_stream
from gateway.uploads import Upload
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


class DeploymentCaps:
    """Each deployment's requests and tokens per minute and requests in flight, as this process counts them.

    Reserved per attempt, never per call: a call that fails over takes a slot on
    each deployment it tries. Several processes each keep their own count, so a
    cap is per process (divide by the number of workers).
    """

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._minutes: dict[int, deque[tuple[float, int]]] = {}

    def reserve(self, route: RouteInfo, call: Call) -> bool:
        rpm, tpm = route.max_requests_per_minute, route.max_tokens_per_minute
        if route.max_in_flight is not None and stats.in_flight(route.id) >= route.max_in_flight:
            return False
        if rpm is None and tpm is None:
            return True
        now = self._clock()
        minute = self._minutes.setdefault(route.id, deque())
        while minute and minute[0][0] <= now - 60.0:
            minute.popleft()
        if rpm is not None and len(minute) >= rpm:
            return False
        count = _tokens(call) if tpm is not None else 0
        if tpm is not None and sum(used for _, used in minute) + count > tpm:
            return False
        minute.append((now, count))
        return True


caps = DeploymentCaps()


class Attempt:
    """One try on one deployment; its end is reported once, to the stats and the breakers."""

    __slots__ = ("breakers", "ended", "first_byte", "route", "started")

    def __init__(self, route: RouteInfo, breakers: Breakers) -> None:
        self.route = route
        self.breakers = breakers
        self.started = time.monotonic()
        self.first_byte: float | None = None
        self.ended = False
        stats.started(route.id)

    def end(self, ok: bool, reason: str = "") -> None:
        if self.ended:
            return
        self.ended = True
        latency = time.monotonic() - self.started
        ttfb = None if self.first_byte is None else self.first_byte - self.started
        stats.finished(self.route.id, latency=latency, ttfb=ttfb, ok=ok)
        if ok and ttfb is not None:
            first_byte_times.observe(self.route.id, ttfb)
        self.breakers.record(self.route.id, self.route.name, ok=ok, latency=latency, ttfb=ttfb, reason=reason)

    def drop(self) -> None:
        """Abandoned (the client left, the deadline passed): its load is released, and the breaker learns nothing."""
        if not self.ended:
            self.ended = True
            stats.finished(self.route.id, latency=time.monotonic() - self.started, ttfb=None, ok=True)


class _Trail:
    """What the chain has learned so far: the last failure, why nothing was tried, the window it needs."""

    __slots__ = ("error", "excluded", "min_window", "need", "rest", "served")

    def __init__(self) -> None:
        self.error: PorticoError | None = None
        self.served: ModelInfo | None = None  # the model whose deployment answered
        self.rest: list[RouteInfo] = []  # its deployments after that one, in order: where a stream may carry on
        self.excluded = ""  # "provider" or "max_cost_per_token": a wish left the first model nothing
        self.min_window = 0  # after a context_length failure: only larger windows
        self.need: int | None = None  # prompt + requested output, counted when a window must be checked


def _price(billing: BillingSnapshot, route: RouteInfo, at: float) -> tuple[float, float] | None:
    """The deployment's provider cost per token (input, output), if known."""
    schedule = billing.costs.get(route.id)
    price = schedule.at(at) if schedule is not None else None
    if price is None:
        return None
    return float(price.input) / 1_000_000, float(price.output) / 1_000_000


def _candidates(
    call: Call, model: ModelInfo, billing: BillingSnapshot, ext: Extensions, trail: _Trail
) -> list[RouteInfo]:
    wish, ceiling, breakers = ext.provider, ext.max_cost_per_token, _breakers()
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


def _chain(call: Call, snapshot: Snapshot, ext: Extensions) -> Iterator[ModelInfo]:
    """The call's model, then the fallbacks the key may use; one it may not is skipped without a word."""
    yield call.model
    seen = {call.model.public_id}
    for name in ext.models if ext.models is not None else call.model.fallbacks:
        model = snapshot.models.get(name)
        if name in seen or model is None or not call.grant.may_use(name):
            continue
        seen.add(name)
        if capable(model, call.operation, call.body):
            yield model


def _fits(call: Call, model: ModelInfo, trail: _Trail) -> bool:
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


async def _try(
    call: Call,
    route: RouteInfo,
    breakers: Breakers,
    first_byte: float | None,
    *,
    stall: float | None = None,
    continuation: Continuation | None = None,
) -> Served:
    """One attempt; a whole answer's outcome is reported at once, a stream's at its end. Raises its error."""
    call.attempts += 1
    call.route = route
    tried = Attempt(route, breakers)
    try:
        result = await attempt(call, route, first_byte=first_byte, stall=stall, continuation=continuation)
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
    if result.cool_down > 0:
        breakers.cool_down(route.id, route.name, result.cool_down, "x-ratelimit-remaining-requests: 0")
    if isinstance(result, Whole):
        tried.end(True)
    return result, tried


async def _run(call: Call, snapshot: Snapshot, ext: Extensions, trail: _Trail) -> Served:
    breakers = _breakers()
    for model in _chain(call, snapshot, ext):
        if not _fits(call, model, trail):
            continue
        routes = _candidates(call, model, snapshot.billing, ext, trail)
        if not routes:
            continue
        order, reason = _order(call, model, routes, snapshot.billing, ext)
        call.routing = reason if model is call.model else f"{reason}; fallback model {model.public_id}"
        for index, route in enumerate(order):
            if not breakers.allow(route.id) and not await breakers.acquire_probe(route.id):
                continue
            if not caps.reserve(route, call):
                continue
            try:
                served = await _try(call, route, breakers, model.first_byte_timeout, stall=model.stall_timeout)
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
    raise _nothing_served(call, trail)


class _Resume:
    """Mid-stream recovery: a stream that broke after its first byte carries on with the next deployments of
    its model, in the loop's order (breakers and caps respected; the call's limits are not charged again)."""

    __slots__ = ("breakers", "call", "model", "rest")

    def __init__(self, call: Call, model: ModelInfo, rest: list[RouteInfo]) -> None:
        self.call, self.model, self.rest, self.breakers = call, model, rest, _breakers()

    async def __call__(self, error: PorticoError, continuation: Continuation) -> tuple[Opened, Report] | None:
        call, model = self.call, self.model
        if failure_class(error) not in model.retry_on:
            return None
        while self.rest:
            route = self.rest.pop(0)
            if not self.breakers.allow(route.id) and not await self.breakers.acquire_probe(route.id):
                continue
            if not caps.reserve(route, call):
                continue
            first_byte, stall = model.first_byte_timeout, model.stall_timeout
            try:
                opened, tried = await _try(
                    call, route, self.breakers, first_byte, stall=stall, continuation=continuation
                )
            except PorticoError as exc:
                if failure_class(exc) not in model.retry_on:
                    return None
                continue
            if isinstance(opened, Opened):
                return opened, tried.end
        return None


def _resume(call: Call, trail: _Trail) -> _Resume | None:
    """How a stream carries on if it breaks: only for a model with mid-stream recovery and deployments left."""
    model = trail.served
    if model is None or not model.mid_stream_recovery or not trail.rest:
        return None
    return _Resume(call, model, list(trail.rest))


def _tokens(call: Call) -> int:
    cap = call.body.get("max_completion_tokens") or call.body.get("max_tokens") or 0
    return prompt_estimate(call) + (cap if isinstance(cap, int) else 0)


def _nothing_served(call: Call, trail: _Trail) -> PorticoError:
    if trail.error is not None:
        return trail.error
    if trail.excluded == "provider":
        return InvalidRequest(
            f"No deployment of the model `{call.model.public_id}` matches the `provider` preferences.",
            param="provider",
            code="provider_not_available",
        )
    if trail.excluded == "max_cost_per_token":
        return InvalidRequest(
            f"No deployment of the model `{call.model.public_id}` costs at most the `max_cost_per_token` asked.",
            param="max_cost_per_token",
            code="max_cost_exceeded",
        )
    if trail.need is not None and trail.min_window == 0 and call.model.context_window is not None:
        return InvalidRequest(
            f"This model's maximum context length is {call.model.context_window} tokens. However, you requested "
            f"{trail.need} tokens. Please reduce the length of the messages or completion.",
            param="messages",
            code="context_length_exceeded",
        )
    return NoDeployment(call.model.public_id)


def _deadline_passed(call: Call, seconds: float) -> UpstreamTimeout:
    return UpstreamTimeout(
        f"No deployment of the model `{call.model.public_id}` answered within the request's deadline of {seconds:g} s."
    )


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
        raise _deadline_passed(call, seconds) from None


async def _run_within(call: Call, snapshot: Snapshot, ext: Extensions, trail: _Trail, seconds: float) -> Served:
    """The loop within the call's deadline."""
    try:
        async with asyncio.timeout(seconds):
            return await _run(call, snapshot, ext, trail)
    except TimeoutError:
        raise _deadline_passed(call, seconds) from None


def headers_of(call: Call) -> dict[str, str]:
    """What a client learns of how its call was routed (the provider's name only if the operator allows it)."""
    route = call.route
    if not call.attempts:
        return {"x-portico-attempts": "0"}
    hide = settings.PORTICO_HIDE_PROVIDER
    headers = {
        "x-portico-deployment": str(route.id) if hide else _ascii(route.name),
        "x-portico-attempts": str(call.attempts),
        "x-portico-routing": _ascii(call.routing),
    }
    if not hide:
        headers["x-portico-provider"] = _ascii(route.provider.name)
    return headers


@functools.lru_cache(maxsize=4096)
def _ascii(value: str) -> str:
    # Operators name providers freely; a header value must stay printable ASCII. The same few names and reasons
    # come back on every call: cached.
    if value.isascii() and value.isprintable():
        return value
    return "".join(char if " " <= char <= "~" else "?" for char in value)


async def serve(call: Call, snapshot: Snapshot, ext: Extensions) -> HttpResponse | EventStream:
    """Admit the call once, route it, and answer: whole, or as a stream that finishes the call at its end."""
    if call.model.ensemble and (routes := routing_ensembles.ensemble_routes(call, snapshot, ext)):
        return await routing_ensembles.serve_ensemble(call, snapshot, routes, ext)
    session = CallSession(call, snapshot.billing)
    limit_headers = await session.admit()
    try:
        trail, seconds = _Trail(), ext.timeout or call.model.timeout
        if seconds is None:  # no timer to arm, and one coroutine less: the common case
            result, tried = await _run(call, snapshot, ext, trail)
        else:
            result, tried = await _run_within(call, snapshot, ext, trail, seconds)
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
    if isinstance(result, Whole):
        return answer(session, result, headers)
    return _stream(session, result, tried, headers, _resume(call, trail))


def _stream(
    session: CallSession,
    opened: Opened,
    tried: Attempt,
    headers: Mapping[str, str],
    resume: _Resume | None = None,
) -> EventStream:
    async def release() -> None:
        # Runs after the events' generator is closed; a stream that never began has not reported yet.
        await opened.aclose()
        tried.drop()
        await session.release()

    stream = EventStream(relay_stream(session, opened, tried.end, resume), release=release)
    put_headers(stream, headers)
    return stream


async def serve_upload(call: Call, snapshot: Snapshot, upload: Upload) -> HttpResponse:
    """An upload is sent once, as it arrives: to the first deployment the model's strategy picks."""
    session = CallSession(call, snapshot.billing)
    limit_headers = await session.admit()
    trail, breakers = _Trail(), _breakers()
    try:
        routes = _candidates(call, call.model, snapshot.billing, _NO_WISHES, trail)
        if not routes:
            raise NoDeployment(call.model.public_id)
        order, call.routing = _order(call, call.model, routes, snapshot.billing, _NO_WISHES)
        call.attempts, call.route = 1, order[0]
        tried = Attempt(order[0], breakers)
        try:
            whole = await attempt_upload(call, order[0], upload)
        except PorticoError as exc:
            tried.end(failure_class(exc) not in _DEPLOYMENT_FAULTS, exc.classification)
            raise
        except BaseException:
            tried.drop()
            raise
        tried.end(True)
    except PorticoError as exc:
        exc.headers.update(headers_of(call))
        session.fail(exc)
        raise
    except asyncio.CancelledError:
        session.abandon()
        raise
    return answer(session, whole, {**limit_headers, **headers_of(call)})


_NO_WISHES = Extensions()


def _breakers() -> Breakers:
    return breakers_for_settings()
