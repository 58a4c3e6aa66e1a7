"""Reads on the ledger, limits and budgets for the management API and the admin.

Totals are computed by the database (one aggregate and one grouped query),
never by loading ledger rows into Python. An owner's rows are found by
`owned_by`: a tenant's include its keys', as in every tenant filter.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from datetime import datetime
from decimal import Decimal

from django.db.models import (
    Case,
    Count,
    DateTimeField,
    DecimalField,
    F,
    Func,
    OuterRef,
    Q,
    QuerySet,
    Subquery,
    Sum,
    Value,
    When,
)
from django.db.models.functions import Coalesce

from billing.models import USD, Budget, RateLimit, UsageRecord
from billing.periods import period_bounds
from tenants.models import ApiKey, Tenant

_MONEY = DecimalField(max_digits=USD["max_digits"], decimal_places=USD["decimal_places"])
_ZERO = Value(Decimal(0), output_field=_MONEY)


@dataclass(frozen=True)
class ModelTotals:
    model: str
    requests: int
    prompt_tokens: int
    completion_tokens: int
    cost: Decimal


@dataclass(frozen=True)
class UsageSums:
    requests: int
    prompt_tokens: int
    completion_tokens: int
    cached_tokens: int
    cost: Decimal


@dataclass(frozen=True)
class UsageTotals(UsageSums):
    by_model: list[ModelTotals]


@dataclass(frozen=True)
class PeriodUsage:
    period: str  # e.g. 2026-11
    sums: UsageSums


@dataclass(frozen=True)
class BudgetProgress:
    budget: Budget
    period: str  # the current one: 2026-11, 2026-11-26, or 'all'
    spent: Decimal

    @property
    def percent(self) -> int:
        """Share of the amount spent, past 100 when over it (an amount of 0 is spent from the start)."""
        if self.budget.amount <= 0:
            return 100
        return int(self.spent * 100 / self.budget.amount)


def usage_list(
    *,
    records: QuerySet[UsageRecord] | None = None,
    start: datetime | None = None,
    end: datetime | None = None,
    api_key_id: int | None = None,
    model: str | None = None,
    tenant_id: int | None = None,
) -> QuerySet[UsageRecord]:
    """Ledger rows, newest first, from `records` (the rows a caller may see; all by default).

    `start` is inclusive and `end` exclusive, so consecutive windows never count a row twice.
    """
    rows = UsageRecord.objects.all() if records is None else records
    if start is not None:
        rows = rows.filter(created_at__gte=start)
    if end is not None:
        rows = rows.filter(created_at__lt=end)
    if api_key_id is not None:
        rows = rows.filter(api_key_id=api_key_id)
    if model:
        rows = rows.filter(model=model)
    if tenant_id is not None:
        rows = rows.filter(tenant_id=tenant_id)
    return rows.order_by("-created_at", "-pk")


def _sums() -> dict[str, Count | Coalesce]:
    return {
        "requests": Count("pk"),
        "prompt_tokens": Coalesce(Sum("prompt_tokens"), 0),
        "completion_tokens": Coalesce(Sum("completion_tokens"), 0),
        "cost": Coalesce(Sum("cost"), _ZERO, output_field=_MONEY),
    }


def usage_sums(*, records: QuerySet[UsageRecord]) -> UsageSums:
    """Request, token and cost totals of `records`, in one aggregate query."""
    return UsageSums(**records.order_by().aggregate(**_sums(), cached_tokens=Coalesce(Sum("cached_tokens"), 0)))


def usage_totals(*, records: QuerySet[UsageRecord]) -> UsageTotals:
    """Request, token and cost totals of `records`, overall and per model."""
    by_model = records.order_by().values("model").annotate(**_sums()).order_by("model")
    return UsageTotals(
        **asdict(usage_sums(records=records)),
        by_model=[ModelTotals(**row) for row in by_model],  # type: ignore[call-arg]
    )


def owned_by(owner: Tenant | ApiKey) -> Q:
    """The limits or budgets of a key, or of a tenant and its keys."""
    if isinstance(owner, ApiKey):
        return Q(api_key=owner)
    return Q(tenant=owner) | Q(api_key__tenant=owner)


def usage_this_month(*, owner: Tenant | ApiKey, now: datetime) -> PeriodUsage:
    """What a tenant (all its keys) or one key has used in the calendar month (UTC) containing `now`."""
    month, start, _end = period_bounds(Budget.Period.MONTHLY, now)
    if isinstance(owner, ApiKey):
        rows = usage_list(start=start, api_key_id=owner.pk)
    else:
        rows = usage_list(start=start, tenant_id=owner.pk)
    return PeriodUsage(month, usage_sums(records=rows))


def rate_limits_of(*, owner: Tenant | ApiKey) -> list[RateLimit]:
    """The owner's rate limits, the tenant's own first, then its keys'; on all models before those on one."""
    limits = RateLimit.objects.filter(owned_by(owner)).select_related("tenant", "api_key")
    return list(limits.order_by(F("api_key_id").asc(nulls_first=True), "model", "pk"))


def budgets_of(*, owner: Tenant | ApiKey, now: datetime) -> list[BudgetProgress]:
    """The owner's budgets, the tenant's own first, each with its spend in its current period."""
    budgets = Budget.objects.filter(owned_by(owner)).select_related("tenant", "api_key")
    budgets = budgets_with_spend(budgets=budgets, now=now).order_by(F("api_key_id").asc(nulls_first=True), "pk")
    return [
        BudgetProgress(budget, period_bounds(budget.period, now)[0], budget.spent)  # type: ignore[attr-defined]
        for budget in budgets
    ]


def budgets_with_spend(*, budgets: QuerySet[Budget], now: datetime) -> QuerySet[Budget]:
    """`budgets`, each annotated with `spent`: its owner's ledger cost in the period containing `now`.

    One query for the lot: each row's period start is chosen in SQL, then a correlated sum reads the ledger.
    """
    _daily, day_start, _ = period_bounds(Budget.Period.DAILY, now)
    _monthly, month_start, _ = period_bounds(Budget.Period.MONTHLY, now)
    period_start = Case(
        When(period=Budget.Period.DAILY, then=Value(day_start)),
        When(period=Budget.Period.MONTHLY, then=Value(month_start)),
        default=None,
        output_field=DateTimeField(),
    )
    # A budget has one owner, so one of the two conditions is on NULL and never true.
    owners_rows = UsageRecord.objects.filter(
        Q(tenant_id=OuterRef("tenant_id")) | Q(api_key_id=OuterRef("api_key_id")),
        created_at__gte=Coalesce(OuterRef("period_start"), F("created_at")),
    )
    # A plain SUM (not Django's Sum aggregate) keeps GROUP BY out of the correlated subquery.
    total = owners_rows.order_by().annotate(total=Func(F("cost"), function="SUM")).values("total")[:1]
    return budgets.annotate(period_start=period_start).annotate(
        spent=Coalesce(Subquery(total, output_field=_MONEY), _ZERO, output_field=_MONEY)
    )
