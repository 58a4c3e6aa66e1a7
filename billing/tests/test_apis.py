"""The management API for usage, rate limits and budgets, seen by an operator, a tenant admin, and everyone else.

The tenant admin manages acme, whose keys are `owner` and `teammate`; `outsider`
is a key of globex, whose rows they must never see (404, as if they did not exist).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
import time_machine
from django.core.management import call_command

from billing.models import Budget, BudgetAlert, RateLimit
from billing.services import budget_set, rate_limit_set
from billing.tests.factories import make_usage, make_user, token_headers
from providers.tests.factories import make_route

pytestmark = pytest.mark.django_db

NOW = datetime(2026, 11, 15, 12, 0, tzinfo=UTC)
LIST_URLS = [
    "/api/tenants/",
    "/api/keys/",
    "/api/usage/",
    "/api/usage/totals/",
    "/api/rate-limits/",
    "/api/budgets/",
    "/api/budget-alerts/",
]


@pytest.fixture
def acme_admin(tenant) -> dict[str, str]:
    return token_headers(make_user(admin_of=[tenant]))


@pytest.fixture
def operator(db) -> dict[str, str]:
    return token_headers(make_user(staff=True))


@pytest.fixture
def routes(db) -> None:
    make_route(public_id="gpt-4o")
    make_route(public_id="o1")


def _ids(response) -> list[int]:
    assert response.status_code == 200, response.content
    return sorted(row["id"] for row in response.json()["results"])


def _post(client, url, headers, **body):
    return client.post(url, body, content_type="application/json", headers=headers)


def _patch(client, url, headers, **body):
    return client.patch(url, body, content_type="application/json", headers=headers)


# --- Who may call -----------------------------------------------------------------------------------


@pytest.mark.parametrize("url", LIST_URLS)
def test_every_endpoint_asks_for_a_token(client, url):
    assert client.get(url).status_code == 401


@pytest.mark.parametrize("url", LIST_URLS)
def test_every_endpoint_refuses_a_user_who_manages_nothing(client, url):
    assert client.get(url, headers=token_headers(make_user())).status_code == 403


@pytest.mark.parametrize("url", LIST_URLS)
def test_every_endpoint_answers_an_operator_and_a_tenant_admin(client, operator, acme_admin, url):
    assert client.get(url, headers=operator).status_code == 200
    assert client.get(url, headers=acme_admin).status_code == 200


# --- Usage ------------------------------------------------------------------------------------------


def test_a_tenant_admin_sees_only_their_tenants_usage(client, acme_admin, owner, teammate, outsider):
    mine = [make_usage(api_key=owner.api_key).pk, make_usage(api_key=teammate.api_key).pk]
    make_usage(api_key=outsider.api_key)

    assert _ids(client.get("/api/usage/", headers=acme_admin)) == sorted(mine)
    assert _ids(client.get(f"/api/usage/?tenant={outsider.api_key.tenant_id}", headers=acme_admin)) == []
    assert _ids(client.get(f"/api/usage/?key={outsider.api_key.pk}", headers=acme_admin)) == []


def test_an_operator_sees_all_usage_even_rows_of_deleted_keys(client, operator, owner, outsider):
    rows = [make_usage(api_key=owner.api_key).pk, make_usage(api_key=outsider.api_key).pk, make_usage().pk]

    assert _ids(client.get("/api/usage/", headers=operator)) == sorted(rows)


def test_a_usage_row_shows_its_tokens_cost_and_owner(client, acme_admin, owner):
    make_usage(api_key=owner.api_key, prompt_tokens=12, completion_tokens=3, cost="0.0000123", streamed=True)

    row = client.get("/api/usage/", headers=acme_admin).json()["results"][0]

    assert row["tenant"] == owner.api_key.tenant_id
    assert row["api_key"] == owner.api_key.pk
    assert row["key_prefix"] == owner.api_key.prefix
    assert (row["prompt_tokens"], row["completion_tokens"], row["streamed"]) == (12, 3, True)
    assert row["cost"] == "0.0000123000"


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("", ["early", "mid", "late", "other-model", "other-key"]),
        ("start=2026-11-10T00:00:00Z", ["mid", "late", "other-model", "other-key"]),
        ("end=2026-11-10T00:00:00Z", ["early"]),
        ("start=2026-11-10T00:00:00Z&end=2026-11-20T00:00:00Z", ["mid", "other-model", "other-key"]),
        ("start=2026-11-10T01:00:00%2B01:00", ["mid", "late", "other-model", "other-key"]),  # an offset, not UTC
        ("model=o1", ["other-model"]),
        ("key=TEAMMATE", ["other-key"]),
        ("model=gpt-4o&key=OWNER&start=2026-11-10T00:00:00Z", ["mid", "late"]),
        ("tenant=ACME", ["early", "mid", "late", "other-model", "other-key"]),
    ],
)
def test_usage_filters_by_time_key_model_and_tenant(client, acme_admin, owner, teammate, query, expected):
    rows = {
        "early": make_usage(api_key=owner.api_key, created_at=datetime(2026, 11, 1, tzinfo=UTC)),
        "mid": make_usage(api_key=owner.api_key, created_at=datetime(2026, 11, 10, tzinfo=UTC)),
        "late": make_usage(api_key=owner.api_key, created_at=datetime(2026, 11, 20, tzinfo=UTC)),
        "other-model": make_usage(api_key=owner.api_key, created_at=datetime(2026, 11, 12, tzinfo=UTC), model="o1"),
        "other-key": make_usage(api_key=teammate.api_key, created_at=datetime(2026, 11, 12, tzinfo=UTC)),
    }
    query = (
        query.replace("OWNER", str(owner.api_key.pk))
        .replace("TEAMMATE", str(teammate.api_key.pk))
        .replace("ACME", str(owner.api_key.tenant_id))
    )

    response = client.get(f"/api/usage/?{query}", headers=acme_admin)

    assert _ids(response) == sorted(rows[name].pk for name in expected)


def test_usage_is_listed_newest_first(client, acme_admin, owner):
    old = make_usage(api_key=owner.api_key, created_at=NOW - timedelta(days=1))
    new = make_usage(api_key=owner.api_key, created_at=NOW)

    results = client.get("/api/usage/", headers=acme_admin).json()["results"]

    assert [row["id"] for row in results] == [new.pk, old.pk]


@pytest.mark.parametrize(
    ("query", "field"),
    [
        ("start=yesterday", "start"),
        ("end=2026-13-01T00:00:00Z", "end"),
        ("start=2026-11-10T00:00:00Z&end=2026-11-01T00:00:00Z", "end"),
        ("key=abc", "key"),
        ("tenant=acme", "tenant"),
        (f"key={2**63}", "key"),  # past any id: SQLite cannot even be asked about it
        ("tenant=0", "tenant"),  # ids count from 1
    ],
)
@pytest.mark.parametrize("url", ["/api/usage/", "/api/usage/totals/"])
def test_a_bad_usage_filter_is_a_field_error(client, acme_admin, url, query, field):
    response = client.get(f"{url}?{query}", headers=acme_admin)

    assert response.status_code == 400
    assert field in response.json()


@pytest.mark.parametrize(
    "url",
    [
        "/api/usage/?tenant=",
        "/api/budget-alerts/?budget=",
        "/api/rate-limits/?tenant=",
        "/api/budgets/?tenant=",
        "/api/deployment-prices/?deployment=",
        "/api/keys/?tenant=",
    ],
)
def test_an_id_filter_takes_any_64_bit_id_and_refuses_a_larger_one(client, operator, url):
    field = url.rpartition("?")[2].removesuffix("=")

    largest = client.get(f"{url}{2**63 - 1}", headers=operator)
    past = client.get(f"{url}{2**63}", headers=operator)

    assert (largest.status_code, largest.json()["results"]) == (200, [])
    assert past.status_code == 400
    assert field in past.json()


def test_usage_is_paginated_by_limit_and_offset(client, acme_admin, owner):
    rows = [make_usage(api_key=owner.api_key, created_at=NOW - timedelta(minutes=n)).pk for n in range(5)]

    first = client.get("/api/usage/?limit=2", headers=acme_admin).json()
    last = client.get("/api/usage/?limit=2&offset=4", headers=acme_admin).json()

    assert first["count"] == 5
    assert [row["id"] for row in first["results"]] == rows[:2]
    assert "offset=2" in first["next"]
    assert [row["id"] for row in last["results"]] == rows[4:]
    assert last["next"] is None


def test_totals_add_up_requests_tokens_and_cost_per_model(client, acme_admin, owner, teammate, outsider):
    make_usage(api_key=owner.api_key, prompt_tokens=100, completion_tokens=10, cached_tokens=40, cost="0.25")
    make_usage(api_key=teammate.api_key, prompt_tokens=50, completion_tokens=5, cost="0.125")
    make_usage(api_key=owner.api_key, model="o1", prompt_tokens=7, completion_tokens=3, cost="1.5")
    make_usage(api_key=outsider.api_key, prompt_tokens=1000, completion_tokens=1000, cost="99")

    totals = client.get("/api/usage/totals/", headers=acme_admin).json()

    assert totals == {
        "requests": 3,
        "prompt_tokens": 157,
        "completion_tokens": 18,
        "cached_tokens": 40,
        "cost": "1.8750000000",
        "by_model": [
            {"model": "gpt-4o", "requests": 2, "prompt_tokens": 150, "completion_tokens": 15, "cost": "0.3750000000"},
            {"model": "o1", "requests": 1, "prompt_tokens": 7, "completion_tokens": 3, "cost": "1.5000000000"},
        ],
    }


def test_totals_follow_the_filters(client, acme_admin, owner, teammate):
    make_usage(api_key=owner.api_key, prompt_tokens=100, created_at=datetime(2026, 11, 1, tzinfo=UTC))
    make_usage(api_key=owner.api_key, prompt_tokens=10, created_at=datetime(2026, 11, 20, tzinfo=UTC))
    make_usage(api_key=teammate.api_key, prompt_tokens=1, created_at=datetime(2026, 11, 20, tzinfo=UTC))

    query = f"key={owner.api_key.pk}&start=2026-11-10T00:00:00Z"
    totals = client.get(f"/api/usage/totals/?{query}", headers=acme_admin).json()

    assert (totals["requests"], totals["prompt_tokens"]) == (1, 10)


def test_totals_of_nothing_are_zero(client, acme_admin):
    totals = client.get("/api/usage/totals/", headers=acme_admin).json()

    assert totals == {
        "requests": 0,
        "prompt_tokens": 0,
        "completion_tokens": 0,
        "cached_tokens": 0,
        "cost": "0.0000000000",
        "by_model": [],
    }


def test_totals_take_the_same_few_queries_however_many_rows(client, acme_admin, owner, django_assert_num_queries):
    make_usage(api_key=owner.api_key)
    with django_assert_num_queries(4):  # token, permission, the totals, the per-model totals
        client.get("/api/usage/totals/", headers=acme_admin)

    for model in ("gpt-4o", "o1", "o3"):
        for _ in range(5):
            make_usage(api_key=owner.api_key, model=model)
    with django_assert_num_queries(4):
        client.get("/api/usage/totals/", headers=acme_admin)


# --- Rate limits ------------------------------------------------------------------------------------


def test_a_tenant_admin_sets_limits_on_their_tenant_and_its_keys(client, acme_admin, tenant, owner, routes):
    on_tenant = _post(client, "/api/rate-limits/", acme_admin, tenant=tenant.pk, requests_per_minute=60)
    on_key = _post(client, "/api/rate-limits/", acme_admin, api_key=owner.api_key.pk, model="o1", max_concurrent=2)

    assert on_tenant.status_code == 201, on_tenant.content
    assert on_tenant.json() == {
        "id": on_tenant.json()["id"],
        "tenant": tenant.pk,
        "api_key": None,
        "model": "",
        "requests_per_minute": 60,
        "tokens_per_minute": None,
        "max_concurrent": None,
    }
    assert on_key.status_code == 201, on_key.content
    limit = RateLimit.objects.get(pk=on_key.json()["id"])
    assert (limit.api_key_id, limit.model, limit.max_concurrent) == (owner.api_key.pk, "o1", 2)


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"tenant": "GLOBEX"}, "tenant"),
        ({"api_key": "OUTSIDER"}, "api_key"),
        ({}, "non_field_errors"),
        ({"tenant": "ACME", "api_key": "OWNER"}, "non_field_errors"),
        ({"tenant": "ACME", "model": "no-such-model"}, "model"),
        ({"tenant": "ACME", "requests_per_minute": -1}, "requests_per_minute"),
        ({"tenant": "ACME", "tokens_per_minute": "many"}, "tokens_per_minute"),
    ],
)
def test_an_invalid_rate_limit_is_refused_with_the_fields_error(
    client, acme_admin, owner, outsider, routes, body, field
):
    ids = {
        "ACME": owner.api_key.tenant_id,
        "GLOBEX": outsider.api_key.tenant_id,
        "OWNER": owner.api_key.pk,
        "OUTSIDER": outsider.api_key.pk,
    }
    body = {name: ids.get(value, value) for name, value in body.items()}

    response = _post(client, "/api/rate-limits/", acme_admin, **body)

    assert response.status_code == 400
    assert field in response.json()
    assert not RateLimit.objects.exists()


def test_a_second_rate_limit_for_the_same_owner_and_model_is_refused(client, acme_admin, tenant, routes):
    rate_limit_set(tenant=tenant, model="o1", requests_per_minute=10)

    again = _post(client, "/api/rate-limits/", acme_admin, tenant=tenant.pk, model="o1", requests_per_minute=20)
    other_model = _post(client, "/api/rate-limits/", acme_admin, tenant=tenant.pk, requests_per_minute=20)

    assert again.status_code == 400
    assert "already has a rate limit on o1" in again.json()["non_field_errors"][0]
    assert other_model.status_code == 201


def test_a_tenant_admin_sees_only_their_tenants_rate_limits(client, acme_admin, tenant, owner, outsider):
    mine = [rate_limit_set(tenant=tenant).pk, rate_limit_set(api_key=owner.api_key).pk]
    theirs = [rate_limit_set(tenant=outsider.api_key.tenant).pk, rate_limit_set(api_key=outsider.api_key).pk]

    assert _ids(client.get("/api/rate-limits/", headers=acme_admin)) == sorted(mine)
    for limit_id in theirs:
        url = f"/api/rate-limits/{limit_id}/"
        assert client.get(url, headers=acme_admin).status_code == 404
        assert _patch(client, url, acme_admin, requests_per_minute=1).status_code == 404
        assert client.delete(url, headers=acme_admin).status_code == 404
    assert RateLimit.objects.filter(pk__in=theirs, requests_per_minute=None).count() == 2


def test_an_operator_sees_every_rate_limit_and_can_filter_by_tenant(client, operator, tenant, owner, outsider):
    on_acme = rate_limit_set(tenant=tenant).pk
    on_owner = rate_limit_set(api_key=owner.api_key).pk
    on_outsider = rate_limit_set(api_key=outsider.api_key).pk

    assert _ids(client.get("/api/rate-limits/", headers=operator)) == sorted([on_acme, on_owner, on_outsider])
    assert _ids(client.get(f"/api/rate-limits/?tenant={tenant.pk}", headers=operator)) == sorted([on_acme, on_owner])


def test_changing_a_rate_limit_keeps_its_owner_and_model(client, acme_admin, tenant, outsider, routes):
    limit = rate_limit_set(tenant=tenant, model="o1", requests_per_minute=10, tokens_per_minute=1000)

    response = _patch(
        client,
        f"/api/rate-limits/{limit.pk}/",
        acme_admin,
        requests_per_minute=None,
        max_concurrent=3,
        tenant=outsider.api_key.tenant_id,
        model="gpt-4o",
    )

    assert response.status_code == 200, response.content
    limit.refresh_from_db()
    assert (limit.tenant_id, limit.model) == (tenant.pk, "o1")
    assert (limit.requests_per_minute, limit.tokens_per_minute, limit.max_concurrent) == (None, 1000, 3)
    assert response.json()["max_concurrent"] == 3


def test_a_rate_limit_is_changed_with_patch_not_put(client, acme_admin, tenant):
    limit = rate_limit_set(tenant=tenant)

    response = client.put(
        f"/api/rate-limits/{limit.pk}/", {"requests_per_minute": 5}, content_type="application/json", headers=acme_admin
    )

    assert response.status_code == 405


def test_a_tenant_admin_deletes_their_rate_limit(client, acme_admin, tenant):
    limit = rate_limit_set(tenant=tenant)

    assert client.delete(f"/api/rate-limits/{limit.pk}/", headers=acme_admin).status_code == 204
    assert not RateLimit.objects.exists()


# --- Budgets ----------------------------------------------------------------------------------------


@time_machine.travel(NOW, tick=False)
def test_a_budget_shows_its_spend_in_the_current_period(client, acme_admin, tenant, owner, teammate, outsider):
    make_usage(api_key=owner.api_key, cost="1.25", created_at=NOW - timedelta(days=2))
    make_usage(api_key=teammate.api_key, cost="0.5", created_at=NOW - timedelta(hours=1))
    make_usage(api_key=owner.api_key, cost="100", created_at=datetime(2026, 10, 31, 23, 59, tzinfo=UTC))
    make_usage(api_key=outsider.api_key, cost="100", created_at=NOW)

    response = _post(client, "/api/budgets/", acme_admin, tenant=tenant.pk, amount="50", period="monthly")

    assert response.status_code == 201, response.content
    assert response.json() == {
        "id": response.json()["id"],
        "tenant": tenant.pk,
        "api_key": None,
        "period": "monthly",
        "amount": "50.0000",
        "soft_limit_percent": 80,
        "current_period": "2026-11",
        "spent": "1.7500000000",
    }


@time_machine.travel(NOW, tick=False)
def test_each_budget_counts_its_own_owner_and_period(client, operator, tenant, owner, teammate):
    make_usage(api_key=owner.api_key, cost="1", created_at=NOW - timedelta(days=2))
    make_usage(api_key=owner.api_key, cost="2", created_at=NOW - timedelta(hours=1))
    make_usage(api_key=teammate.api_key, cost="4", created_at=NOW - timedelta(hours=1))
    make_usage(api_key=teammate.api_key, cost="8", created_at=datetime(2025, 1, 1, tzinfo=UTC))
    budget_set(tenant=tenant, amount=Decimal(100), period=Budget.Period.MONTHLY)
    budget_set(api_key=owner.api_key, amount=Decimal(10), period=Budget.Period.DAILY)
    budget_set(api_key=teammate.api_key, amount=Decimal(10), period=Budget.Period.NONE)

    results = client.get("/api/budgets/", headers=operator).json()["results"]

    spent = {(row["tenant"], row["api_key"], row["current_period"]): row["spent"] for row in results}
    assert spent == {
        (tenant.pk, None, "2026-11"): "7.0000000000",
        (None, owner.api_key.pk, "2026-11-15"): "2.0000000000",
        (None, teammate.api_key.pk, "all"): "12.0000000000",
    }


def test_the_budget_list_takes_the_same_queries_however_many_budgets(
    client, operator, tenant, owner, outsider, django_assert_num_queries
):
    budget_set(tenant=tenant, amount=Decimal(1))
    with django_assert_num_queries(4):  # token, count, how far the rollups have read, the page
        client.get("/api/budgets/", headers=operator)

    budget_set(api_key=owner.api_key, amount=Decimal(1), period=Budget.Period.DAILY)
    budget_set(tenant=outsider.api_key.tenant, amount=Decimal(1), period=Budget.Period.NONE)
    with django_assert_num_queries(4):
        client.get("/api/budgets/", headers=operator)


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"tenant": "GLOBEX", "amount": "1"}, "tenant"),
        ({"api_key": "OUTSIDER", "amount": "1"}, "api_key"),
        ({"amount": "1"}, "non_field_errors"),
        ({"tenant": "ACME", "api_key": "OWNER", "amount": "1"}, "non_field_errors"),
        ({"tenant": "ACME"}, "amount"),
        ({"tenant": "ACME", "amount": "-1"}, "amount"),
        ({"tenant": "ACME", "amount": "1.23456"}, "amount"),
        ({"tenant": "ACME", "amount": "1", "period": "weekly"}, "period"),
        ({"tenant": "ACME", "amount": "1", "soft_limit_percent": 0}, "soft_limit_percent"),
        ({"tenant": "ACME", "amount": "1", "soft_limit_percent": 101}, "soft_limit_percent"),
    ],
)
def test_an_invalid_budget_is_refused_with_the_fields_error(client, acme_admin, owner, outsider, body, field):
    ids = {
        "ACME": owner.api_key.tenant_id,
        "GLOBEX": outsider.api_key.tenant_id,
        "OWNER": owner.api_key.pk,
        "OUTSIDER": outsider.api_key.pk,
    }
    body = {name: ids.get(value, value) for name, value in body.items()}

    response = _post(client, "/api/budgets/", acme_admin, **body)

    assert response.status_code == 400
    assert field in response.json()
    assert not Budget.objects.exists()


def test_a_second_budget_for_the_same_owner_is_refused(client, acme_admin, owner):
    budget_set(api_key=owner.api_key, amount=Decimal(5))

    response = _post(client, "/api/budgets/", acme_admin, api_key=owner.api_key.pk, amount="10")

    assert response.status_code == 400
    assert "This key already has a budget" in response.json()["non_field_errors"][0]


def test_a_tenant_admin_sees_only_their_tenants_budgets(client, acme_admin, tenant, owner, outsider):
    mine = [budget_set(tenant=tenant, amount=Decimal(1)).pk, budget_set(api_key=owner.api_key, amount=Decimal(1)).pk]
    theirs = budget_set(api_key=outsider.api_key, amount=Decimal(1)).pk

    assert _ids(client.get("/api/budgets/", headers=acme_admin)) == sorted(mine)
    url = f"/api/budgets/{theirs}/"
    assert client.get(url, headers=acme_admin).status_code == 404
    assert _patch(client, url, acme_admin, amount="1000").status_code == 404
    assert client.delete(url, headers=acme_admin).status_code == 404
    assert Budget.objects.get(pk=theirs).amount == 1


def test_changing_a_budget_keeps_its_owner_and_unsent_fields(client, acme_admin, tenant, outsider):
    budget = budget_set(tenant=tenant, amount=Decimal(10), period=Budget.Period.DAILY, soft_limit_percent=50)

    response = _patch(
        client, f"/api/budgets/{budget.pk}/", acme_admin, amount="25.5", tenant=outsider.api_key.tenant_id
    )

    assert response.status_code == 200, response.content
    assert response.json()["amount"] == "25.5000"
    budget.refresh_from_db()
    assert (budget.tenant_id, budget.amount, budget.period, budget.soft_limit_percent) == (
        tenant.pk,
        Decimal("25.5"),
        "daily",
        50,
    )


def test_deleting_a_budget_deletes_its_alerts(client, acme_admin, tenant):
    budget = budget_set(tenant=tenant, amount=Decimal(1))
    BudgetAlert.objects.create(budget=budget, period="2026-11", level="soft", spent=Decimal("0.8"))

    assert client.delete(f"/api/budgets/{budget.pk}/", headers=acme_admin).status_code == 204
    assert not BudgetAlert.objects.exists()


# --- Budget alerts ----------------------------------------------------------------------------------


def test_a_tenant_admin_sees_only_their_tenants_budget_alerts(client, acme_admin, tenant, owner, outsider):
    on_tenant = budget_set(tenant=tenant, amount=Decimal(1))
    on_key = budget_set(api_key=owner.api_key, amount=Decimal(1))
    on_outsider = budget_set(api_key=outsider.api_key, amount=Decimal(1))
    mine = [
        BudgetAlert.objects.create(budget=on_tenant, period="2026-11", level="soft", spent=Decimal("0.8")).pk,
        BudgetAlert.objects.create(budget=on_key, period="2026-11", level="hard", spent=Decimal(1)).pk,
    ]
    theirs = BudgetAlert.objects.create(budget=on_outsider, period="2026-11", level="hard", spent=Decimal(1)).pk

    assert _ids(client.get("/api/budget-alerts/", headers=acme_admin)) == sorted(mine)
    assert _ids(client.get(f"/api/budget-alerts/?budget={on_key.pk}", headers=acme_admin)) == [mine[1]]
    assert client.get(f"/api/budget-alerts/{theirs}/", headers=acme_admin).status_code == 404
    alert = client.get(f"/api/budget-alerts/{mine[0]}/", headers=acme_admin).json()
    assert (alert["level"], alert["spent"], alert["period"]) == ("soft", "0.8000000000", "2026-11")


def test_budget_alerts_are_read_only(client, operator, tenant):
    budget = budget_set(tenant=tenant, amount=Decimal(1))
    alert = BudgetAlert.objects.create(budget=budget, period="2026-11", level="soft", spent=Decimal("0.8"))

    created = _post(client, "/api/budget-alerts/", operator, budget=budget.pk, period="x", level="soft", spent="1")
    deleted = client.delete(f"/api/budget-alerts/{alert.pk}/", headers=operator)

    assert (created.status_code, deleted.status_code) == (405, 405)
    assert BudgetAlert.objects.count() == 1


# --- Schema -----------------------------------------------------------------------------------------


def test_the_schema_lists_the_management_endpoints(client, operator):
    response = client.get("/api/schema/?format=json", headers=operator)

    assert response.status_code == 200
    schema = response.json()
    assert schema["openapi"].startswith("3.")
    paths = schema["paths"]
    for path in (
        "/api/tenants/",
        "/api/keys/",
        "/api/keys/{id}/revoke/",
        "/api/usage/",
        "/api/usage/totals/",
        "/api/rate-limits/{id}/",
        "/api/budgets/{id}/",
        "/api/budget-alerts/",
    ):
        assert path in paths
    assert not any(path.startswith("/v1/") for path in paths)
    assert {"get", "post"} <= set(paths["/api/keys/"])
    assert "put" not in paths["/api/budgets/{id}/"]
    assert schema["components"]["schemas"]["UsageTotals"]["properties"]["cost"]["type"] == "string"


def test_the_schema_generates_valid_and_without_warnings(tmp_path):
    # --fail-on-warn turns any warning of the generator (an unresolved type, a missing serializer) into an error.
    call_command("spectacular", "--fail-on-warn", "--validate", "--file", str(tmp_path / "schema.yaml"))

    assert "/api/usage/totals/" in (tmp_path / "schema.yaml").read_text()
