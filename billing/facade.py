"""What the hot path may know about billing: prices, limits and budgets as frozen values.

`load_billing()` queries the database when the snapshot is rebuilt, never per
request. Money here is Decimal USD; the limiter counts integer nano-dollars.
"""

from __future__ import annotations

import bisect
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import ROUND_CEILING, Decimal
from typing import Any

from django.db.models import Sum

from billing.models import Budget, Price, RateLimit, UsageRecord

MILLION = Decimal(1_000_000)
NANO = Decimal("1e9")


@dataclass(frozen=True, slots=True)
class PriceInfo:
    since: float  # epoch seconds
    input: Decimal  # USD per 1M tokens
    output: Decimal
    cached_input: Decimal


@dataclass(frozen=True, slots=True)
class Usage:
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cached_tokens: int = 0
    reasoning_tokens: int = 0

    @classmethod
    def from_openai(cls, usage: dict[str, Any] | None) -> Usage | None:
        """Read OpenAI's usage object (chat, completions and embeddings shapes); None if there is none."""
        if not isinstance(usage, dict):
            return None
        prompt = usage.get("prompt_tokens") or usage.get("input_tokens")
        completion = usage.get("completion_tokens") or usage.get("output_tokens")
        details = usage.get("prompt_tokens_details") or usage.get("input_tokens_details") or {}
        out_details = usage.get("completion_tokens_details") or usage.get("output_tokens_details") or {}
        return cls(
            prompt_tokens=_count(prompt),
            completion_tokens=_count(completion),
            cached_tokens=_count(details.get("cached_tokens")),
            reasoning_tokens=_count(out_details.get("reasoning_tokens")),
        )

    @property
    def total(self) -> int:
        return self.prompt_tokens + self.completion_tokens


# The ledger stores counts in 32-bit integer columns.
_MAX_COUNT = 2**31 - 1


def _count(value: Any) -> int:
    """An upstream's token count as the ledger can store it: what is not a count is 0, a huge one the maximum."""
    try:
        return min(max(int(value or 0), 0), _MAX_COUNT)
    except (TypeError, ValueError, OverflowError):
        return 0


def cost_of(price: PriceInfo | None, usage: Usage) -> Decimal:
    """Exact USD: cached prompt tokens at the cached price, the rest at the input price."""
    if price is None:
        return Decimal(0)
    cached = min(usage.cached_tokens, usage.prompt_tokens)
    amount = (
        (usage.prompt_tokens - cached) * price.input
        + cached * price.cached_input
        + usage.completion_tokens * price.output
    )
    return amount / MILLION


def to_nano(amount: Decimal) -> int:
    """USD as whole nano-dollars, rounded up so budgets never under-count."""
    return int((amount * NANO).to_integral_value(rounding=ROUND_CEILING))


@dataclass(frozen=True, slots=True)
class PriceSchedule:
    """A route's prices, oldest first; the one in effect at a time is found by bisection."""

    starts: tuple[float, ...] = ()
    prices: tuple[PriceInfo, ...] = ()

    def at(self, when: float) -> PriceInfo | None:
        index = bisect.bisect_right(self.starts, when) - 1
        return self.prices[index] if index >= 0 else None


@dataclass(frozen=True, slots=True)
class LimitInfo:
    requests_per_minute: int | None
    tokens_per_minute: int | None
    max_concurrent: int | None


@dataclass(frozen=True, slots=True)
class BudgetInfo:
    id: int
    period: str  # monthly, daily or none
    amount: Decimal
    soft_limit_percent: int
    period_name: str  # the period this was loaded in, e.g. "2026-11"
    spent: Decimal  # in that period, from the ledger, when loaded


@dataclass(frozen=True, slots=True)
class BillingSnapshot:
    prices: dict[str, PriceSchedule] = field(default_factory=dict)  # by public model id
    # By ("key" | "tenant", id, model); model "" is every model.
    limits: dict[tuple[str, int, str], LimitInfo] = field(default_factory=dict)
    budgets: dict[tuple[str, int], BudgetInfo] = field(default_factory=dict)  # by ("key" | "tenant", id)

    # Owners with any limit or budget: a request of anyone else skips the limiter entirely.
    limited: frozenset[tuple[str, int]] = frozenset()

    def applies_to(self, key_id: int, tenant_id: int) -> bool:
        return ("key", key_id) in self.limited or ("tenant", tenant_id) in self.limited


def period_bounds(period: str, now: datetime) -> tuple[str, datetime | None, datetime | None]:
    """The name, start and end (UTC) of the budget period containing `now`."""
    now = now.astimezone(UTC)
    if period == Budget.Period.DAILY:
        start = now.replace(hour=0, minute=0, second=0, microsecond=0)
        return start.strftime("%Y-%m-%d"), start, start + timedelta(days=1)
    if period == Budget.Period.MONTHLY:
        start = now.replace(day=1, hour=0, minute=0, second=0, microsecond=0)
        end = (start + timedelta(days=32)).replace(day=1)
        return start.strftime("%Y-%m"), start, end
    return "all", None, None


def _price_schedules() -> dict[str, PriceSchedule]:
    by_route: dict[str, list[PriceInfo]] = {}
    for price in Price.objects.select_related("route").order_by("effective_from"):
        by_route.setdefault(price.route.public_id, []).append(
            PriceInfo(
                since=price.effective_from.timestamp(),
                input=price.input_per_million,
                output=price.output_per_million,
                cached_input=(
                    price.cached_input_per_million
                    if price.cached_input_per_million is not None
                    else price.input_per_million
                ),
            )
        )
    return {
        model: PriceSchedule(starts=tuple(p.since for p in prices), prices=tuple(prices))
        for model, prices in by_route.items()
    }


def _limits() -> dict[tuple[str, int, str], LimitInfo]:
    limits: dict[tuple[str, int, str], LimitInfo] = {}
    for row in RateLimit.objects.all():
        owner = ("key", row.api_key_id) if row.api_key_id else ("tenant", row.tenant_id)
        limits[(owner[0], int(owner[1] or 0), row.model)] = LimitInfo(
            row.requests_per_minute, row.tokens_per_minute, row.max_concurrent
        )
    return limits


def _spent(budgets: Iterable[Budget], now: datetime) -> dict[int, tuple[str, Decimal]]:
    """Each budget's spend in its current period: one aggregate query per period kind."""
    spent: dict[int, tuple[str, Decimal]] = {}
    by_period: dict[str, list[Budget]] = {}
    for budget in budgets:
        by_period.setdefault(budget.period, []).append(budget)
    for period, group in by_period.items():
        name, start, _end = period_bounds(period, now)
        rows = UsageRecord.objects.all()
        if start is not None:
            rows = rows.filter(created_at__gte=start)
        tenant_ids = [b.tenant_id for b in group if b.tenant_id]
        key_ids = [b.api_key_id for b in group if b.api_key_id]
        by_tenant = dict(
            rows.filter(tenant_id__in=tenant_ids).values_list("tenant_id").annotate(total=Sum("cost"))
            if tenant_ids
            else []
        )
        by_key = dict(
            rows.filter(api_key_id__in=key_ids).values_list("api_key_id").annotate(total=Sum("cost")) if key_ids else []
        )
        for budget in group:
            total = by_key.get(budget.api_key_id) if budget.api_key_id else by_tenant.get(budget.tenant_id)
            spent[budget.pk] = (name, total or Decimal(0))
    return spent


def load_billing(now: datetime | None = None) -> BillingSnapshot:
    now = now or datetime.now(UTC)
    budgets = list(Budget.objects.all())
    spent = _spent(budgets, now)
    infos: dict[tuple[str, int], BudgetInfo] = {}
    for budget in budgets:
        owner = ("key", budget.api_key_id) if budget.api_key_id else ("tenant", budget.tenant_id)
        name, total = spent[budget.pk]
        infos[(owner[0], int(owner[1] or 0))] = BudgetInfo(
            id=budget.pk,
            period=budget.period,
            amount=budget.amount,
            soft_limit_percent=budget.soft_limit_percent,
            period_name=name,
            spent=total,
        )
    limits = _limits()
    limited = frozenset((kind, owner) for kind, owner, _model in limits) | frozenset(infos)
    return BillingSnapshot(prices=_price_schedules(), limits=limits, budgets=infos, limited=limited)
