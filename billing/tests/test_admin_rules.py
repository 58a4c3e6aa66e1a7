"""The console and the management API refuse the same rate limits and budgets, in the same words."""

from __future__ import annotations

from decimal import Decimal

import pytest
from django.urls import reverse

from billing.models import Budget, RateLimit
from billing.services import budget_set, rate_limit_set
from billing.tests.factories import make_user, token_headers
from providers.tests.factories import make_route
from tenants.tests.factories import make_tenant

pytestmark = pytest.mark.django_db


@pytest.fixture
def operator(db) -> dict[str, str]:
    return token_headers(make_user(staff=True))


@pytest.fixture
def routes(db) -> None:
    make_route(public_id="gpt-4o")
    make_route(public_id="o1")


def _refusals(admin_client, client, operator, name: str, body: dict) -> tuple[dict, dict]:
    """What the console's add form and the API's create call each said, by field."""
    console = admin_client.post(reverse(f"admin:billing_{name}_add"), {**body, "alerts-TOTAL_FORMS": "0"})
    api_url = {"ratelimit": "/api/rate-limits/", "budget": "/api/budgets/"}[name]
    api = client.post(api_url, body, content_type="application/json", headers=operator)
    assert console.status_code == 200, "the console accepted it"
    assert api.status_code == 400, api.content
    return {field: list(errors) for field, errors in console.context["adminform"].form.errors.items()}, api.json()


def _messages(errors: dict) -> list[str]:
    return sorted(message for messages in errors.values() for message in messages)


def test_both_refuse_a_rate_limit_on_a_misspelt_model_with_the_same_message(
    admin_client, client, operator, tenant, routes
):
    body = {"tenant": tenant.pk, "model": "gpt4o", "requests_per_minute": 5}

    console, api = _refusals(admin_client, client, operator, "ratelimit", body)

    assert console == api == {"model": ["Unknown model: gpt4o."]}
    assert not RateLimit.objects.exists()


def test_both_refuse_a_model_the_tenant_may_not_use_with_the_same_message(admin_client, client, operator, routes):
    narrow = make_tenant(slug="narrow", allowed_model_ids=[make_route(public_id="mini").pk])
    body = {"tenant": narrow.pk, "model": "o1", "requests_per_minute": 5}

    console, api = _refusals(admin_client, client, operator, "ratelimit", body)

    assert console == api == {"model": ["The tenant may not use: o1."]}
    assert not RateLimit.objects.exists()


@pytest.mark.parametrize(
    ("owned", "model", "said", "console_field"),
    [
        (True, "gpt-4o", "This tenant already has a rate limit on gpt-4o: change that one instead.", "model"),
        (True, "", "This tenant already has a rate limit on all models: change that one instead.", "model"),
        (False, "", "Give either a tenant or an API key, not both and not neither.", "tenant"),
    ],
    ids=["a second limit on one model", "a second limit on all models", "no owner"],
)
def test_both_refuse_the_same_rate_limits_in_the_same_words(
    admin_client, client, operator, tenant, routes, owned, model, said, console_field
):
    rate_limit_set(tenant=tenant, model=model, requests_per_minute=1)
    body = {**({"tenant": tenant.pk} if owned else {}), "model": model, "requests_per_minute": 5}

    console, api = _refusals(admin_client, client, operator, "ratelimit", body)

    assert _messages(console) == _messages(api) == [said]
    assert console_field in console  # said by the field to change, and not again by the model's constraints
    assert RateLimit.objects.count() == 1


def test_both_refuse_a_budget_with_two_owners_in_the_same_words(admin_client, client, operator, tenant, owner):
    body = {"tenant": tenant.pk, "api_key": owner.api_key.pk, "period": "monthly", "amount": "10"}

    console, api = _refusals(admin_client, client, operator, "budget", {**body, "soft_limit_percent": 80})

    assert _messages(console) == _messages(api) == ["Give either a tenant or an API key, not both and not neither."]
    assert not Budget.objects.exists()


@pytest.mark.parametrize(
    ("percent", "existing", "said"),
    [
        (0, False, {"soft_limit_percent": ["Give a share of the amount from 1 to 100 (percent)."]}),
        (150, False, {"soft_limit_percent": ["Give a share of the amount from 1 to 100 (percent)."]}),
        (80, True, {"tenant": ["This tenant already has a budget: change that one instead."]}),
    ],
)
def test_both_refuse_the_same_budgets(admin_client, client, operator, tenant, percent, existing, said):
    if existing:
        budget_set(tenant=tenant, amount=Decimal(1))
    body = {"tenant": tenant.pk, "period": "monthly", "amount": "10", "soft_limit_percent": percent}

    console, api = _refusals(admin_client, client, operator, "budget", body)

    assert console == said
    assert _messages(api) == _messages(said)
    assert Budget.objects.count() == int(existing)


def test_the_console_accepts_a_limit_on_a_known_model_or_on_all(admin_client, tenant, routes):
    url = reverse("admin:billing_ratelimit_add")
    for model in ("gpt-4o", ""):
        response = admin_client.post(url, {"tenant": tenant.pk, "model": model, "requests_per_minute": "5"})
        assert response.status_code == 302, response.context["adminform"].form.errors

    assert sorted(RateLimit.objects.values_list("model", flat=True)) == ["", "gpt-4o"]


def test_a_limit_changed_in_the_console_keeps_its_owner_and_model(admin_client, tenant, owner, routes):
    limit = rate_limit_set(tenant=tenant, model="gpt-4o", requests_per_minute=5)
    url = reverse("admin:billing_ratelimit_change", args=[limit.pk])

    form = admin_client.get(url).context["adminform"].form
    response = admin_client.post(
        url, {"api_key": owner.api_key.pk, "model": "o1", "requests_per_minute": "9", "tokens_per_minute": ""}
    )

    assert set(form.fields) == {"requests_per_minute", "tokens_per_minute", "max_concurrent"}
    assert response.status_code == 302
    assert list(RateLimit.objects.values_list("pk", "tenant_id", "api_key_id", "model", "requests_per_minute")) == [
        (limit.pk, tenant.pk, None, "gpt-4o", 9)
    ]


def test_a_budgets_soft_limit_is_checked_when_it_is_changed_too(admin_client, tenant):
    budget = budget_set(tenant=tenant, amount=Decimal(10))
    url = reverse("admin:billing_budget_change", args=[budget.pk])
    data = {"period": "monthly", "amount": "10", "alerts-TOTAL_FORMS": "0", "alerts-INITIAL_FORMS": "0"}

    refused = admin_client.post(url, {**data, "soft_limit_percent": "101"})
    accepted = admin_client.post(url, {**data, "soft_limit_percent": "90"})

    assert refused.context["adminform"].form.errors == {
        "soft_limit_percent": ["Give a share of the amount from 1 to 100 (percent)."]
    }
    assert accepted.status_code == 302
    assert list(Budget.objects.values_list("pk", "soft_limit_percent")) == [(budget.pk, 90)]
