"""Reads on the ledger and budgets for the management API and the admin.

Totals are computed by the database (one aggregate and one grouped query),
never by loading ledger rows into Python.
"""

from __future__ import annotations

from dataclasses import dataclass
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

from billing.models import USD, Budget, UsageRecord
from billing.periods import period_bounds

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
class UsageTotals:
    requests: int
    prompt_tokens: int
    completion_tokens: int
    cached_tokens: int
    cost: Decimal
    by_model: list[ModelTotals]


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


def usage_totals(*, records: QuerySet[UsageRecord]) -> UsageTotals:
    """Request, token and cost totals of `records`, overall and per model."""
    rows = records.order_by()
    overall = rows.aggregate(**_sums(), cached_tokens=Coalesce(Sum("cached_tokens"), 0))
    by_model = rows.values("model").annotate(**_sums()).order_by("model")
    return UsageTotals(
        requests=overall["requests"],
        prompt_tokens=overall["prompt_tokens"],
        completion_tokens=overall["completion_tokens"],
        cached_tokens=overall["cached_tokens"],
        cost=overall["cost"],
        by_model=[ModelTotals(**row) for row in by_model],  # type: ignore[call-arg]
    )


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
