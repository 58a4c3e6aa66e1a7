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
"""

from __future__ import annotations

import math
import time
from collections.abc import Mapping
from decimal import Decimal
from typing import Any

from billing import metering
from billing.facade import BillingSnapshot
from billing.metering import UNLIMITED, Admission, Meter, MeterAsk, MeterResult, Usage
from gateway.errors import InternalError, LimitsUnavailable, PorticoError, QuotaExceeded, RateLimited
from providers.adapters.base import Operation
from providers.facade import ModelInfo, RouteInfo
from tenants.facade import KeyGrant

# The process's limiter and ledger spool, started and stopped by gateway.asgi.
accounts = Meter()


class Call:
    """One request from admission to its ledger line."""

    __slots__ = (
        "admission",
        "attempts",
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
        "prompt_estimate",
        "request_id",
        "route",
        "routing",
        "started",
        "started_at",
        "status",
        "streamed",
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
    )


async def admit(call: Call, billing: BillingSnapshot) -> Mapping[str, str]:
    """Reserve the request's share of its limits and budgets; the rate-limit headers, or a 429/503/500."""
    if not billing.applies_to(call.grant.key_id, call.grant.tenant_id):
        return UNLIMITED.headers  # most keys: no limiter, and no ask built
    admission = await accounts.admit(_ask(call), billing)
    if admission.prompt_tokens is not None:
        call.prompt_estimate = admission.prompt_tokens
    if admission.refused is not None:
        raise refusal(admission)
    call.admission = admission
    return admission.headers


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
    )
    return accounts.finish(result, billing)


class CallSession:
    """One call from admission to its ledger line: the only code that finishes a call."""

    __slots__ = ("billing", "call")

    def __init__(self, call: Call, billing: BillingSnapshot) -> None:
        self.call = call
        self.billing = billing

    async def admit(self) -> Mapping[str, str]:
        """Reserve the call's limits and budget, once for all its attempts; a refusal closes the session."""
        try:
            return await admit(self.call, self.billing)
        except PorticoError as exc:
            self.fail(exc)
            raise

    def fail(self, error: PorticoError) -> None:
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
