"""Billing's write face for the hot path: admission against limits and budgets, then usage, cost and the ledger.

The gateway describes a call with plain values (`MeterAsk`, `MeterResult`) and
never touches the limiter, the spool or the token counter itself:

    admission = meter.admit(ask, billing)    # one limiter round trip, only for owners with a limit or budget
    ...                                      # the upstream call
    cost = meter.finish(MeterResult(ask, admission, ...), billing)   # settle off the response path, spool the row

`finish` is called once per admitted call, on every exit (answered, failed,
streamed to the end, abandoned by its client); keeping it to once is the
caller's part. Nothing here reads the database: prices, limits and budgets come
from the snapshot (billing.facade).
"""

from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any, Literal

import orjson
from django.conf import settings

from billing import limits, tokens
from billing.facade import BillingSnapshot, BudgetInfo
from billing.ledger import LedgerEntry, LedgerWriter, Spool
from billing.limits import Ask, Limiter, LimiterFailed, LimiterUnavailable, Ticket, Window
from billing.money import PriceInfo, Usage, cost_of, nano_cost_of, to_nano, usd
from billing.periods import period_bounds
from billing.tokens import preload_encodings
from providers.adapters.wire import COUNTED_OPERATIONS, wrote_output

# Usage, usd and preload_encodings are billing.money's and billing.tokens', and the limiter's values billing.limits'
# (the routing loop's deployment caps): the gateway may use billing only through billing.facade and this module
# (pyproject.toml's import contracts), so they are handed out here too.
__all__ = [
    "Ask",
    "Limiter",
    "LimiterFailed",
    "LimiterUnavailable",
    "Ticket",
    "Window",
    "UNCAPPED_OUTPUT_RESERVE",
    "Admission",
    "Meter",
    "MeterAsk",
    "MeterResult",
    "UNLIMITED",
    "Refused",
    "Usage",
    "counted_usage",
    "preload_encodings",
    "prompt_tokens",
    "usd",
]

logger = logging.getLogger(__name__)

# A budget's worst case for a request that names no output cap on a model that declares none.
UNCAPPED_OUTPUT_RESERVE = 4096

# The limiter's refusals, and its two failures: unreachable while failing closed, or failed on this one request.
Refused = Literal["requests", "tokens", "concurrency", "budget", "unavailable", "failed"]


# Built on every call, twice for some: plain slots classes, a microsecond cheaper each than frozen ones
# (a frozen dataclass sets every field through object.__setattr__). Nothing changes them once built.
@dataclass(slots=True)
class MeterAsk:
    """A call as billing needs to know it: who, which model where, what was asked."""

    request_id: str
    client_request_id: str
    tenant_id: int
    key_id: int
    key_prefix: str
    model: str  # the public model id: limits and prices are keyed on it
    upstream_model: str  # picks the token encoding
    provider: str
    operation: str
    body: Mapping[str, Any]
    streamed: bool
    started_at: float  # epoch seconds
    max_output_tokens: int | None = None  # the model's own cap, when the request names none
    prompt_tokens: int | None = None  # the prompt estimate, if already counted
    batch_id: str | None = None  # the batch the call is a line of; None for a live request


@dataclass(slots=True)  # plain slots, as MeterAsk: one per limited call
class Admission:
    """The limiter's answer: the rate-limit headers, and the reservation to settle (or why there is none)."""

    headers: Mapping[str, str] = field(default_factory=dict)
    ticket: limits.Ticket | None = None
    prompt_tokens: int | None = None  # counted for the limits; None when they needed no count
    refused: Refused | None = None
    message: str = ""
    retry_after: float = 0.0


@dataclass(slots=True)
class MeterResult:
    """How a call ended, as the ledger records it."""

    ask: MeterAsk
    admission: Admission | None
    status: int
    error_type: str = ""
    usage: dict[str, Any] | None = None  # the upstream's own usage object, if it sent one
    outputs: Sequence[bytes] = ()  # a stream's chunks, counted only when the upstream reports no usage
    client_disconnected: bool = False
    latency_ms: int = 0
    first_token_ms: int | None = None
    deployment_id: int | None = None  # the deployment that served (or was tried last); None if none was tried
    deployment: str = ""  # its name, provider/upstream model
    attempts: int = 1  # upstream attempts the call made
    # Usage already inside `usage` that other deployments served (a broken stream's first part, an ensemble's
    # other answers), each priced at its own deployment's cost; the rest is the serving deployment's.
    earlier: tuple[tuple[int, Usage], ...] = ()
    queue_ms: int | None = None  # what the call waited for capacity (in line, or as a queued job); None: no wait
    upstream_id: str = ""  # the upstream's own id for its answer, when it differs from the one the client saw
    overhead_ms: int | None = None  # time spent in Portico itself, not waiting on the upstream


# What every owner without a limit or budget gets: one shared value, nothing built per request.
UNLIMITED = Admission()


class Meter:
    """The process's limiter and ledger spool, set up at start-up (the ASGI server's lifespan)."""

    def __init__(self) -> None:
        self.limiter: limits.Limiter = limits.LocalLimiter()
        self._spool: Spool | None = None
        self.writer: LedgerWriter | None = None
        self.ledger_on = True
        self.batch_share = 1.0  # the part of its limits a batch line may fill (PORTICO_BATCH_LIMIT_SHARE, at start)
        # Told of every recorded call, with its ledger row: the gateway's metrics and request log. It must only
        # hand the row over (it runs on the request path), and must not change it.
        self.recorded: Callable[[dict[str, Any]], None] | None = None
        self._background: set[asyncio.Future[Any]] = set()

    @property
    def spool(self) -> Spool:
        # Lines appended before (or without) a running writer wait on disk for the next flush.
        if self._spool is None:
            self._spool = Spool(Path(settings.PORTICO_LEDGER_DIR))
        return self._spool

    def start(self) -> None:
        """Choose the limiter and start the ledger writer thread."""
        self.ledger_on = settings.PORTICO_USAGE_LEDGER
        self.batch_share = settings.PORTICO_BATCH_LIMIT_SHARE
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

    def later(self, work: Awaitable[Any]) -> None:
        """Run `work` (a coroutine, or a future already under way) off the response path; `drain` waits for it."""
        pending = work if isinstance(work, asyncio.Future) else asyncio.ensure_future(work)
        self._background.add(pending)
        pending.add_done_callback(self._background.discard)

    async def drain(self) -> None:
        if self._background:
            await asyncio.gather(*self._background, return_exceptions=True)

    async def admit(self, ask: MeterAsk, billing: BillingSnapshot) -> Admission:
        """Reserve the call's share of its limits and budgets; owners with neither cost nothing."""
        if not billing.applies_to(ask.key_id, ask.tenant_id):
            return UNLIMITED
        windows, counts_tokens = _windows(billing, ask)
        budgets = _budgets(billing, ask)
        if not windows and not budgets:
            return UNLIMITED
        needs_tokens = counts_tokens or bool(budgets)
        prompt = prompt_tokens(ask) if needs_tokens else 0
        cap = _output_cap(ask) if needs_tokens else 0
        cost = 0
        if budgets:
            # Without a cap, TPM settles the real count afterwards (the bucket may go into debt), but a budget must
            # assume some output, or concurrent uncapped requests could overspend it by all their answers.
            output = cap or _output_cap(ask, fallback=UNCAPPED_OUTPUT_RESERVE)
            schedule = billing.prices.get(ask.model)
            price = schedule.at(ask.started_at) if schedule else None
            cost = nano_cost_of(price, Usage(prompt_tokens=prompt, completion_tokens=output))
        counted = prompt if needs_tokens else None
        request = limits.Ask(
            request_id=ask.request_id,
            windows=windows,
            budgets=budgets,
            tokens=prompt + cap,
            cost=cost,
            # On a Redis Cluster every key of the call sits in its tenant's slot, whichever limits it has today.
            shard=f"tenant:{ask.tenant_id}",
            # A batch line fills only part of its key's and tenant's limits, leaving the tenant's live calls the rest.
            share=self.batch_share if ask.batch_id else 1.0,
        )
        try:
            verdict = await self.limiter.acquire(request)
        except limits.LimiterUnavailable:
            return Admission(prompt_tokens=counted, refused="unavailable")
        except limits.LimiterFailed:
            # Logged by the limiter; what it said stays out of the answer.
            return Admission(prompt_tokens=counted, refused="failed")
        if not verdict.allowed:
            return Admission(
                headers=verdict.headers,
                prompt_tokens=counted,
                refused=verdict.refused,
                message=verdict.message,
                retry_after=verdict.retry_after,
            )
        return Admission(headers=verdict.headers, ticket=verdict.ticket, prompt_tokens=counted)

    def finish(self, result: MeterResult, billing: BillingSnapshot) -> Decimal:
        """Settle and record the call; returns its cost."""
        ask = result.ask
        usage = Usage.from_openai(result.usage)
        if usage is not None and ask.operation in COUNTED_OPERATIONS and not _believable(usage, result.outputs):
            usage = None  # counted instead, as if the upstream had reported nothing
        estimated = usage is None and (bool(result.outputs) or result.status < 400)
        if usage is None:
            usage = counted_usage(ask, result.outputs) if estimated else Usage()
        schedule = billing.prices.get(ask.model)
        price = schedule.at(ask.started_at) if schedule else None
        cost = cost_of(price, usage)
        ticket = result.admission.ticket if result.admission is not None else None
        if ticket is not None:
            self.later(self.limiter.settle_soon(ticket, tokens=usage.total, cost=nano_cost_of(price, usage)))
        recorded = self.recorded
        if self.ledger_on or recorded is not None:
            provider_cost = _provider_cost(result, usage, billing)
            row = _entry(result, usage, cost, provider_cost, estimated=estimated).row()
            if self.ledger_on:
                self.spool.append(row)
                if self.writer is not None:
                    self.writer.nudge()
            if recorded is not None:
                recorded(row)
        return cost


def _provider_cost(result: MeterResult, usage: Usage, billing: BillingSnapshot) -> Decimal:
    """What the providers charge for the call: each deployment's own price for the tokens it served."""

    def price(deployment_id: int | None) -> PriceInfo | None:
        schedule = billing.costs.get(deployment_id) if deployment_id is not None else None
        return schedule.at(result.ask.started_at) if schedule else None

    total = Decimal(0)
    served = usage
    for deployment_id, part in result.earlier:
        total += cost_of(price(deployment_id), part)
        served = served.minus(part)
    return total + cost_of(price(result.deployment_id), served)


def _believable(usage: Usage, outputs: Sequence[bytes]) -> bool:
    """False for a report that cannot be right (providers.adapters.wire.usage_is_plausible): no prompt tokens,
    or no completion tokens for an answer with content. The outputs are looked at only in that second case."""
    if usage.prompt_tokens == 0:
        return False
    return usage.completion_tokens > 0 or not any(wrote_output(payload) for payload in outputs)


def prompt_tokens(ask: MeterAsk) -> int:
    """The prompt estimate: the one already counted, or Portico's own count of the request body."""
    if ask.prompt_tokens is not None:
        return ask.prompt_tokens
    model, body = ask.upstream_model, ask.body
    if ask.operation == "chat":
        return tokens.count_chat_prompt(body, model=model)
    if ask.operation == "completions":
        return tokens.count_completion_prompt(body.get("prompt") or "", model=model)
    if ask.operation in ("embeddings", "moderations"):
        return tokens.count_embedding_input(body.get("input") or "", model=model)
    return 0


def counted_usage(ask: MeterAsk, outputs: Sequence[bytes]) -> Usage:
    """Tokens counted by Portico when the upstream reported none, or none that can be right (a dropped stream,
    a client gone, a server that does not count)."""
    text = []
    for payload in outputs:
        try:
            chunk = orjson.loads(payload)
        except orjson.JSONDecodeError:
            continue
        for choice in chunk.get("choices") or ():
            delta = choice.get("delta") or choice.get("message") or {}  # a stream's chunk, or a whole answer
            text.append(delta.get("content") or choice.get("text") or "")
            for tool_call in delta.get("tool_calls") or ():
                function = tool_call.get("function") or {}
                text.append((function.get("name") or "") + (function.get("arguments") or ""))
    completion = tokens.count_text("".join(text), model=ask.upstream_model) if text else 0
    return Usage(prompt_tokens=prompt_tokens(ask), completion_tokens=completion)


def _output_cap(ask: MeterAsk, *, fallback: int = 0) -> int:
    body = ask.body
    cap = body.get("max_completion_tokens") or body.get("max_tokens") or ask.max_output_tokens or fallback
    return int(cap) * int(body.get("n") or 1) if isinstance(cap, int) else fallback


_OWNERS = (("key", "this API key"), ("tenant", "your organization"))


# Derived values kept per snapshot: enough for every owner and model a busy process sees between two snapshots;
# past it the memo starts again rather than grow without bound.
_DERIVED_MAX = 20_000


def _windows(billing: BillingSnapshot, ask: MeterAsk) -> tuple[tuple[limits.Window, ...], bool]:
    """The call's rate-limit windows, and whether any of them counts tokens."""
    memo = ("windows", ask.key_id, ask.tenant_id, ask.model)
    found = billing.derived.get(memo)
    if found is None:
        windows = _windows_of(billing, ask)
        found = (windows, any(window.tpm for window in windows))
        _remember(billing, memo, found)
    return found


def _windows_of(billing: BillingSnapshot, ask: MeterAsk) -> tuple[limits.Window, ...]:
    windows = []
    for (kind, label), owner in zip(_OWNERS, (ask.key_id, ask.tenant_id), strict=True):
        for scope_model in (ask.model, ""):
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


def _budgets(billing: BillingSnapshot, ask: MeterAsk) -> tuple[limits.Budget, ...]:
    minute = int(ask.started_at // 60)
    memo = ("budgets", ask.key_id, ask.tenant_id, minute)
    found = billing.derived.get(memo)
    if found is None:
        found = tuple(
            _budget(f"{kind}:{owner}", label, info, minute)
            for (kind, label), owner in zip(_OWNERS, (ask.key_id, ask.tenant_id), strict=True)
            if (info := billing.budgets.get((kind, owner))) is not None
        )
        _remember(billing, memo, found)
    return found


def _remember(billing: BillingSnapshot, memo: tuple[Any, ...], value: Any) -> None:
    if len(billing.derived) >= _DERIVED_MAX:
        billing.derived.clear()
    billing.derived[memo] = value


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


def _entry(result: MeterResult, usage: Usage, cost: Decimal, provider_cost: Decimal, *, estimated: bool) -> LedgerEntry:
    ask = result.ask
    return LedgerEntry(
        request_id=ask.request_id,
        client_request_id=ask.client_request_id,
        created_at=ask.started_at,
        tenant_id=ask.tenant_id,
        api_key_id=ask.key_id,
        key_prefix=ask.key_prefix,
        operation=ask.operation,
        model=ask.model,
        provider=ask.provider,
        upstream_model=ask.upstream_model,
        deployment_id=result.deployment_id,
        deployment=result.deployment,
        attempts=result.attempts,
        prompt_tokens=usage.prompt_tokens,
        completion_tokens=usage.completion_tokens,
        cached_tokens=usage.cached_tokens,
        reasoning_tokens=usage.reasoning_tokens,
        cache_creation_tokens=usage.cache_creation_tokens,
        tokens_estimated=estimated,
        cost=cost,
        provider_cost=provider_cost,
        latency_ms=result.latency_ms,
        first_token_ms=result.first_token_ms,
        status=result.status,
        error_type=result.error_type[:60],
        streamed=ask.streamed,
        client_disconnected=result.client_disconnected,
        batch_id=ask.batch_id,
        queue_ms=result.queue_ms,
        upstream_id=result.upstream_id[:200],
        overhead_ms=result.overhead_ms,
    )
