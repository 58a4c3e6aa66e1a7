"""A call's life as billing sees it: admitted before the upstream call, finished (settled, recorded) once after it.

Billing does the work (billing.metering); this module describes the call to it
in plain values and turns a refusal into the error tree: a rate limit or a
spent budget is a 429, an unreachable limiter a 503, a limiter that failed on
this one request a 500 that tells the client nothing of why.

`CallSession` is the one owner of a call's end. However many deployments the
call tries, its limits and budget are reserved once (`admit`, before the first
attempt) and settled once (`close`, with the usage of the answer that was
relayed), and its ledger line names the deployment that served and the number
of attempts. Every exit (answered, failed, streamed to the end, abandoned by its
client) goes through the session; `close` makes the second and later calls no-ops.

A call whose key has a queue policy, or a queued job's run, is admitted by
gateway.queueing instead: it may wait its turn for capacity, or become a job.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Mapping
from decimal import Decimal
from typing import Any

from django.conf import settings

from billing import metering
from billing.facade import BillingSnapshot
from billing.metering import UNLIMITED, Admission, Meter, MeterAsk, MeterResult, Usage
from gateway.errors import InternalError, LimitsUnavailable, NoDeployment, PorticoError, QuotaExceeded, RateLimited
from gateway.observability.clock import current as current_clock
from gateway.observability.handoff import hand_off
from gateway.queueing.admission import Requeue
from gateway.queueing.admission import admit as admit_in_turn
from gateway.queueing.lines import lines as queue_lines
from gateway.queueing.wish import QueueWish
from providers.adapters.base import Operation
from providers.facade import ModelInfo, RouteInfo
from tenants.facade import KeyGrant

# The process's limiter and ledger spool, started and stopped by gateway.asgi.
accounts = Meter()


def _recorded(row: dict[str, Any]) -> None:
    hand_off.call(row, current_clock())


if settings.PORTICO_METRICS or settings.PORTICO_REQUEST_LOG:
    accounts.recorded = _recorded  # every finished call to the metrics and the request log (gateway.observability)


class AtCapacity(NoDeployment):
    """Every deployment that could serve the call was at its caps (gateway.routing_caps.at_capacity)."""


# Refusals that a batch line waits out rather than fails on: its call's limits, and its deployments' caps.
BATCH_WAITS = (RateLimited, QuotaExceeded, LimitsUnavailable, AtCapacity)


class Call:
    """One request from admission to its ledger line."""

    __slots__ = (
        "admission",
        "attempts",
        "batch_id",
        "body",
        "client_request_id",
        "disconnected",
        "earlier",
        "error_type",
        "finished",
        "first_token",
        "grant",
        "model",
        "operation",
        "outputs",
        "overhead_ms",
        "prompt_estimate",
        "queue",
        "queue_ms",
        "queued_at",
        "request_id",
        "route",
        "routing",
        "started",
        "started_at",
        "status",
        "streamed",
        "upstream_id",
        "usage",
    )

    def __init__(
        self,
        *,
        request_id: str,
        client_request_id: str,
        grant: KeyGrant,
        model: ModelInfo,
        operation: Operation,
        body: dict[str, Any],
        route: RouteInfo | None = None,
    ) -> None:
        self.request_id = request_id
        self.client_request_id = client_request_id
        self.grant = grant
        self.model = model
        # The deployment tried last: the one that served, once an answer came. Until the first attempt, the model's
        # first (its upstream model picks the encoding the prompt is counted with).
        self.route = route or model.routes[0]
        self.attempts = 0  # upstream attempts made
        self.routing = ""  # why the deployment that served was chosen (x-portico-routing)
        self.operation = operation
        self.body = body
        self.streamed = bool(body.get("stream"))
        self.started_at = time.time()
        self.started = time.monotonic()
        self.first_token: float | None = None
        self.status = 200
        self.error_type = ""
        self.usage: dict[str, Any] | None = None
        self.outputs: list[bytes] = []  # a stream's chunks, counted only if the upstream reports no usage
        self.prompt_estimate: int | None = None
        self.admission: Admission | None = None  # what the limiter reserved, settled when the call finishes
        self.disconnected = False
        self.finished = False
        # Usage inside `usage` that other deployments served, by deployment id (see MeterResult.earlier).
        self.earlier: tuple[tuple[int, Usage], ...] = ()
        self.batch_id: str | None = None  # set by the batch runner: the batch this call is a line of
        self.queue: QueueWish | None = None  # what the request asked of the queue, or a queued job's run
        self.queued_at: float | None = None  # monotonic time it began to wait for capacity, if it did
        self.queue_ms: int | None = None  # how long it waited, once admitted
        self.upstream_id = ""  # the upstream's id for its answer, where Portico gave the client another
        self.overhead_ms: int | None = None  # time spent in Portico, not waiting on the upstream
        clock = current_clock()
        if clock is not None and clock.call is None:
            clock.call = self  # the request's call: what it waited in line is no overhead of Portico's

    def fail(self, error: PorticoError) -> None:
        self.status = error.status
        self.error_type = error.classification


def _ask(call: Call) -> MeterAsk:
    grant, route = call.grant, call.route
    return MeterAsk(
        request_id=call.request_id,
        client_request_id=call.client_request_id,
        tenant_id=grant.tenant_id,
        key_id=grant.key_id,
        key_prefix=grant.prefix,
        model=route.public_id,
        upstream_model=route.upstream_model,
        provider=route.provider.name,
        operation=call.operation,
        body=call.body,
        streamed=call.streamed,
        started_at=call.started_at,
        max_output_tokens=route.max_output_tokens,
        prompt_tokens=call.prompt_estimate,
        batch_id=call.batch_id,
    )


async def admit(call: Call, billing: BillingSnapshot) -> Mapping[str, str]:
    """Reserve the request's share of its limits and budgets; the rate-limit headers, or a 429/503/500."""
    admission = await admission_for(call, billing)
    if admission.refused is not None:
        hand_off.refusal(admission.refused, call.grant.tenant_slug)
        raise refusal(admission)
    return admission.headers


async def admission_for(call: Call, billing: BillingSnapshot) -> Admission:
    """One try at the call's limits and budgets: refused (nothing reserved), or admitted and the call's to settle."""
    if not billing.applies_to(call.grant.key_id, call.grant.tenant_id):
        return UNLIMITED  # most keys: no limiter, and no ask built
    admission = await accounts.admit(_ask(call), billing)
    if admission.prompt_tokens is not None:
        call.prompt_estimate = admission.prompt_tokens
    if admission.refused is None:
        call.admission = admission
    return admission


def refusal(admission: Admission) -> PorticoError:
    """The error a refused admission is answered with."""
    if admission.refused == "unavailable":
        return LimitsUnavailable("The rate limiter is unavailable; please retry shortly.")
    if admission.refused == "failed":
        return InternalError("The server had an error while processing your request.")
    headers = {**admission.headers, "retry-after": str(max(1, math.ceil(admission.retry_after)))}
    if admission.refused == "budget":
        return QuotaExceeded(admission.message, headers=headers)
    # OpenAI's types are "requests" and "tokens"; a concurrency refusal (its message says so) counts as requests.
    kind = "tokens" if admission.refused == "tokens" else "requests"
    return RateLimited(admission.message, type=kind, headers=headers)


def counted_usage(call: Call) -> Usage:
    """Tokens counted by Portico when the upstream reported none (a dropped stream, a client gone)."""
    usage = metering.counted_usage(_ask(call), call.outputs)
    call.prompt_estimate = usage.prompt_tokens
    return usage


def prompt_estimate(call: Call) -> int:
    """The prompt's token count: the one admission made, or Portico's own count, made once."""
    if call.prompt_estimate is None:
        call.prompt_estimate = metering.prompt_tokens(_ask(call))
    return call.prompt_estimate


def finish(call: Call, billing: BillingSnapshot) -> Decimal:
    """Settle and record the call, once; returns its cost."""
    if call.finished:
        return Decimal(0)
    call.finished = True
    first_token = call.first_token
    clock = current_clock()
    if clock is not None and clock.call is call:
        call.overhead_ms = clock.freeze()  # fixed now, or at a stream's first byte, whichever came first
    result = MeterResult(
        ask=_ask(call),
        admission=call.admission,
        status=call.status,
        error_type=call.error_type,
        usage=call.usage,
        outputs=call.outputs,
        client_disconnected=call.disconnected,
        latency_ms=int((time.monotonic() - call.started) * 1000),
        first_token_ms=int((first_token - call.started) * 1000) if first_token is not None else None,
        deployment_id=call.route.id if call.attempts else None,
        deployment=call.route.name if call.attempts else "",
        attempts=call.attempts,
        earlier=call.earlier,
        queue_ms=_queue_ms(call),
        upstream_id=call.upstream_id,
        overhead_ms=call.overhead_ms,
    )
    cost = accounts.finish(result, billing)
    queue_lines.freed()  # its limits and deployment slot are being given back: the next waiter may take them
    return cost


def _queue_ms(call: Call) -> int | None:
    if call.queue_ms is None and call.queued_at is not None:  # it left (or failed) while waiting
        return int((time.monotonic() - call.queued_at) * 1000)
    return call.queue_ms


class CallSession:
    """One call from admission to its ledger line: the only code that finishes a call."""

    __slots__ = ("billing", "call")

    def __init__(self, call: Call, billing: BillingSnapshot) -> None:
        self.call = call
        self.billing = billing

    async def admit(self) -> Mapping[str, str]:
        """Reserve the call's limits and budget, once for all its attempts; a refusal closes the session."""
        call = self.call
        try:
            if call.queue is None and (call.batch_id is not None or call.grant.queue.mode == "off"):
                return await admit(call, self.billing)
            return await admit_in_turn(self)
        except Requeue:
            self.forgo()
            raise
        except BATCH_WAITS as exc:
            if self.call.batch_id is None:
                self.fail(exc)
            else:
                # Nothing was reserved or sent: the batch line waits and is tried again, and only its final
                # outcome becomes a ledger row (gateway.batch_runner).
                self.call.finished = True
            raise
        except PorticoError as exc:
            self.fail(exc)
            raise
        except asyncio.CancelledError:
            if call.queued_at is not None:
                self.abandon()  # its client left while it waited: what it held goes back, and its row says so
            elif call.admission is not None:
                self.forgo()  # admitted, and its client left before the call began: nothing to record
            raise

    # What gateway.queueing.admission needs of a session.

    async def attempt(self) -> Admission:
        return await admission_for(self.call, self.billing)

    def refusal(self, admission: Admission) -> PorticoError:
        assert admission.refused is not None
        hand_off.refusal(admission.refused, self.call.grant.tenant_slug)
        return refusal(admission)

    def give_back(self, admission: Admission) -> None:
        if self.call.admission is admission:
            self.call.admission = None
        if admission.ticket is not None:
            accounts.later(accounts.limiter.settle(admission.ticket, tokens=0, cost=0))

    def forgo(self) -> None:
        """End the call without a ledger row, giving back what it reserved: it became a job, or it is a job's run
        that found no room (the job's last run writes its row)."""
        admission, self.call.admission = self.call.admission, None
        if admission is not None:
            self.give_back(admission)
        self.call.finished = True

    def fail(self, error: PorticoError) -> None:
        if self.call.batch_id is not None and isinstance(error, AtCapacity):
            # The line is tried again once a deployment has room: its limits go back, and only its final
            # outcome becomes its ledger row (gateway.batch_runner).
            self.forgo()
            return
        self.call.fail(error)
        self.close()

    def abandon(self) -> None:
        """The client left before the answer was complete: its reservations are released all the same."""
        self.call.disconnected = True
        self.close()

    def close(self) -> Decimal:
        """Settle and record the call; its cost the first time, zero after."""
        return finish(self.call, self.billing)

    async def release(self) -> None:
        """An EventStream's release: a stream dropped before its end was abandoned by its client."""
        if not self.call.finished:
            self.abandon()
