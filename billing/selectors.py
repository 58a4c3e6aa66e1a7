"""Reads on the ledger, limits and budgets for the management API and the admin.

Totals are computed by the database (one aggregate and one grouped query),
never by loading ledger rows into Python. An owner's rows are found by
`owned_by`: a tenant's include its keys', as in every tenant filter.

A month's usage and budgets' spend, shown on the console's and the portal's
pages, read the daily rollups plus the few ledger rows the rollups have not
counted yet, so they stay exact without scanning a month of the ledger.
"""

from __future__ import annotations

import operator
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from decimal import Decimal
from functools import reduce

from django.conf import settings
from django.db.models import (
    BigIntegerField,
    Case,
    Count,
    DateTimeField,
    DecimalField,
    ExpressionWrapper,
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
from django.utils import timezone

from billing.models import USD, Budget, DailyUsageRollup, RateLimit, UsageRecord, UsageRollupCursor
from billing.partitions import add_months, month_start
from billing.periods import period_bounds
from billing.rollups import CURSOR_ID
from tenants.models import ApiKey, Tenant

_MONEY = DecimalField(max_digits=USD["max_digits"], decimal_places=USD["decimal_places"])
_ZERO = Value(Decimal(0), output_field=_MONEY)
# A lifetime budget's period starts before any ledger row.
_EVER = datetime(2000, 1, 1, tzinfo=UTC)


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
        sums = rolled_usage_sums(tenant_id=owner.tenant_id, api_key_id=owner.pk, start=start)
    else:
        sums = rolled_usage_sums(tenant_id=owner.pk, start=start)
    return PeriodUsage(month, sums)


def rolled_usage_sums(
    *,
    tenant_id: int | None = None,
    api_key_id: int | None = None,
    model: str | None = None,
    provider: str | None = None,
    start: datetime | None = None,
    end: datetime | None = None,
) -> UsageSums:
    """The totals `usage_sums` gives for these ledger rows, read from the daily rollups instead, to the cent.

    `start` and `end` must be UTC midnights (the rollups' days). One statement reads the rollups and the
    ledger rows they have not counted yet, so its cost is that of a few rollup rows a day, whatever the
    ledger holds.

    Under a ledger retention the start is never before the first kept month: the rollups outlive the months
    pruned from the ledger, and counting them would promise rows (pages of a request log) that are gone.
    """
    assert all(
        bound is None or bound == bound.astimezone(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
        for bound in (start, end)
    ), "the rollups' buckets are UTC days"
    kept_since = _first_kept_month()
    if kept_since is not None and (start is None or start < kept_since):
        start = kept_since
    rolled = DailyUsageRollup.objects.all()
    recent = UsageRecord.objects.all()
    if tenant_id is not None:
        rolled, recent = rolled.filter(tenant_id=tenant_id), recent.filter(tenant_id=tenant_id)
    if api_key_id is not None:
        rolled, recent = rolled.filter(api_key_id=api_key_id), recent.filter(api_key_id=api_key_id)
    if model is not None:
        rolled, recent = rolled.filter(model=model), recent.filter(model=model)
    if provider is not None:
        rolled, recent = rolled.filter(provider=provider), recent.filter(provider=provider)
    if start is not None:
        rolled, recent = rolled.filter(bucket__gte=start), recent.filter(created_at__gte=start)
    if end is not None:
        rolled, recent = rolled.filter(bucket__lt=end), recent.filter(created_at__lt=end)
    recent = _not_rolled_up(recent).order_by()
    sums = {}
    for name in ("requests", "prompt_tokens", "completion_tokens", "cached_tokens", "cost"):
        field, zero = (_MONEY, _ZERO) if name == "cost" else (BigIntegerField(), Value(0))
        # A plain COUNT or SUM (not Django's aggregates) keeps GROUP BY out of the subquery.
        in_ledger = Func(F("pk"), function="COUNT") if name == "requests" else Func(F(name), function="SUM")
        newest = Subquery(recent.annotate(total=in_ledger).values("total")[:1], output_field=field)
        sums[name] = ExpressionWrapper(
            Coalesce(Sum(name), zero, output_field=field) + Coalesce(newest, zero, output_field=field),
            output_field=field,
        )
    # An aggregate answers one row even when no rollup row matches.
    return UsageSums(**rolled.order_by().aggregate(**sums))


def _first_kept_month() -> datetime | None:
    """The first month the ledger still holds under PORTICO_LEDGER_RETENTION_MONTHS (None: it keeps them all).

    The same cutoff as billing.partitions.ledger_partitions_prune: this month and the `keep_months` before it.
    """
    keep_months = settings.PORTICO_LEDGER_RETENTION_MONTHS
    if keep_months <= 0:
        return None
    return add_months(month_start(timezone.now()), -keep_months)


def _not_rolled_up(rows: QuerySet[UsageRecord]) -> QuerySet[UsageRecord]:
    """Those of `rows` the rollups do not count yet: past their cursor, read in the same statement as they are.

    The rollups count every ledger row up to the cursor's id, so these are the few rows past it, found by id.
    The cursor read a moment before (never ahead of the one in the statement) tells the planner how few.
    """
    read_before = UsageRollupCursor.objects.filter(pk=CURSOR_ID).values_list("last_id", flat=True).first() or 0
    in_statement = Coalesce(Subquery(UsageRollupCursor.objects.filter(pk=CURSOR_ID).values("last_id")[:1]), 0)
    return rows.filter(pk__gt=read_before).filter(pk__gt=in_statement)


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
    """`budgets`, each annotated with `spent`: its owner's cost in the period containing `now`, to the cent.

    One query for the lot: each row's period start is chosen in SQL, then correlated sums read the daily
    rollups and the ledger rows they do not count yet (budget periods are whole UTC days).
    """
    _daily, day_start, _ = period_bounds(Budget.Period.DAILY, now)
    _monthly, month_start, _ = period_bounds(Budget.Period.MONTHLY, now)
    period_start = Case(
        When(period=Budget.Period.DAILY, then=Value(day_start)),
        When(period=Budget.Period.MONTHLY, then=Value(month_start)),
        default=Value(_EVER),
        output_field=DateTimeField(),
    )
    # A budget has one owner, so the other owner's conditions are on NULL and match nothing.
    since = OuterRef("period_start")
    tenants_rolled = DailyUsageRollup.objects.filter(tenant_id=OuterRef("tenant_id"), bucket__gte=since)
    keys_rolled = DailyUsageRollup.objects.filter(
        tenant_id=OuterRef("api_key__tenant_id"), api_key_id=OuterRef("api_key_id"), bucket__gte=since
    )
    newest = _not_rolled_up(
        UsageRecord.objects.filter(
            Q(tenant_id=OuterRef("tenant_id")) | Q(api_key_id=OuterRef("api_key_id")), created_at__gte=since
        )
    )
    spent = reduce(
        operator.add,
        (Coalesce(_cost_of(rows), _ZERO, output_field=_MONEY) for rows in (tenants_rolled, keys_rolled, newest)),
    )
    return budgets.annotate(period_start=period_start).annotate(spent=ExpressionWrapper(spent, output_field=_MONEY))


def _cost_of(rows: QuerySet[DailyUsageRollup] | QuerySet[UsageRecord]) -> Subquery:
    # A plain SUM (not Django's Sum aggregate) keeps GROUP BY out of the correlated subquery.
    total = rows.order_by().annotate(total=Func(F("cost"), function="SUM")).values("total")[:1]
    return Subquery(total, output_field=_MONEY)
