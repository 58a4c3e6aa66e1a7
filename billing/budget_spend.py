"""Budgets' spend, read from the daily usage rollups: each budget's progress in its period, for the reports.

Budget periods are UTC days and months, so a period is whole daily buckets. The
figures trail the ledger by the rollup interval: the limiter, not this,
enforces budgets.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import datetime
from decimal import Decimal
from typing import Any

from django.db.models import Q, Sum

from billing.models import Budget, DailyUsageRollup, RateLimit
from billing.periods import period_bounds
from billing.report_values import BudgetUse


def owner_name(owned: Budget | RateLimit) -> str:
    """Who a budget or a rate limit belongs to: its key's name, else its tenant's."""
    return owned.api_key.name if owned.api_key is not None else owned.tenant.name if owned.tenant else ""


def budget_uses(*, budgets: Iterable[Budget], now: datetime) -> tuple[BudgetUse, ...]:
    """Each budget's spend in its period containing `now` (two queries for all of them)."""
    budgets = list(budgets)
    periods = {period: period_bounds(period, now) for period in Budget.Period.values}
    spent = {
        **_spent_by(owner="tenant_id", budgets=[b for b in budgets if b.api_key_id is None], periods=periods, now=now),
        **_spent_by(owner="api_key_id", budgets=[b for b in budgets if b.api_key_id], periods=periods, now=now),
    }
    uses = []
    for budget in budgets:
        owner = ("api_key_id", budget.api_key_id) if budget.api_key_id is not None else ("tenant_id", budget.tenant_id)
        amount = budget.amount
        used = spent.get(owner, {}).get(budget.period) or Decimal(0)
        uses.append(
            BudgetUse(
                budget_id=budget.pk,
                tenant_id=_tenant_of(budget),
                api_key_id=budget.api_key_id,
                owner=owner_name(budget),
                period=budget.period,
                period_name=periods[budget.period][0],
                amount=amount,
                spent=used,
                used=float(used / amount) if amount else 1.0,
                soft_limit_percent=budget.soft_limit_percent,
                soft_reached=used >= amount * budget.soft_limit_percent / 100,
                hard_reached=used >= amount,
            )
        )
    return tuple(uses)


Periods = dict[str, tuple[str, datetime | None, datetime | None]]


def _spent_by(
    *, owner: str, budgets: list[Budget], periods: Periods, now: datetime
) -> dict[tuple[str, int | None], Mapping[str, Any]]:
    """What each owner (`tenant_id` or `api_key_id`) of `budgets` spent in each kind of period, by owner."""
    if not budgets:
        return {}
    # A key's rows are found through its tenant's index too.
    rows = DailyUsageRollup.objects.filter(bucket__lte=now, tenant_id__in={_tenant_of(budget) for budget in budgets})
    if owner == "api_key_id":
        rows = rows.filter(api_key_id__in={budget.api_key_id for budget in budgets})
    starts = [periods[budget.period][1] for budget in budgets]
    if None not in starts:  # no lifetime budget: nothing before the earliest period is needed
        rows = rows.filter(bucket__gte=min(start for start in starts if start is not None))
    by_period = {
        period: Sum("cost", filter=Q(bucket__gte=start)) if start is not None else Sum("cost")
        for period, (_name, start, _end) in periods.items()
    }
    return {(owner, row[owner]): row for row in rows.values(owner).annotate(**by_period).order_by()}


def _tenant_of(budget: Budget) -> int:
    if budget.api_key is not None:
        return budget.api_key.tenant_id
    assert budget.tenant_id is not None, "a budget has a tenant or a key"
    return budget.tenant_id
