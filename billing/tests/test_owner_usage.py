"""A month's usage and budgets' spend, as the console's tenant and key pages and the portal's overview show them.

They read the daily rollups plus the ledger rows the rollups have not counted
yet: exact to the cent whatever the rollups have caught up with, and the same
once the rolled-up ledger rows are gone.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from decimal import Decimal

import pytest
import time_machine
from django.db.models import Count, Q, Sum
from django.test import Client
from django.urls import reverse

from billing.models import Budget, UsageRecord, UsageRollupCursor
from billing.rollups import usage_rollups_update
from billing.selectors import UsageSums, budgets_with_spend, usage_this_month
from billing.services import budget_set
from billing.tests.factories import make_user
from billing.tests.ledger_rows import make_ledger

pytestmark = pytest.mark.django_db

NOW = datetime(2026, 11, 15, 12, 30, tzinfo=UTC)
MONTH = datetime(2026, 11, 1, tzinfo=UTC)
TODAY = datetime(2026, 11, 15, tzinfo=UTC)


@pytest.fixture
def ledger(owner, teammate, outsider):
    """Rows from late October to this morning, rolled up; then this morning's later rows, not rolled up yet."""
    keys = [owner.api_key, teammate.api_key, outsider.api_key]
    make_ledger(keys=keys, rows=400, start=datetime(2026, 10, 28, tzinfo=UTC), hours=18 * 24 + 6)
    assert usage_rollups_update().caught_up
    make_ledger(keys=keys, rows=40, start=TODAY.replace(hour=6), hours=6, seed=11)
    assert UsageRecord.objects.filter(pk__gt=UsageRollupCursor.objects.get().last_id).count() == 40


def _ledger_sums(rows: Q) -> UsageSums:
    """What the ledger itself holds, the truth the pages must show."""
    return UsageSums(
        **UsageRecord.objects.filter(rows).aggregate(
            requests=Count("pk"),
            prompt_tokens=Sum("prompt_tokens"),
            completion_tokens=Sum("completion_tokens"),
            cached_tokens=Sum("cached_tokens"),
            cost=Sum("cost"),
        )
    )


def _spent(**owner: object) -> dict[str, Decimal]:
    budgets = budgets_with_spend(budgets=Budget.objects.filter(**owner), now=NOW)
    return {budget.period: budget.spent for budget in budgets}


def test_a_month_s_usage_counts_the_rolled_up_rows_and_the_newest_ones_exactly(ledger, tenant, owner, outsider):
    this_month = Q(created_at__gte=MONTH)

    assert usage_this_month(owner=tenant, now=NOW).sums == _ledger_sums(this_month & Q(tenant_id=tenant.pk))
    assert usage_this_month(owner=owner.api_key, now=NOW).sums == _ledger_sums(
        this_month & Q(api_key_id=owner.api_key.pk)
    )
    assert usage_this_month(owner=outsider.api_key.tenant, now=NOW).sums == _ledger_sums(
        this_month & Q(tenant_id=outsider.api_key.tenant_id)
    )


def test_budgets_spend_counts_the_rolled_up_rows_and_the_newest_ones_exactly(ledger, tenant, owner, outsider):
    budget_set(tenant=tenant, amount=Decimal(100), period=Budget.Period.MONTHLY)
    budget_set(api_key=owner.api_key, amount=Decimal(100), period=Budget.Period.DAILY)
    budget_set(tenant=outsider.api_key.tenant, amount=Decimal(100), period=Budget.Period.NONE)

    assert _spent(tenant=tenant) == {"monthly": _ledger_sums(Q(tenant_id=tenant.pk, created_at__gte=MONTH)).cost}
    assert _spent(api_key=owner.api_key) == {
        "daily": _ledger_sums(Q(api_key_id=owner.api_key.pk, created_at__gte=TODAY)).cost
    }
    assert _spent(tenant=outsider.api_key.tenant) == {
        "none": _ledger_sums(Q(tenant_id=outsider.api_key.tenant_id)).cost
    }


def test_usage_and_spend_read_the_rollups_not_the_rolled_up_ledger_rows(ledger, tenant, owner):
    budget_set(tenant=tenant, amount=Decimal(100), period=Budget.Period.MONTHLY)
    budget_set(api_key=owner.api_key, amount=Decimal(100), period=Budget.Period.DAILY)
    before = (usage_this_month(owner=tenant, now=NOW), usage_this_month(owner=owner.api_key, now=NOW), _spent())

    # Old ledger rows may be deleted (partitions dropped); what the rollups counted stays counted.
    UsageRecord.objects.filter(pk__lte=UsageRollupCursor.objects.get().last_id).delete()

    after = (usage_this_month(owner=tenant, now=NOW), usage_this_month(owner=owner.api_key, now=NOW), _spent())
    assert after == before
    assert before[0].sums.requests > 40


def _amounts(html: str) -> list[str]:
    return re.findall(r"\$[\d,]+\.\d+", html)


@time_machine.travel(NOW, tick=False)
def test_the_tenant_key_and_portal_pages_read_the_rollups_not_the_rolled_up_ledger_rows(
    admin_client, ledger, tenant, owner
):
    budget_set(tenant=tenant, amount=Decimal(100), period=Budget.Period.MONTHLY)
    budget_set(api_key=owner.api_key, amount=Decimal(100), period=Budget.Period.DAILY)
    portal = Client()
    portal.force_login(make_user(admin_of=[tenant]))
    pages = (
        (admin_client, reverse("admin:tenants_tenant_change", args=[tenant.pk])),
        (admin_client, reverse("admin:tenants_apikey_change", args=[owner.api_key.pk])),
        (portal, reverse("portal:overview", args=[tenant.slug])),
    )
    before = [_amounts(client.get(address).content.decode()) for client, address in pages]

    UsageRecord.objects.filter(pk__lte=UsageRollupCursor.objects.get().last_id).delete()

    after = [_amounts(client.get(address).content.decode()) for client, address in pages]
    assert after == before
    month_cost = usage_this_month(owner=tenant, now=NOW).sums.cost
    assert all(amounts for amounts in before)
    assert any(month_cost.quantize(Decimal("0.01")) == Decimal(amount[1:].replace(",", "")) for amount in before[0])
