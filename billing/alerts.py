"""Budget alerts: recorded by the ledger writer when a period's spend crosses a budget's soft or hard limit."""

from __future__ import annotations

import threading
import time
from datetime import UTC, datetime
from decimal import Decimal

from django.db import DatabaseError
from django.db.models import Q

from billing.models import Budget, BudgetAlert
from billing.periods import period_bounds
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
