from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
import time_machine
from django.urls import reverse
from django.utils import timezone

from billing.models import Budget, BudgetAlert, DeploymentPrice, Price, RateLimit
from billing.services import ONE_OWNER, budget_set, price_add, rate_limit_set
from billing.tests.factories import make_usage
from providers.tests.factories import make_provider, make_route

pytestmark = pytest.mark.django_db

NOW = datetime(2026, 11, 15, 12, 0, tzinfo=UTC)


@pytest.fixture
def rows(owner, outsider):
    """One of each billing model, for the pages that list and show them."""
    route = make_route(provider=make_provider(name="openai"), public_id="gpt-4o")
    budget = budget_set(tenant=owner.api_key.tenant, amount=Decimal(10))
    return {
        "price": price_add(model=route.model, input_per_million=Decimal("2.5"), output_per_million=Decimal(10)),
        "ratelimit": rate_limit_set(api_key=owner.api_key, model="gpt-4o", requests_per_minute=60),
        "budget": budget,
        "budgetalert": BudgetAlert.objects.create(budget=budget, period="2026-11", level="soft", spent=Decimal(8)),
        "usagerecord": make_usage(api_key=owner.api_key, prompt_tokens=12, completion_tokens=3),
    }


@pytest.mark.parametrize("name", ["price", "ratelimit", "budget", "budgetalert", "usagerecord"])
def test_each_billing_page_lists_and_shows_its_rows(admin_client, rows, name):
    listed = admin_client.get(reverse(f"admin:billing_{name}_changelist"))
    shown = admin_client.get(reverse(f"admin:billing_{name}_change", args=[rows[name].pk]))

    assert listed.status_code == 200
    assert [row.pk for row in listed.context["cl"].result_list] == [rows[name].pk]
    assert shown.status_code == 200


@pytest.mark.parametrize("name", ["price", "ratelimit", "budget"])
def test_prices_limits_and_budgets_can_be_added(admin_client, name):
    assert admin_client.get(reverse(f"admin:billing_{name}_add")).status_code == 200


def _inline_prices(response, model):
    formset = next(f for f in response.context["inline_admin_formsets"] if f.opts.model is model)
    return formset.formset.prefix


def test_a_public_model_page_shows_and_adds_its_prices(admin_client):
    route = make_route(public_id="gpt-4o", upstream_model="gpt-4o-2024-08-06")
    price_add(model=route.model, input_per_million=Decimal("2.5"), output_per_million=Decimal("10.125"))
    url = reverse("admin:providers_publicmodel_change", args=[route.model_id])

    response = admin_client.get(url)

    assert response.status_code == 200
    assert "10.125" in response.content.decode()
    prefix = _inline_prices(response, Price)
    page = {**response.context["adminform"].form.initial, "active": "on", "fallbacks": "", "retry_on": ["5xx"]}
    data = {
        **{name: value for name, value in page.items() if value not in (None, False)},
        "deployments-TOTAL_FORMS": "1",
        "deployments-INITIAL_FORMS": "1",
        "deployments-0-id": route.pk,
        "deployments-0-model": route.model_id,
        "deployments-0-provider": route.provider_id,
        "deployments-0-upstream_model": route.upstream_model,
        "deployments-0-priority": "0",
        "deployments-0-weight": "1",
        "deployments-0-active": "on",
        f"{prefix}-TOTAL_FORMS": "2",
        f"{prefix}-INITIAL_FORMS": "1",
        f"{prefix}-0-id": Price.objects.get().pk,
        f"{prefix}-0-route": route.model_id,
        # The price in effect, posted back unchanged: it may not be changed.
        f"{prefix}-0-effective_from_0": f"{timezone.localtime(Price.objects.get().effective_from):%Y-%m-%d}",
        f"{prefix}-0-effective_from_1": f"{timezone.localtime(Price.objects.get().effective_from):%H:%M:%S}",
        f"{prefix}-0-input_per_million": "2.5",
        f"{prefix}-0-output_per_million": "10.125",
        f"{prefix}-1-route": route.model_id,
        f"{prefix}-1-effective_from_0": "2026-12-01",
        f"{prefix}-1-effective_from_1": "00:00:00",
        f"{prefix}-1-input_per_million": "2",
        f"{prefix}-1-output_per_million": "8",
    }

    saved = admin_client.post(url, data)

    assert saved.status_code == 302, saved.context["inline_admin_formsets"][-1].formset.errors
    assert sorted(p.input_per_million for p in Price.objects.filter(route=route.model)) == [Decimal(2), Decimal("2.5")]


def test_a_deployment_page_shows_and_adds_its_provider_costs(admin_client):
    route = make_route(public_id="gpt-4o", upstream_model="gpt-4o-2024-08-06")
    url = reverse("admin:providers_modelroute_change", args=[route.pk])
    prefix = _inline_prices(admin_client.get(url), DeploymentPrice)
    data = {
        "model": route.model_id,
        "provider": route.provider_id,
        "upstream_model": route.upstream_model,
        "active": "on",
        "priority": "0",
        "weight": "1",
        f"{prefix}-TOTAL_FORMS": "1",
        f"{prefix}-INITIAL_FORMS": "0",
        f"{prefix}-0-deployment": route.pk,
        f"{prefix}-0-effective_from_0": "2026-01-01",
        f"{prefix}-0-effective_from_1": "00:00:00",
        f"{prefix}-0-input_per_million": "1.25",
        f"{prefix}-0-output_per_million": "5",
    }

    saved = admin_client.post(url, data)

    assert saved.status_code == 302, saved.context["inline_admin_formsets"][-1].formset.errors
    assert [(c.input_per_million, c.output_per_million) for c in route.costs.all()] == [(Decimal("1.25"), Decimal(5))]
    assert "1.25" in admin_client.get(url).content.decode()


def test_the_price_list_filters_by_provider_and_finds_a_model(admin_client):
    openai = make_provider(name="openai")
    wanted = price_add(
        model=make_route(provider=openai, public_id="gpt-4o").model, input_per_million=1, output_per_million=2
    )
    price_add(model=make_route(public_id="llama").model, input_per_million=1, output_per_million=2)
    url = reverse("admin:billing_price_changelist")

    by_provider = admin_client.get(f"{url}?route__deployments__provider__id__exact={openai.pk}")
    by_search = admin_client.get(f"{url}?q=gpt-4o")

    assert [p.pk for p in by_provider.context["cl"].result_list] == [wanted.pk]
    assert [p.pk for p in by_search.context["cl"].result_list] == [wanted.pk]


def test_a_rate_limit_needs_one_owner_in_the_admin(admin_client, owner):
    data = {"tenant": owner.api_key.tenant_id, "api_key": owner.api_key.pk, "model": "", "requests_per_minute": "5"}

    response = admin_client.post(reverse("admin:billing_ratelimit_add"), data)

    assert response.status_code == 200
    assert ONE_OWNER in response.content.decode()
    assert not RateLimit.objects.exists()


def test_a_budget_is_added_in_the_admin(admin_client, owner):
    data = {"api_key": owner.api_key.pk, "period": "daily", "amount": "12.5", "soft_limit_percent": "90"}
    data |= {"alerts-TOTAL_FORMS": "0", "alerts-INITIAL_FORMS": "0"}

    response = admin_client.post(reverse("admin:billing_budget_add"), data)

    assert response.status_code == 302
    assert Budget.objects.get().amount == Decimal("12.5")


@pytest.mark.parametrize("value", ["abc", "", "1.5", "-1", "١", str(2**63)])
@pytest.mark.parametrize("url", ["/admin/billing/ratelimit/", "/admin/billing/budget/"])
def test_a_hand_edited_tenant_filter_is_the_admins_invalid_filter_note_not_a_500(admin_client, owner, url, value):
    response = admin_client.get(url, {"owner_tenant": value})

    assert (response.status_code, response["Location"]) == (302, f"{url}?e=1")


def test_the_limit_and_budget_lists_filter_by_tenant_including_its_keys(admin_client, owner, outsider):
    mine = [rate_limit_set(tenant=owner.api_key.tenant).pk, rate_limit_set(api_key=owner.api_key).pk]
    rate_limit_set(api_key=outsider.api_key)
    budget = budget_set(api_key=owner.api_key, amount=Decimal(1))
    budget_set(tenant=outsider.api_key.tenant, amount=Decimal(1))
    tenant_id = owner.api_key.tenant_id

    limits = admin_client.get(reverse("admin:billing_ratelimit_changelist") + f"?owner_tenant={tenant_id}")
    budgets = admin_client.get(reverse("admin:billing_budget_changelist") + f"?owner_tenant={tenant_id}")

    assert sorted(r.pk for r in limits.context["cl"].result_list) == sorted(mine)
    assert [b.pk for b in budgets.context["cl"].result_list] == [budget.pk]


@time_machine.travel(NOW, tick=False)
def test_the_budget_list_shows_each_budgets_spend_this_period(admin_client, owner, teammate):
    make_usage(api_key=owner.api_key, cost="1.5", created_at=NOW - timedelta(days=1))
    make_usage(api_key=teammate.api_key, cost="0.25", created_at=NOW)
    make_usage(api_key=owner.api_key, cost="100", created_at=NOW - timedelta(days=30))
    budget_set(tenant=owner.api_key.tenant, amount=Decimal(10))

    response = admin_client.get(reverse("admin:billing_budget_changelist"))

    assert response.context["cl"].result_list[0].spent == Decimal("1.75")
    assert '<td class="field-spent">$1.75</td>' in response.content.decode()


def test_the_ledger_cannot_be_added_to_changed_or_deleted(admin_client, owner):
    record = make_usage(api_key=owner.api_key, status=200)
    change_url = reverse("admin:billing_usagerecord_change", args=[record.pk])

    added = admin_client.get(reverse("admin:billing_usagerecord_add"))
    changed = admin_client.post(change_url, {"status": "500", "model": "other"})
    deleted = admin_client.post(reverse("admin:billing_usagerecord_delete", args=[record.pk]), {"post": "yes"})
    shown = admin_client.get(change_url)

    assert (added.status_code, changed.status_code, deleted.status_code) == (403, 403, 403)
    record.refresh_from_db()
    assert (record.status, record.model) == (200, "gpt-4o")
    assert shown.status_code == 200
    assert "Save" not in shown.content.decode()


def test_budget_alerts_cannot_be_added_or_changed(admin_client, tenant):
    alert = BudgetAlert.objects.create(
        budget=budget_set(tenant=tenant, amount=Decimal(1)), period="2026-11", level="soft", spent=Decimal("0.8")
    )

    assert admin_client.get(reverse("admin:billing_budgetalert_add")).status_code == 403
    changed = admin_client.post(reverse("admin:billing_budgetalert_change", args=[alert.pk]), {"level": "hard"})
    assert changed.status_code == 403
    assert BudgetAlert.objects.get().level == "soft"


def test_the_ledger_list_shows_tokens_cost_and_owner_in_a_fixed_number_of_queries(
    admin_client, owner, outsider, django_assert_max_num_queries
):
    make_usage(api_key=owner.api_key, prompt_tokens=12, completion_tokens=3, cached_tokens=2, cost="0.0000125")
    url = reverse("admin:billing_usagerecord_changelist")
    with django_assert_max_num_queries(20) as few:
        admin_client.get(url)
    for _ in range(10):
        make_usage(api_key=owner.api_key)
        make_usage(api_key=outsider.api_key)

    with django_assert_max_num_queries(len(few)):
        response = admin_client.get(url)

    html = response.content.decode()
    assert "12 → 3 (2 cached)" in html
    assert "$0.0000125" in html
    assert owner.api_key.prefix in html


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("status_class=2", ["ok"]),
        ("status_class=4", ["refused"]),
        ("status_class=5", ["failed"]),
        ("streamed__exact=1", ["failed"]),
        ("model=o1", ["refused"]),
        ("provider=azure", ["failed"]),
        ("operation=embeddings", ["ok"]),
        ("q=REQUEST", ["ok"]),
        ("q=client-7", ["refused"]),
        ("q=PREFIX", ["ok", "refused", "failed"]),
        ("created_at__year=2026&created_at__month=11&created_at__day=14", ["refused"]),
    ],
)
def test_the_ledger_list_filters_and_searches(admin_client, owner, query, expected):
    make_route(provider=make_provider(name="azure"), public_id="o1")
    records = {
        "ok": make_usage(api_key=owner.api_key, operation="embeddings", created_at=NOW),
        "refused": make_usage(
            api_key=owner.api_key,
            model="o1",
            status=429,
            client_request_id="client-7",
            created_at=NOW - timedelta(days=1),
        ),
        "failed": make_usage(api_key=owner.api_key, provider="azure", status=502, streamed=True, created_at=NOW),
    }
    query = query.replace("REQUEST", records["ok"].request_id).replace("PREFIX", owner.api_key.prefix)

    response = admin_client.get(reverse("admin:billing_usagerecord_changelist") + f"?{query}")

    assert sorted(r.pk for r in response.context["cl"].result_list) == sorted(records[name].pk for name in expected)


def test_the_ledger_has_no_bulk_delete_action(admin_client, owner):
    make_usage(api_key=owner.api_key)

    response = admin_client.get(reverse("admin:billing_usagerecord_changelist"))

    assert response.context["action_form"] is None


def test_budget_alerts_and_budgets_are_labelled_by_owner_period_level_and_amount(admin_client, owner, tenant):
    budget = budget_set(api_key=owner.api_key, amount=Decimal("1234.5"))
    monthly = BudgetAlert.objects.create(budget=budget, period="2026-11", level="soft", spent=Decimal(1000))
    lifetime = BudgetAlert.objects.create(budget=budget, period="all", level="hard", spent=Decimal(1300))

    html = admin_client.get(reverse("admin:billing_budgetalert_change", args=[monthly.pk])).content.decode()

    assert str(monthly) == f"{owner.api_key}: soft limit reached in 2026-11"
    assert str(lifetime) == f"{owner.api_key}: hard limit reached over its lifetime"
    assert str(budget) == f"{owner.api_key}: $1,234.50 monthly"
    assert "soft limit reached in 2026-11" in html
    assert "BudgetAlert object" not in html
    assert "$1,000.00" in html
