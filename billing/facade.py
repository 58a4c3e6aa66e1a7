"""What the hot path may know about billing: prices, limits and budgets as frozen values.

`load_billing()` queries the database when the snapshot is rebuilt, never per
request. Money values and their rules are in billing.money; what the hot path
writes (admission, usage, the ledger line) goes through billing.metering.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any, TypeVar

from django.db.models import Sum

from billing.models import Budget, DeploymentPrice, Price, RateLimit, UsageRecord
from billing.money import PriceInfo, PriceSchedule
from billing.periods import period_bounds

K = TypeVar("K")


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
    prices: dict[str, PriceSchedule] = field(default_factory=dict)  # by public model id: what tenants pay
    costs: dict[int, PriceSchedule] = field(default_factory=dict)  # by deployment id: what providers charge
    # By ("key" | "tenant", id, model); model "" is every model.
    limits: dict[tuple[str, int, str], LimitInfo] = field(default_factory=dict)
    budgets: dict[tuple[str, int], BudgetInfo] = field(default_factory=dict)  # by ("key" | "tenant", id)

    # Owners with any limit or budget: a request of anyone else skips the limiter entirely.
    limited: frozenset[tuple[str, int]] = frozenset()
    # What billing.metering derives from the rows above per key, tenant and model (the limiter's windows and
    # budgets), kept with the snapshot it was derived from, since the same few owners call again and again.
    derived: dict[tuple[Any, ...], Any] = field(default_factory=dict, compare=False, repr=False)

    def applies_to(self, key_id: int, tenant_id: int) -> bool:
        return ("key", key_id) in self.limited or ("tenant", tenant_id) in self.limited


def _price_info(row: Price | DeploymentPrice) -> PriceInfo:
    cached = row.cached_input_per_million
    return PriceInfo(
        since=row.effective_from.timestamp(),
        input=row.input_per_million,
        output=row.output_per_million,
        cached_input=cached if cached is not None else row.input_per_million,
    )


def _schedules(rows: Iterable[tuple[K, PriceInfo]]) -> dict[K, PriceSchedule]:
    by_owner: dict[K, list[PriceInfo]] = {}
    for owner, info in rows:
        by_owner.setdefault(owner, []).append(info)
    return {
        owner: PriceSchedule(starts=tuple(p.since for p in prices), prices=tuple(prices))
        for owner, prices in by_owner.items()
    }


def _price_schedules() -> dict[str, PriceSchedule]:
    rows = Price.objects.select_related("route").order_by("effective_from")
    return _schedules((price.route.public_id, _price_info(price)) for price in rows)


def _cost_schedules() -> dict[int, PriceSchedule]:
    rows = DeploymentPrice.objects.order_by("effective_from")
    return _schedules((cost.deployment_id, _price_info(cost)) for cost in rows)


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
    return BillingSnapshot(
        prices=_price_schedules(), costs=_cost_schedules(), limits=limits, budgets=infos, limited=limited
    )
