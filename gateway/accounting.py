"""Per-request accounting: limits and budgets before the upstream call; usage, cost and the ledger after it.

`admit()` asks the limiter once (one Redis round trip) and only for requests
whose key or tenant has a limit or a budget; everyone else pays nothing.
`finish()` runs exactly once per admitted request, on every exit (answered,
failed, streamed to the end, abandoned by its client): it settles the
limiter off the response path and appends the ledger line.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import math
import time
from collections.abc import Coroutine
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import orjson
from django.conf import settings

from billing import limits, tokens
from billing.facade import BillingSnapshot, BudgetInfo, Usage, cost_of, period_bounds, to_nano
from billing.ledger import LedgerWriter, Spool
from gateway.errors import InternalError, LimitsUnavailable, PorticoError, QuotaExceeded, RateLimited
from providers.adapters.base import Operation
from providers.facade import RouteInfo
from tenants.facade import KeyGrant

logger = logging.getLogger(__name__)


class Accounts:
    """The process's limiter and ledger spool, set up at start-up (see gateway.asgi)."""

    def __init__(self) -> None:
        self.limiter: limits.Limiter = limits.LocalLimiter()
        self._spool: Spool | None = None
        self.writer: LedgerWriter | None = None
        self.ledger_on = True
        self._background: set[asyncio.Task[None]] = set()

    @property
    def spool(self) -> Spool:
        # Lines appended before (or without) a running writer wait on disk for the next flush.
        if self._spool is None:
            self._spool = Spool(Path(settings.PORTICO_LEDGER_DIR))
        return self._spool

    def start(self) -> None:
        """Choose the limiter and start the ledger writer thread (the server's start-up calls this)."""
        self.ledger_on = settings.PORTICO_USAGE_LEDGER
        self.limiter = limits.LocalLimiter()
        if settings.REDIS_URL:
            self.limiter = limits.RedisLimiter(
                settings.REDIS_URL,
                prefix=settings.PORTICO_REDIS_PREFIX,
                on_redis_error="closed" if settings.PORTICO_LIMITS_ON_REDIS_ERROR == "closed" else "open",
            )
        if self.writer is None:
            self.writer = LedgerWriter(
                self.spool, interval=settings.PORTICO_LEDGER_FLUSH, batch=settings.PORTICO_LEDGER_BATCH
            )
            self.writer.start()

    async def stop(self) -> None:
        await self.drain()
        await self.limiter.aclose()
        if self.writer is not None:
            writer, self.writer = self.writer, None
            await asyncio.to_thread(writer.stop)

    def later(self, work: Coroutine[Any, Any, None]) -> None:
        task = asyncio.get_running_loop().create_task(work)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def drain(self) -> None:
        if self._background:
            await asyncio.gather(*self._background, return_exceptions=True)


accounts = Accounts()


class Call:
    """One request from admission to its ledger line."""

    __slots__ = (
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
        "ticket",
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
        self.ticket: limits.Ticket | None = None
        self.disconnected = False
        self.finished = False

    def fail(self, error: PorticoError) -> None:
        self.status = error.status
        self.error_type = error.classification


# A budget's worst case for a request that names no output cap on a route that declares none.
UNCAPPED_OUTPUT_RESERVE = 4096


def _output_cap(call: Call, *, fallback: int = 0) -> int:
    body = call.body
    cap = body.get("max_completion_tokens") or body.get("max_tokens") or call.route.max_output_tokens or fallback
    return int(cap) * int(body.get("n") or 1) if isinstance(cap, int) else fallback


def _prompt_tokens(call: Call) -> int:
    if call.prompt_estimate is None:
        model, body = call.route.upstream_model, call.body
        if call.operation == "chat":
            call.prompt_estimate = tokens.count_chat_prompt(body, model=model)
        elif call.operation == "completions":
            call.prompt_estimate = tokens.count_completion_prompt(body.get("prompt") or "", model=model)
        elif call.operation in ("embeddings", "moderations"):
            call.prompt_estimate = tokens.count_embedding_input(body.get("input") or "", model=model)
        else:
            call.prompt_estimate = 0
    return call.prompt_estimate


def _windows(billing: BillingSnapshot, grant: KeyGrant, model: str) -> tuple[limits.Window, ...]:
    windows = []
    for kind, owner, label in (("key", grant.key_id, "this API key"), ("tenant", grant.tenant_id, "your organization")):
        for scope_model in (model, ""):
            rule = billing.limits.get((kind, owner, scope_model))
            if rule is None:
                continue
            scope = f"{kind}:{owner}" + (f":model:{scope_model}" if scope_model else "")
            windows.append(
                limits.Window(
                    scope=scope,
                    label=label + (f" on model {scope_model}" if scope_model else ""),
                    rpm=rule.requests_per_minute,
                    tpm=rule.tokens_per_minute,
                    concurrency=rule.max_concurrent,
                )
            )
    return tuple(windows)


def _budgets(billing: BillingSnapshot, grant: KeyGrant, now: float) -> tuple[limits.Budget, ...]:
    budgets = []
    minute = int(now // 60)
    for kind, owner, label in (("key", grant.key_id, "this API key"), ("tenant", grant.tenant_id, "your organization")):
        info = billing.budgets.get((kind, owner))
        if info is not None:
            budgets.append(_budget(f"{kind}:{owner}", label, info, minute))
    return tuple(budgets)


@functools.lru_cache(maxsize=4096)
def _budget(scope: str, label: str, info: BudgetInfo, minute: int) -> limits.Budget:
    """A budget as the limiter takes it, for one minute: periods change at midnight, never within a minute."""
    now = datetime.fromtimestamp(minute * 60, UTC)
    name, _start, end = period_bounds(info.period, now)
    # The ledger total seeds the shared counter only for the period it was summed in.
    spent = info.spent if name == info.period_name else Decimal(0)
    ttl = int((end - now).total_seconds()) + 86_400 if end is not None else 0
    return limits.Budget(
        scope=scope,
        label=label,
        period=name,
        # An amount past $4.6 billion is as good as none, and Redis's counters stay far from overflowing.
        limit=limits.clamp(to_nano(info.amount), limits.COUNTER_MAX),
        spent=limits.clamp(to_nano(spent), limits.COUNTER_MAX),
        ttl=ttl,
        ends_at=end.timestamp() if end is not None else 0.0,
    )


async def admit(call: Call, billing: BillingSnapshot) -> dict[str, str]:
    """Reserve the request's share of its limits and budgets; the rate-limit headers, or a 429/503."""
    grant = call.grant
    if not billing.applies_to(grant.key_id, grant.tenant_id):
        return {}
    windows = _windows(billing, grant, call.route.public_id)
    budgets = _budgets(billing, grant, call.started_at)
    if not windows and not budgets:
        return {}
    needs_tokens = any(window.tpm for window in windows) or bool(budgets)
    prompt = _prompt_tokens(call) if needs_tokens else 0
    cap = _output_cap(call) if needs_tokens else 0
    cost = 0
    if budgets:
        # Without a cap, TPM settles the real count afterwards (the bucket may go into debt), but a budget must
        # assume some output, or concurrent uncapped requests could overspend it by all their answers.
        output = cap or _output_cap(call, fallback=UNCAPPED_OUTPUT_RESERVE)
        schedule = billing.prices.get(call.route.public_id)
        price = schedule.at(call.started_at) if schedule else None
        cost = to_nano(cost_of(price, Usage(prompt_tokens=prompt, completion_tokens=output)))
    ask = limits.Ask(request_id=call.request_id, windows=windows, budgets=budgets, tokens=prompt + cap, cost=cost)
    try:
        verdict = await accounts.limiter.acquire(ask)
    except limits.LimiterUnavailable:
        raise LimitsUnavailable("The rate limiter is unavailable; please retry shortly.") from None
    except limits.LimiterFailed:
        # Logged by the limiter; the client learns nothing of its keys or arguments.
        raise InternalError("The server had an error while processing your request.") from None
    if not verdict.allowed:
        headers = {**verdict.headers, "retry-after": str(max(1, math.ceil(verdict.retry_after)))}
        if verdict.refused == "budget":
            raise QuotaExceeded(verdict.message, headers=headers)
        # OpenAI's types are "requests" and "tokens"; a concurrency refusal (its message says so) counts as requests.
        kind = "tokens" if verdict.refused == "tokens" else "requests"
        raise RateLimited(verdict.message, type=kind, headers=headers)
    call.ticket = verdict.ticket
    return verdict.headers


def counted_usage(call: Call) -> Usage:
    """Tokens counted by Portico when the upstream reported none (a dropped stream, a client gone)."""
    text = []
    for payload in call.outputs:
        try:
            chunk = orjson.loads(payload)
        except orjson.JSONDecodeError:
            continue
        for choice in chunk.get("choices") or ():
            delta = choice.get("delta") or {}
            text.append(delta.get("content") or choice.get("text") or "")
            for tool_call in delta.get("tool_calls") or ():
                function = tool_call.get("function") or {}
                text.append((function.get("name") or "") + (function.get("arguments") or ""))
    completion = tokens.count_text("".join(text), model=call.route.upstream_model) if text else 0
    return Usage(prompt_tokens=_prompt_tokens(call), completion_tokens=completion)


def finish(call: Call, billing: BillingSnapshot) -> Decimal:
    """Settle and record the call, once; returns its cost."""
    if call.finished:
        return Decimal(0)
    call.finished = True
    usage = Usage.from_openai(call.usage)
    estimated = usage is None and (bool(call.outputs) or call.status < 400)
    if usage is None:
        usage = counted_usage(call) if estimated else Usage()
    schedule = billing.prices.get(call.route.public_id)
    cost = cost_of(schedule.at(call.started_at) if schedule else None, usage)
    if call.ticket is not None:
        accounts.later(accounts.limiter.settle(call.ticket, tokens=usage.total, cost=to_nano(cost)))
    _record(call, usage, cost, estimated=estimated)
    return cost


def _record(call: Call, usage: Usage, cost: Decimal, *, estimated: bool) -> None:
    if not accounts.ledger_on:
        return
    grant, route = call.grant, call.route
    first_token = call.first_token
    accounts.spool.append(
        {
            "request_id": call.request_id,
            "client_request_id": call.client_request_id,
            "created_at": call.started_at,
            "tenant_id": grant.tenant_id,
            "api_key_id": grant.key_id,
            "key_prefix": grant.prefix,
            "operation": call.operation,
            "model": route.public_id,
            "provider": route.provider.name,
            "upstream_model": route.upstream_model,
            "prompt_tokens": usage.prompt_tokens,
            "completion_tokens": usage.completion_tokens,
            "cached_tokens": usage.cached_tokens,
            "reasoning_tokens": usage.reasoning_tokens,
            "tokens_estimated": estimated,
            "cost": str(cost),
            "latency_ms": int((time.monotonic() - call.started) * 1000),
            "first_token_ms": int((first_token - call.started) * 1000) if first_token is not None else None,
            "status": call.status,
            "error_type": call.error_type[:60],
            "streamed": call.streamed,
            "client_disconnected": call.disconnected,
        }
    )
    if accounts.writer is not None:
        accounts.writer.nudge()
