"""Each deployment's caps, shared by every process: requests and tokens per minute, and requests in flight.

A deployment with any of `max_requests_per_minute`, `max_tokens_per_minute` and
`max_in_flight` takes a reservation for each attempt, never for each call: a call
that fails over holds a slot on each deployment it tries, one after the other.
The reservation is one window of the process's limiter, the one that holds the
tenants' limits (gateway.accounting.accounts.limiter):

    Window(scope="deployment:{id}", rpm=..., tpm=..., concurrency=...), no budgets
    tokens = the prompt estimate + the requested output (counted only under a TPM cap)

With REDIS_URL that limiter keeps its counters in Redis, so a cap holds across
every process and replica (on a Redis Cluster each deployment's counters share
the hash tag `{deployment:<id>}`: docs/redis-cluster.md); without it, in this process (the embedded default,
where one process serves everything). When Redis does not answer,
PORTICO_LIMITS_ON_REDIS_ERROR decides, as it does for the tenants' limits:
"open" (the default) has each process check the caps alone until Redis is back;
"closed" skips every capped deployment, and a client that nothing else answered
gets the 503 `limiter_unavailable`. A limiter that fails on one request (a
script error) skips the deployment too, with a 500 that says nothing of why.

A deployment at its caps is skipped: the loop tries the next. If none answers,
the client gets a 503 `no_deployment_available` whose Retry-After is when the
first of them has room again; unless the call may wait for capacity (its key's
queue policy, or a queued job's run): then it waits in its model's line
(gateway.queueing.admission.wait_for_deployments) until `CapWait.reserve`
takes a slot on one of the deployments found full, and the loop makes another
pass, which uses that slot first (`run_in_turn`). A call that may not wait pays
nothing for this.

`CapHold.release` settles the reservation once, when the attempt ends (every
exit of gateway.routing.Attempt: `end` or `drop`): the in-flight slot is freed,
and the TPM bucket is charged the tokens the upstream reported for this
attempt, or what was reserved when it reported none. The settle is sent off
the response path (`accounts.later`), as the tenants' are.

A deployment without caps never comes here: the loop reads its three fields, nothing more.
"""

from __future__ import annotations

import functools
import itertools
import math
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar

import orjson

from billing.metering import Ask, Limiter, LimiterFailed, LimiterUnavailable, Ticket, Window
from gateway import accounting
from gateway.accounting import AtCapacity, Call, CallSession, prompt_estimate
from gateway.errors import InternalError, LimitsUnavailable, NoDeployment
from gateway.queueing.admission import wait_for_deployments
from gateway.queueing.lines import POLL
from gateway.recovery import Resumed
from gateway.relay import Opened, Whole
from providers.adapters.base import StreamTranslator
from providers.facade import ModelInfo, RouteInfo

if TYPE_CHECKING:  # gateway.routing_outcome imports this module
    from gateway.routing_outcome import Trail

T = TypeVar("T")

# Each capped attempt's own id for the limiter: a call's attempts, and an ensemble's concurrent ones, never share.
_attempt_ids = itertools.count(1)


def capped(route: RouteInfo) -> bool:
    """Whether the deployment has a cap (the loop inlines this test, it runs on every attempt)."""
    return (
        route.max_requests_per_minute is not None
        or route.max_tokens_per_minute is not None
        or route.max_in_flight is not None
    )


class CapHold:
    """What one attempt reserved of its deployment's caps, and how many tokens to settle it with."""

    __slots__ = ("limiter", "reserved", "stream", "ticket", "used")

    def __init__(self, limiter: Limiter, ticket: Ticket, reserved: int) -> None:
        self.limiter = limiter
        self.ticket: Ticket | None = ticket
        # What the attempt asked for: a ticket the limiter kept ready (billing.limits.spares) may hold more.
        self.reserved = reserved
        self.used: int | None = None  # the tokens a whole answer reported
        self.stream: StreamTranslator | None = None  # a stream's translator, which holds its usage at the end

    def answered(self, result: Whole | Opened) -> None:
        """Note where the attempt's usage is found; only a TPM cap needs it (a whole answer is parsed for it)."""
        if self.ticket is None or not self.ticket.token_limits:
            return
        if isinstance(result, Whole):
            self.used = _whole_usage(result.content)
        else:
            self.stream = result.translator

    def release(self) -> None:
        """Settle the reservation, once: the attempt ended or was dropped."""
        ticket, self.ticket = self.ticket, None
        if ticket is None:
            return
        accounting.accounts.later(self.limiter.settle(ticket, tokens=self._tokens(), cost=0))

    def _tokens(self) -> int:
        used = self.used
        stream = self.stream
        if used is None and stream is not None:
            # A continuation's usage adds the broken attempts' tokens; this attempt's own are the upstream's.
            own = stream.inner if isinstance(stream, Resumed) else stream
            used = _total(own.usage)
        return self.reserved if used is None else used


@dataclass(frozen=True, slots=True)
class CapFull:
    """A deployment at its caps: when it has room again."""

    retry_after: float  # seconds; for requests in flight a guess, as they end whenever they end
    in_flight: bool  # refused for its requests in flight: one may end any moment


# Each deployment's window, the same tuple for every attempt while its caps stay the same: the limiter keeps
# what it packs once per windows tuple (billing.limits.redis), which a new tuple per attempt would defeat.
@functools.lru_cache(maxsize=1024)
def _cap_windows(deployment_id: int, rpm: int | None, tpm: int | None, in_flight: int | None) -> tuple[Window]:
    scope, label = f"deployment:{deployment_id}", f"deployment {deployment_id}"
    return (Window(scope=scope, label=label, rpm=rpm, tpm=tpm, concurrency=in_flight),)


async def cap_acquire(*, route: RouteInfo, call: Call) -> CapHold | CapFull:
    """Reserve one attempt on a capped deployment: the hold to release when it ends, or, when the deployment
    is at its caps, when it has room. Raises the error a client gets if the limiter cannot tell."""
    tpm = route.max_tokens_per_minute
    tokens = _requested(call) if tpm is not None else 0
    request_id = f"{call.request_id}:{next(_attempt_ids)}"
    windows = _cap_windows(route.id, route.max_requests_per_minute, tpm, route.max_in_flight)
    ask = Ask(request_id=request_id, windows=windows, budgets=(), tokens=tokens, cost=0)
    limiter = accounting.accounts.limiter
    try:
        verdict = await limiter.acquire(ask)
    except LimiterUnavailable:
        raise LimitsUnavailable("The rate limiter is unavailable; please retry shortly.") from None
    except LimiterFailed:
        raise InternalError("The server had an error while processing your request.") from None
    # Cancelled while the acquire was on the way to Redis (the client left), the limiter gives back what it
    # reserved once the reply comes (billing.limits.redis).
    if verdict.ticket is None:
        return CapFull(verdict.retry_after, in_flight=verdict.refused == "concurrency")
    return CapHold(limiter, verdict.ticket, tokens)


class CapWait:
    """A call that may wait for capacity, between two passes of the routing loop (`run_in_turn`).

    A pass notes each capped deployment it found full (`skipped`). While the call
    waits, `reserve` tries those deployments, in the order the pass met them, and
    keeps the first slot it gets; the next pass takes that deployment first, with
    the slot reserved (`first`, `take`). A slot the pass did not take (the
    deployment's breaker opened meanwhile, the client left) is given back by
    `release`.
    """

    __slots__ = ("full", "hold", "route_id", "soonest")

    def __init__(self) -> None:
        self.full: list[RouteInfo] = []
        self.soonest = math.inf  # seconds until the first of them has room, as the last look found
        self.hold: CapHold | None = None
        self.route_id = 0

    def skipped(self, route: RouteInfo, full: CapFull) -> None:
        self.full.append(route)
        self.soonest = min(self.soonest, full.retry_after)

    def new_pass(self) -> None:
        self.full = []
        self.soonest = math.inf

    async def reserve(self, call: Call) -> float | None:
        """One try on each deployment found full: None once one gave a slot, else the seconds to wait before the
        next try (a slot in flight may free any moment: the next look)."""
        pause, self.soonest = math.inf, math.inf
        for route in self.full:
            held = await cap_acquire(route=route, call=call)
            if isinstance(held, CapHold):
                self.hold, self.route_id = held, route.id
                return None
            self.soonest = min(self.soonest, held.retry_after)
            pause = min(pause, POLL if held.in_flight else held.retry_after)
        return pause

    def first(self, order: list[RouteInfo]) -> list[RouteInfo]:
        """`order` with the deployment the call reserved a slot on first, if it is there."""
        if self.hold is None:
            return order
        reserved = [route for route in order if route.id == self.route_id]
        return reserved + [route for route in order if route.id != self.route_id] if reserved else order

    def take(self, route: RouteInfo) -> CapHold | None:
        """The slot reserved on `route`, now the attempt's to release; None if it has none."""
        if self.hold is None or route.id != self.route_id:
            return None
        hold, self.hold = self.hold, None
        return hold

    def release(self) -> None:
        hold, self.hold = self.hold, None
        if hold is not None:
            hold.release()

    def refusal(self, model: ModelInfo) -> AtCapacity:
        """What the call gets if it waited in vain: the 503 it would have had at once."""
        return at_capacity(model, self.soonest if math.isfinite(self.soonest) else 1.0)


async def run_in_turn(
    session: CallSession, trail: Trail, run: Callable[[CapWait], Awaitable[T]]
) -> tuple[T, Mapping[str, str]]:
    """Passes of the routing loop (`run`) for a call that may wait for capacity: what the last one served, and the
    call's queue time if it waited here.

    A pass that found only deployments at their caps (no failure, no other reason) is followed by a wait in the
    model's line for a slot on one of them, then by another pass. Each pass runs within the call's deadline; the
    wait does not count against it.
    """
    call, waits = session.call, CapWait()
    waited: Mapping[str, str] = {}
    try:
        while True:
            waits.new_pass()
            try:
                return await run(waits), waited
            except NoDeployment:
                if trail.error is not None or not waits.full:
                    raise
            trail.full = None
            waited = await wait_for_deployments(
                session, reserve=lambda: waits.reserve(call), refusal=lambda: waits.refusal(call.model)
            )
    finally:
        waits.release()  # a slot reserved that the last pass did not take


def at_capacity(model: ModelInfo, wait: float) -> AtCapacity:
    """The answer when every deployment left was at its caps: a 503 saying when to come back (a batch line waits
    that long instead, and is tried again)."""
    error = AtCapacity(model.public_id)
    seconds = max(1, math.ceil(wait))
    # NoDeployment's own message is right but vague: this one says why, and when.
    error.message = (
        f"No deployment of the model `{model.public_id}` is available right now: those that could serve the "
        f"request are at their capacity. Please retry in {seconds} s."
    )
    error.headers["retry-after"] = str(seconds)
    return error


def _requested(call: Call) -> int:
    cap = call.body.get("max_completion_tokens") or call.body.get("max_tokens") or 0
    return prompt_estimate(call) + (cap if isinstance(cap, int) else 0)


def _whole_usage(content: bytes) -> int | None:
    if content[:1] != b"{":
        return None
    try:
        body = orjson.loads(content)
    except orjson.JSONDecodeError:
        return None
    return _total(body.get("usage")) if isinstance(body, dict) else None


def _total(usage: Any) -> int | None:
    if not isinstance(usage, dict):
        return None
    total = usage.get("total_tokens")
    if isinstance(total, int):
        return total
    prompt, completion = usage.get("prompt_tokens"), usage.get("completion_tokens")
    return prompt + completion if isinstance(prompt, int) and isinstance(completion, int) else None
