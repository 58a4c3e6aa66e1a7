"""Budget alerts: recorded by the ledger writer when a period's spend crosses a budget's soft or hard limit."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

from django.db.models import Q

from billing.facade import period_bounds
from billing.models import Budget, BudgetAlert
from billing.selectors import budgets_with_spend


def budget_alerts_check(*, tenant_ids: set[int], key_ids: set[int], now: datetime | None = None) -> None:
    """Record the alerts that the budgets of these owners now call for (each once per period and level)."""
    if not tenant_ids and not key_ids:
        return
    now = now or datetime.now(UTC)
    owned = Budget.objects.filter(Q(tenant_id__in=tenant_ids) | Q(api_key_id__in=key_ids))
    alerts = []
    for budget in budgets_with_spend(budgets=owned, now=now):
        spent: Decimal = budget.spent  # type: ignore[attr-defined]  # annotated by the selector
        period, _start, _end = period_bounds(budget.period, now)
        soft = budget.amount * budget.soft_limit_percent / 100
        for level, threshold in (("soft", soft), ("hard", budget.amount)):
            if spent >= threshold:
                alerts.append(BudgetAlert(budget=budget, period=period, level=level, spent=spent, created_at=now))
    if alerts:
        BudgetAlert.objects.bulk_create(alerts, ignore_conflicts=True)
