from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest

from billing.models import Budget, UsageRecord
from billing.selectors import ModelTotals, budgets_with_spend, usage_list, usage_totals
from billing.services import budget_set
from billing.tests.factories import make_usage

pytestmark = pytest.mark.django_db

NOW = datetime(2026, 11, 15, 12, 0, tzinfo=UTC)


def test_the_start_is_inclusive_and_the_end_exclusive(owner):
    at_start = make_usage(api_key=owner.api_key, created_at=NOW)
    make_usage(api_key=owner.api_key, created_at=NOW + timedelta(hours=1))

    rows = usage_list(start=NOW, end=NOW + timedelta(hours=1))

    assert list(rows) == [at_start]


def test_usage_list_narrows_the_rows_it_is_given(owner, outsider):
    mine = make_usage(api_key=owner.api_key)
    make_usage(api_key=outsider.api_key)

    rows = usage_list(records=UsageRecord.objects.filter(tenant_id=owner.api_key.tenant_id), model="gpt-4o")

    assert list(rows) == [mine]


def test_usage_rows_of_the_same_instant_keep_a_stable_order(owner):
    rows = [make_usage(api_key=owner.api_key, created_at=NOW) for _ in range(3)]

    assert list(usage_list()) == rows[::-1]


def test_totals_are_exact_decimals(owner):
    for _ in range(3):
        make_usage(api_key=owner.api_key, cost="0.1000000001", prompt_tokens=1)

    totals = usage_totals(records=UsageRecord.objects.all())

    assert totals.cost == Decimal("0.3000000003")
    assert totals.by_model == [
        ModelTotals(model="gpt-4o", requests=3, prompt_tokens=3, completion_tokens=0, cost=Decimal("0.3000000003"))
    ]


@pytest.mark.parametrize(
    ("period", "expected"),
    [
        (Budget.Period.DAILY, Decimal("3")),  # today's rows
        (Budget.Period.MONTHLY, Decimal("7")),  # and the 1st of November's
        (Budget.Period.NONE, Decimal("15")),  # and last month's
    ],
)
def test_a_budget_counts_its_owners_spend_in_the_period_containing_now(tenant, owner, teammate, period, expected):
    make_usage(api_key=owner.api_key, cost="1", created_at=NOW.replace(hour=0))
    make_usage(api_key=teammate.api_key, cost="2", created_at=NOW)
    make_usage(api_key=owner.api_key, cost="4", created_at=datetime(2026, 11, 1, tzinfo=UTC))
    make_usage(api_key=owner.api_key, cost="8", created_at=datetime(2026, 10, 31, 23, 59, 59, tzinfo=UTC))
    budget_set(tenant=tenant, amount=Decimal(100), period=period)

    budget = budgets_with_spend(budgets=Budget.objects.all(), now=NOW).get()

    assert budget.spent == expected


def test_a_keys_budget_counts_only_that_key(owner, teammate):
    make_usage(api_key=owner.api_key, cost="1", created_at=NOW)
    make_usage(api_key=teammate.api_key, cost="2", created_at=NOW)
    budget_set(api_key=owner.api_key, amount=Decimal(100))

    assert budgets_with_spend(budgets=Budget.objects.all(), now=NOW).get().spent == Decimal(1)


def test_a_budget_with_no_spend_has_spent_zero(tenant):
    budget_set(tenant=tenant, amount=Decimal(100))

    assert budgets_with_spend(budgets=Budget.objects.all(), now=NOW).get().spent == Decimal(0)
