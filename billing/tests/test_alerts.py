"""Budget alerts: recorded once per period and level when a period's spend reaches a budget's limits."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from pytest_django import DjangoAssertNumQueries

from billing.alerts import budget_alerts_check
from billing.models import Budget, BudgetAlert
from billing.services import budget_set
from billing.tests.factories import make_usage
from tenants.models import Tenant
from tenants.tests.factories import IssuedKey

pytestmark = pytest.mark.django_db

NOW = datetime(2026, 11, 15, 12, 0, tzinfo=UTC)


def alerts() -> list[tuple[str, str, Decimal]]:
    return sorted(BudgetAlert.objects.values_list("period", "level", "spent"))


@pytest.mark.parametrize(
    ("spend", "levels"),
    [
        ("7.9999", []),
        ("8", ["soft"]),
        ("9.99", ["soft"]),
        ("10", ["hard", "soft"]),
        ("12.5", ["hard", "soft"]),
    ],
)
def test_it_records_the_levels_a_tenants_spend_has_reached(
    tenant: Tenant, owner: IssuedKey, spend: str, levels: list[str]
) -> None:
    budget_set(tenant=tenant, amount=Decimal("10"), soft_limit_percent=80)
    make_usage(api_key=owner.api_key, created_at=NOW, cost=spend)

    budget_alerts_check(tenant_ids={tenant.pk}, key_ids=set(), now=NOW)

    assert alerts() == [("2026-11", level, Decimal(spend)) for level in levels]


def test_each_level_is_recorded_once_per_period(tenant: Tenant, owner: IssuedKey) -> None:
    budget_set(tenant=tenant, amount=Decimal("10"))
    make_usage(api_key=owner.api_key, created_at=NOW, cost="11")
    budget_alerts_check(tenant_ids={tenant.pk}, key_ids=set(), now=NOW)
    make_usage(api_key=owner.api_key, created_at=NOW, cost="1")

    budget_alerts_check(tenant_ids={tenant.pk}, key_ids=set(), now=NOW + timedelta(hours=1))

    assert alerts() == [("2026-11", "hard", Decimal("11")), ("2026-11", "soft", Decimal("11"))]


def test_a_new_period_gets_alerts_of_its_own(tenant: Tenant, owner: IssuedKey) -> None:
    budget_set(tenant=tenant, amount=Decimal("10"), period=Budget.Period.DAILY)
    make_usage(api_key=owner.api_key, created_at=NOW, cost="9")
    budget_alerts_check(tenant_ids={tenant.pk}, key_ids=set(), now=NOW)
    tomorrow = NOW + timedelta(days=1)
    make_usage(api_key=owner.api_key, created_at=tomorrow, cost="8")

    budget_alerts_check(tenant_ids={tenant.pk}, key_ids=set(), now=tomorrow)

    assert alerts() == [("2026-11-15", "soft", Decimal("9")), ("2026-11-16", "soft", Decimal("8"))]


def test_the_alert_records_when_it_was_raised(tenant: Tenant, owner: IssuedKey) -> None:
    budget_set(tenant=tenant, amount=Decimal("1"))
    make_usage(api_key=owner.api_key, created_at=NOW, cost="1")

    budget_alerts_check(tenant_ids={tenant.pk}, key_ids=set(), now=NOW)

    assert set(BudgetAlert.objects.values_list("created_at", flat=True)) == {NOW}


def test_a_key_budget_counts_that_key_alone(owner: IssuedKey, teammate: IssuedKey, outsider: IssuedKey) -> None:
    budget_set(api_key=owner.api_key, amount=Decimal("10"))
    make_usage(api_key=owner.api_key, created_at=NOW, cost="3")
    make_usage(api_key=teammate.api_key, created_at=NOW, cost="50")
    make_usage(api_key=outsider.api_key, created_at=NOW, cost="50")

    budget_alerts_check(tenant_ids={owner.api_key.tenant_id}, key_ids={owner.api_key.pk}, now=NOW)

    assert alerts() == []
    make_usage(api_key=owner.api_key, created_at=NOW, cost="5")
    budget_alerts_check(tenant_ids=set(), key_ids={owner.api_key.pk}, now=NOW)
    assert alerts() == [("2026-11", "soft", Decimal("8"))]


def test_a_tenant_budget_counts_every_key_of_the_tenant_and_no_other(
    tenant: Tenant, owner: IssuedKey, teammate: IssuedKey, outsider: IssuedKey
) -> None:
    budget_set(tenant=tenant, amount=Decimal("10"))
    make_usage(api_key=owner.api_key, created_at=NOW, cost="4")
    make_usage(api_key=teammate.api_key, created_at=NOW, cost="4.5")
    make_usage(api_key=outsider.api_key, created_at=NOW, cost="50")

    budget_alerts_check(tenant_ids={tenant.pk}, key_ids={owner.api_key.pk}, now=NOW)

    assert alerts() == [("2026-11", "soft", Decimal("8.5"))]


def test_it_checks_only_the_budgets_of_the_owners_it_is_given(owner: IssuedKey, outsider: IssuedKey) -> None:
    budget_set(api_key=outsider.api_key, amount=Decimal("1"))
    budget_set(tenant=outsider.api_key.tenant, amount=Decimal("1"))
    make_usage(api_key=outsider.api_key, created_at=NOW, cost="5")

    budget_alerts_check(tenant_ids={owner.api_key.tenant_id}, key_ids={owner.api_key.pk}, now=NOW)

    assert alerts() == []


def test_with_no_owners_it_asks_the_database_nothing(django_assert_num_queries: DjangoAssertNumQueries) -> None:
    with django_assert_num_queries(0):
        budget_alerts_check(tenant_ids=set(), key_ids=set(), now=NOW)


@pytest.mark.parametrize(
    ("period", "name", "spent"),
    [
        (Budget.Period.DAILY, "2026-11-15", Decimal("3")),  # today's rows
        (Budget.Period.MONTHLY, "2026-11", Decimal("7")),  # and the 1st of November's
        (Budget.Period.NONE, "all", Decimal("15")),  # and last month's
    ],
)
def test_spend_is_summed_over_the_budgets_period(owner: IssuedKey, period: str, name: str, spent: Decimal) -> None:
    budget_set(api_key=owner.api_key, amount=Decimal("1"), period=period)
    make_usage(api_key=owner.api_key, created_at=NOW, cost="1")
    make_usage(api_key=owner.api_key, created_at=NOW.replace(hour=0), cost="2")
    make_usage(api_key=owner.api_key, created_at=datetime(2026, 11, 1, tzinfo=UTC), cost="4")
    make_usage(api_key=owner.api_key, created_at=datetime(2026, 10, 31, 23, 59, 59, tzinfo=UTC), cost="8")

    budget_alerts_check(tenant_ids=set(), key_ids={owner.api_key.pk}, now=NOW)

    assert alerts() == [(name, "hard", spent), (name, "soft", spent)]


def test_a_budget_with_no_spend_raises_no_alert(owner: IssuedKey) -> None:
    budget_set(api_key=owner.api_key, amount=Decimal("0.0001"), soft_limit_percent=1)

    budget_alerts_check(tenant_ids=set(), key_ids={owner.api_key.pk}, now=NOW)

    assert alerts() == []
