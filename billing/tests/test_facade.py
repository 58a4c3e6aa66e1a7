"""The snapshot billing hands the hot path: prices, limits and budgets loaded from the database."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest

from billing.facade import BudgetInfo, LimitInfo, load_billing
from billing.models import Budget, RateLimit
from billing.money import PriceInfo, PriceSchedule
from billing.services import budget_set, price_add
from billing.tests.factories import make_usage
from providers.tests.factories import make_route
from tenants.models import Tenant
from tenants.tests.factories import IssuedKey

NOW = datetime(2026, 11, 15, 12, 0, tzinfo=UTC)


@pytest.mark.django_db
def test_it_loads_each_routes_price_history_oldest_first() -> None:
    route, other = make_route(public_id="gpt-4o"), make_route(public_id="gpt-4o-mini")
    later = price_add(
        model=route.model,
        input_per_million=Decimal("2"),
        output_per_million=Decimal("8"),
        effective_from=NOW,
    )
    earlier = price_add(
        model=route.model,
        input_per_million=Decimal("2.5"),
        output_per_million=Decimal("10"),
        cached_input_per_million=Decimal("1.25"),
        effective_from=NOW - timedelta(days=30),
    )
    price_add(
        model=other.model, input_per_million=Decimal("0.15"), output_per_million=Decimal("0.6"), effective_from=NOW
    )

    prices = load_billing(now=NOW).prices

    assert sorted(prices) == ["gpt-4o", "gpt-4o-mini"]
    assert prices["gpt-4o"] == PriceSchedule(
        starts=(earlier.effective_from.timestamp(), later.effective_from.timestamp()),
        prices=(
            PriceInfo(earlier.effective_from.timestamp(), Decimal("2.5"), Decimal("10"), Decimal("1.25")),
            # No cached price: cached input tokens cost what other input tokens do.
            PriceInfo(later.effective_from.timestamp(), Decimal("2"), Decimal("8"), Decimal("2")),
        ),
    )
    assert prices["gpt-4o"].at(NOW.timestamp() - 1) == prices["gpt-4o"].prices[0]


@pytest.mark.django_db
def test_it_loads_limits_by_owner_and_model(tenant: Tenant, owner: IssuedKey) -> None:
    RateLimit.objects.create(tenant=tenant, requests_per_minute=600)
    RateLimit.objects.create(api_key=owner.api_key, model="gpt-4o", tokens_per_minute=10_000, max_concurrent=4)

    limits = load_billing(now=NOW).limits

    assert limits == {
        ("tenant", tenant.pk, ""): LimitInfo(requests_per_minute=600, tokens_per_minute=None, max_concurrent=None),
        ("key", owner.api_key.pk, "gpt-4o"): LimitInfo(
            requests_per_minute=None, tokens_per_minute=10_000, max_concurrent=4
        ),
    }


@pytest.mark.django_db
def test_it_loads_budgets_with_the_spend_of_their_current_period(
    tenant: Tenant, owner: IssuedKey, teammate: IssuedKey, outsider: IssuedKey
) -> None:
    monthly = budget_set(tenant=tenant, amount=Decimal("100"))
    daily = budget_set(api_key=owner.api_key, amount=Decimal("5"), period=Budget.Period.DAILY, soft_limit_percent=50)
    make_usage(api_key=owner.api_key, created_at=NOW, cost="1")
    make_usage(api_key=teammate.api_key, created_at=NOW - timedelta(days=2), cost="2")
    make_usage(api_key=owner.api_key, created_at=datetime(2026, 10, 31, tzinfo=UTC), cost="4")
    make_usage(api_key=outsider.api_key, created_at=NOW, cost="8")

    budgets = load_billing(now=NOW).budgets

    assert budgets == {
        ("tenant", tenant.pk): BudgetInfo(
            id=monthly.pk,
            period="monthly",
            amount=Decimal("100"),
            soft_limit_percent=80,
            period_name="2026-11",
            spent=Decimal("3"),
        ),
        ("key", owner.api_key.pk): BudgetInfo(
            id=daily.pk,
            period="daily",
            amount=Decimal("5"),
            soft_limit_percent=50,
            period_name="2026-11-15",
            spent=Decimal("1"),
        ),
    }


@pytest.mark.django_db
def test_a_budget_nobody_spent_against_has_spent_nothing(owner: IssuedKey) -> None:
    budget_set(api_key=owner.api_key, amount=Decimal("5"), period=Budget.Period.NONE)

    [budget] = load_billing(now=NOW).budgets.values()

    assert (budget.period_name, budget.spent) == ("all", Decimal(0))


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("limit_on", "applies_to"),
    [
        ("nobody", {"owner": False, "teammate": False, "outsider": False}),
        ("owner's key", {"owner": True, "teammate": False, "outsider": False}),
        ("owner's tenant", {"owner": True, "teammate": True, "outsider": False}),
        ("owner's key budget", {"owner": True, "teammate": False, "outsider": False}),
        ("owner's tenant budget", {"owner": True, "teammate": True, "outsider": False}),
    ],
)
def test_only_keys_with_a_limit_or_budget_go_to_the_limiter(
    tenant: Tenant,
    owner: IssuedKey,
    teammate: IssuedKey,
    outsider: IssuedKey,
    limit_on: str,
    applies_to: dict[str, bool],
) -> None:
    if limit_on == "owner's key":
        RateLimit.objects.create(api_key=owner.api_key, model="gpt-4o", requests_per_minute=1)
    elif limit_on == "owner's tenant":
        RateLimit.objects.create(tenant=tenant, max_concurrent=1)
    elif limit_on == "owner's key budget":
        budget_set(api_key=owner.api_key, amount=Decimal("1"))
    elif limit_on == "owner's tenant budget":
        budget_set(tenant=tenant, amount=Decimal("1"))
    keys = {"owner": owner, "teammate": teammate, "outsider": outsider}

    billing = load_billing(now=NOW)

    assert {
        name: billing.applies_to(issued.api_key.pk, issued.api_key.tenant_id) for name, issued in keys.items()
    } == applies_to
