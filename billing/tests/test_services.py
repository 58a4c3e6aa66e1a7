from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

import pytest
import time_machine

from billing.models import Budget, BudgetAlert, Price, RateLimit
from billing.services import budget_delete, budget_set, price_add, rate_limit_delete, rate_limit_set
from providers.tests.factories import make_route

pytestmark = pytest.mark.django_db

NOW = datetime(2026, 11, 15, 12, 0, tzinfo=UTC)


@time_machine.travel(NOW, tick=False)
def test_a_price_starts_now_unless_told_otherwise():
    model = make_route(public_id="gpt-4o").model

    price = price_add(model=model, input_per_million=Decimal("2.5"), output_per_million=Decimal(10))

    assert price.effective_from == NOW
    assert price.cached_input_per_million is None


def test_adding_a_price_keeps_the_earlier_ones_as_history():
    model = make_route(public_id="gpt-4o").model
    first = price_add(
        model=model,
        input_per_million=Decimal(5),
        output_per_million=Decimal(15),
        effective_from=datetime(2026, 1, 1, tzinfo=UTC),
    )

    second = price_add(
        model=model,
        input_per_million=Decimal("2.5"),
        output_per_million=Decimal(10),
        cached_input_per_million=Decimal("1.25"),
        effective_from=datetime(2026, 6, 1, tzinfo=UTC),
    )

    assert list(Price.objects.filter(route=model)) == [second, first]


def test_setting_a_rate_limit_again_replaces_it(tenant):
    first = rate_limit_set(tenant=tenant, requests_per_minute=10, tokens_per_minute=1000)

    second = rate_limit_set(tenant=tenant, max_concurrent=2)

    assert second.pk == first.pk
    second.refresh_from_db()
    assert (second.requests_per_minute, second.tokens_per_minute, second.max_concurrent) == (None, None, 2)


def test_a_rate_limit_per_model_is_kept_apart_from_the_owners_others(tenant, owner):
    limits = [
        rate_limit_set(tenant=tenant, requests_per_minute=10),
        rate_limit_set(tenant=tenant, model="o1", requests_per_minute=1),
        rate_limit_set(api_key=owner.api_key, requests_per_minute=5),
        rate_limit_set(api_key=owner.api_key, model="o1", requests_per_minute=2),
    ]

    assert RateLimit.objects.count() == len({limit.pk for limit in limits}) == 4


@pytest.mark.parametrize("owners", ["neither", "both"])
def test_a_rate_limit_needs_exactly_one_owner(tenant, owner, owners):
    chosen = {} if owners == "neither" else {"tenant": tenant, "api_key": owner.api_key}

    with pytest.raises(ValueError, match="either a tenant or an API key"):
        rate_limit_set(**chosen, requests_per_minute=1)

    assert not RateLimit.objects.exists()


def test_deleting_a_rate_limit_leaves_the_others(tenant, owner):
    kept = rate_limit_set(tenant=tenant)

    rate_limit_delete(rate_limit=rate_limit_set(api_key=owner.api_key))

    assert list(RateLimit.objects.all()) == [kept]


def test_setting_a_budget_again_replaces_it(owner):
    first = budget_set(api_key=owner.api_key, amount=Decimal(10))

    second = budget_set(api_key=owner.api_key, amount=Decimal(20), period=Budget.Period.DAILY, soft_limit_percent=50)

    assert second.pk == first.pk
    second.refresh_from_db()
    assert (second.amount, second.period, second.soft_limit_percent) == (Decimal(20), "daily", 50)


def test_a_tenants_budget_and_its_keys_budgets_are_separate(tenant, owner):
    budget_set(tenant=tenant, amount=Decimal(100))
    budget_set(api_key=owner.api_key, amount=Decimal(10))

    assert Budget.objects.count() == 2


@pytest.mark.parametrize("owners", ["neither", "both"])
def test_a_budget_needs_exactly_one_owner(tenant, owner, owners):
    chosen = {} if owners == "neither" else {"tenant": tenant, "api_key": owner.api_key}

    with pytest.raises(ValueError, match="either a tenant or an API key"):
        budget_set(**chosen, amount=Decimal(1))


def test_a_budget_needs_a_known_period(tenant):
    with pytest.raises(ValueError, match="weekly"):
        budget_set(tenant=tenant, amount=Decimal(1), period="weekly")

    assert not Budget.objects.exists()


def test_changing_a_budget_keeps_its_alerts(tenant):
    budget = budget_set(tenant=tenant, amount=Decimal(1))
    BudgetAlert.objects.create(budget=budget, period="2026-11", level="soft", spent=Decimal("0.8"))

    budget_set(tenant=tenant, amount=Decimal(5))

    assert BudgetAlert.objects.filter(budget=budget).count() == 1


def test_deleting_a_budget_deletes_its_alerts(tenant):
    budget = budget_set(tenant=tenant, amount=Decimal(1))
    BudgetAlert.objects.create(budget=budget, period="2026-11", level="hard", spent=Decimal(1))

    budget_delete(budget=budget)

    assert not Budget.objects.exists()
    assert not BudgetAlert.objects.exists()
