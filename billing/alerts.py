"""Budget alerts: recorded by the ledger writer when a period's spend crosses a budget's soft or hard limit, and
delivered to the tenant's and the operators' alert channels (notifications).

Each alert is recorded once per budget, period and level (a unique constraint), and sent once per channel:
the check notifies only for the alerts it found missing, and should two processes both find one missing,
its delivery key (`budget:<id>:<period>:<level>`) still lets only one delivery per channel through.
"""

from __future__ import annotations

import threading
import time
from datetime import UTC, datetime
from decimal import Decimal

from django.db import DatabaseError, transaction
from django.db.models import Q

from billing.models import Budget, BudgetAlert
from billing.money import format_money, usd
from billing.periods import period_bounds
from billing.selectors import budgets_with_spend
from notifications.models import AlertEvent
from notifications.services import notify


def budget_alerts_check(*, tenant_ids: set[int], key_ids: set[int], now: datetime | None = None) -> None:
    """Record the alerts that the budgets of these owners now call for (each once per period and level), and send
    the new ones."""
    if not tenant_ids and not key_ids:
        return
    now = now or datetime.now(UTC)
    owned = Budget.objects.filter(Q(tenant_id__in=tenant_ids) | Q(api_key_id__in=key_ids))
    alerts = []
    for budget in budgets_with_spend(budgets=owned.select_related("tenant", "api_key__tenant"), now=now):
        spent: Decimal = budget.spent  # type: ignore[attr-defined]  # annotated by the selector
        period, _start, _end = period_bounds(budget.period, now)
        soft = budget.amount * budget.soft_limit_percent / 100
        for level, threshold in (("soft", soft), ("hard", budget.amount)):
            if spent >= threshold:
                alerts.append(BudgetAlert(budget=budget, period=period, level=level, spent=spent, created_at=now))
    if not alerts:
        return
    # In one transaction: an alert is recorded with its deliveries, or neither is (and the next check tries again).
    with transaction.atomic():
        new = _not_recorded(alerts)
        BudgetAlert.objects.bulk_create(new, ignore_conflicts=True)
        for alert in new:
            _announce(alert)


def _not_recorded(alerts: list[BudgetAlert]) -> list[BudgetAlert]:
    recorded = set(
        BudgetAlert.objects.filter(
            budget_id__in={alert.budget_id for alert in alerts}, period__in={alert.period for alert in alerts}
        ).values_list("budget_id", "period", "level")
    )
    return [alert for alert in alerts if (alert.budget_id, alert.period, alert.level) not in recorded]


def _announce(alert: BudgetAlert) -> None:
    budget = alert.budget
    key = budget.api_key
    tenant = key.tenant if key is not None else budget.tenant
    assert tenant is not None  # a budget has one owner (a check constraint)
    owner = f"key {key.name} ({key.prefix}) of {tenant.name}" if key is not None else f"tenant {tenant.name}"
    amount, spent = format_money(budget.amount), format_money(alert.spent)
    period = "lifetime" if budget.period == Budget.Period.NONE else budget.period
    if alert.level == "hard":
        subject = f"Portico: {owner} has reached its {period} budget of {amount}"
        consequence = "Its requests are refused (429 insufficient_quota) until the period ends or the budget is raised."
    else:
        subject = f"Portico: {owner} has spent {budget.soft_limit_percent} % of its {period} budget"
        consequence = f"Requests will be refused once spend reaches {amount}."
    notify(
        event=AlertEvent.BUDGET_HARD if alert.level == "hard" else AlertEvent.BUDGET_SOFT,
        tenant_id=tenant.pk,
        key=f"budget:{budget.pk}:{alert.period}:{alert.level}",
        subject=subject,
        text=f"Spent {spent} of {amount} in period {alert.period}. {consequence}",
        payload={
            "level": alert.level,
            "period": alert.period,
            "spent": usd(alert.spent),
            "budget": {
                "id": budget.pk,
                "amount": usd(budget.amount),
                "period": budget.period,
                "soft_limit_percent": budget.soft_limit_percent,
            },
            "tenant": {"id": tenant.pk, "slug": tenant.slug, "name": tenant.name},
            "api_key": None if key is None else {"id": key.pk, "name": key.name, "prefix": key.prefix},
        },
    )


class PendingAlerts:
    """Owners whose budgets may call for an alert, checked at most every `interval` seconds.

    Each check sums a period's spend in the ledger; doing that after every batch would
    cost the database more than the inserts themselves, and an alert a second or two
    later serves an operator as well.
    """

    def __init__(self, interval: float = 2.0) -> None:
        self.interval = interval
        self._tenants: set[int] = set()
        self._keys: set[int] = set()
        self._checked_at = -interval
        self._lock = threading.Lock()

    def add(self, owners: list[tuple[int | None, int | None]]) -> None:
        with self._lock:
            self._tenants.update(tenant for tenant, _key in owners if tenant)
            self._keys.update(key for _tenant, key in owners if key)
        self.check(due_only=True)

    def check(self, *, due_only: bool = False) -> None:
        with self._lock:
            if due_only and time.monotonic() - self._checked_at < self.interval:
                return
            if not self._tenants and not self._keys:
                return
            tenants, keys, self._tenants, self._keys = self._tenants, self._keys, set(), set()
            self._checked_at = time.monotonic()
        try:
            budget_alerts_check(tenant_ids=tenants, key_ids=keys)
        except DatabaseError:
            with self._lock:  # checked again with the next batch
                self._tenants |= tenants
                self._keys |= keys
            raise
