"""A call's life as billing sees it: admitted before the upstream call, finished (settled, recorded) once after it.

Billing does the work (billing.metering); this module describes the call to it
in plain values and turns a refusal into the error tree: a rate limit or a
spent budget is a 429, an unreachable limiter a 503, a limiter that failed on
this one request a 500 that tells the client nothing of why.
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
from providers.facade import RouteInfo
from tenants.facade import KeyGrant

# The process's limiter and ledger spool, started and stopped by gateway.asgi.
accounts = Meter()


class Call:
    """One request from admission to its ledger line."""

    __slots__ = (
        "admission",
        "body",
        "client_request_id",
        "disconnected",
        "error_type",
        "finished",
        "first_token",
        "grant",
        "operation",
        "outputs",
        "prompt_estimate",
        "request_id",
        "route",
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
        route: RouteInfo,
        operation: Operation,
        body: dict[str, Any],
    ) -> None:
        self.request_id = request_id
        self.client_request_id = client_request_id
        self.grant = grant
        self.route = route
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
    )
    return accounts.finish(result, billing)
