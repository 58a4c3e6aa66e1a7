"""Prices and provider costs through the management API: a history, added to and never rewritten.

Operators add rows and withdraw those that have not started. acme's admin may
read the prices of the models acme may use and nothing else (globex's model is
a 404 to them); provider costs are the operators' alone. What a row does is
checked where the hot path reads it: the billing snapshot (`load_billing`).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
import time_machine
from django.test import Client

from billing.facade import load_billing
from billing.models import DeploymentPrice, Price
from billing.services import deployment_price_add, price_add
from billing.tests.factories import make_user, token_headers
from providers.models import ModelRoute, PublicModel
from providers.tests.factories import make_route
from tenants.models import Tenant
from tenants.services import tenant_set_models

pytestmark = pytest.mark.django_db

NOW = datetime(2026, 11, 15, 12, 0, tzinfo=UTC)


@pytest.fixture(autouse=True)
def clock():
    with time_machine.travel(NOW, tick=False):
        yield


@pytest.fixture
def operator(db) -> dict[str, str]:
    return token_headers(make_user(staff=True))


@pytest.fixture
def acme_admin(tenant: Tenant) -> dict[str, str]:
    return token_headers(make_user(admin_of=[tenant]))


@pytest.fixture
def deployment(db) -> ModelRoute:
    return make_route(public_id="gpt-4o")


@pytest.fixture
def kept_for_globex(db, tenant: Tenant, deployment: ModelRoute) -> PublicModel:
    """A model acme may not use: acme is limited to gpt-4o."""
    other = make_route(public_id="globex-only").model
    tenant_set_models(tenant=tenant, model_ids=[deployment.model_id])
    return other


def _post(client: Client, url: str, headers: dict[str, str], **body):
    return client.post(url, body, content_type="application/json", headers=headers)


def _price(model: PublicModel, start: datetime, amount: str = "1") -> Price:
    return price_add(
        model=model, input_per_million=Decimal(amount), output_per_million=Decimal(amount), effective_from=start
    )


def test_an_operator_adds_a_price_that_charges_from_now(client, operator, deployment):
    response = _post(client, "/api/prices/", operator, model="gpt-4o", input_per_million="2.5", output_per_million="10")

    assert response.status_code == 201, response.content
    body = response.json()
    assert (body["model"], body["input_per_million"], body["cached_input_per_million"]) == ("gpt-4o", "2.500000", None)
    assert datetime.fromisoformat(body["effective_from"]) == NOW
    charged = load_billing().prices["gpt-4o"].at(NOW.timestamp())
    assert (charged.input, charged.output, charged.cached_input) == (Decimal("2.5"), Decimal("10"), Decimal("2.5"))


def test_a_later_price_is_scheduled_and_the_current_one_charges_until_then(client, operator, deployment):
    _price(deployment.model, NOW - timedelta(days=30), "1")
    later = NOW + timedelta(days=1)

    response = _post(
        client,
        "/api/prices/",
        operator,
        model="gpt-4o",
        input_per_million="3",
        output_per_million="3",
        effective_from=later.isoformat(),
    )

    assert response.status_code == 201, response.content
    schedule = load_billing().prices["gpt-4o"]
    assert schedule.at(NOW.timestamp()).input == Decimal("1")
    assert schedule.at(later.timestamp()).input == Decimal("3")


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"model": "gpt-5", "input_per_million": "1", "output_per_million": "1"}, "model"),
        ({"model": "gpt-4o", "input_per_million": "-1", "output_per_million": "1"}, "input_per_million"),
        ({"model": "gpt-4o", "input_per_million": "1"}, "output_per_million"),
        (
            {"model": "gpt-4o", "input_per_million": "1", "output_per_million": "1", "effective_from": "soon"},
            "effective_from",
        ),
    ],
)
def test_a_price_is_not_added_from_a_wrong_body(client, operator, deployment, body, field):
    response = _post(client, "/api/prices/", operator, **body)

    assert response.status_code == 400
    assert field in response.json()
    assert not Price.objects.exists()


def test_two_prices_of_a_model_cannot_start_at_the_same_time(client, operator, deployment):
    _price(deployment.model, NOW)

    response = _post(client, "/api/prices/", operator, model="gpt-4o", input_per_million="9", output_per_million="9")

    assert response.status_code == 400
    assert "effective_from" in response.json()
    assert Price.objects.count() == 1


def test_a_price_is_never_changed(client, operator, deployment):
    price = _price(deployment.model, NOW - timedelta(days=1))
    url = f"/api/prices/{price.pk}/"

    patched = client.patch(url, {"input_per_million": "9"}, content_type="application/json", headers=operator)
    put = client.put(url, {"model": "gpt-4o"}, content_type="application/json", headers=operator)

    assert (patched.status_code, put.status_code) == (405, 405)
    price.refresh_from_db()
    assert price.input_per_million == Decimal("1")


def test_a_scheduled_price_is_withdrawn_and_one_in_effect_is_kept(client, operator, deployment):
    started = _price(deployment.model, NOW - timedelta(days=1))
    scheduled = _price(deployment.model, NOW + timedelta(days=1))

    kept = client.delete(f"/api/prices/{started.pk}/", headers=operator)
    withdrawn = client.delete(f"/api/prices/{scheduled.pk}/", headers=operator)

    assert kept.status_code == 400
    assert "in effect" in kept.json()[0]
    assert withdrawn.status_code == 204
    assert list(Price.objects.values_list("pk", flat=True)) == [started.pk]


def test_prices_are_listed_newest_first_and_filtered_by_model(client, operator, deployment):
    older = _price(deployment.model, NOW - timedelta(days=2))
    newer = _price(deployment.model, NOW - timedelta(days=1))
    other = _price(make_route(public_id="o1").model, NOW)

    every = client.get("/api/prices/", headers=operator).json()["results"]
    mine = client.get("/api/prices/?model=gpt-4o", headers=operator).json()["results"]

    assert [row["id"] for row in every] == [newer.pk, older.pk, other.pk]
    assert [row["id"] for row in mine] == [newer.pk, older.pk]


def test_a_tenant_admin_reads_the_prices_of_their_models_only(client, acme_admin, deployment, kept_for_globex):
    theirs = _price(deployment.model, NOW)
    hidden = _price(kept_for_globex, NOW)

    listed = client.get("/api/prices/", headers=acme_admin)
    shown = client.get(f"/api/prices/{theirs.pk}/", headers=acme_admin)
    missing = client.get(f"/api/prices/{hidden.pk}/", headers=acme_admin)

    assert [row["id"] for row in listed.json()["results"]] == [theirs.pk]
    assert shown.status_code == 200
    assert missing.status_code == 404


def test_a_tenant_admin_may_not_add_or_withdraw_prices(client, acme_admin, deployment):
    scheduled = _price(deployment.model, NOW + timedelta(days=1))

    added = _post(client, "/api/prices/", acme_admin, model="gpt-4o", input_per_million="0", output_per_million="0")
    withdrawn = client.delete(f"/api/prices/{scheduled.pk}/", headers=acme_admin)

    assert (added.status_code, withdrawn.status_code) == (403, 403)
    assert list(Price.objects.values_list("pk", flat=True)) == [scheduled.pk]


@pytest.mark.parametrize("url", ["/api/prices/", "/api/deployment-prices/"])
def test_prices_ask_for_a_token_and_refuse_strangers(client, url, deployment):
    stranger = token_headers(make_user())

    assert client.get(url).status_code == 401
    assert client.get(url, headers=stranger).status_code == 403


# --- what providers charge ---------------------------------------------------------------------------------------


def test_an_operator_adds_a_provider_cost_for_a_deployment(client, operator, deployment):
    response = _post(
        client,
        "/api/deployment-prices/",
        operator,
        deployment=deployment.pk,
        input_per_million="2",
        output_per_million="8",
        cached_input_per_million="1",
    )

    assert response.status_code == 201, response.content
    body = response.json()
    assert (body["deployment"], body["model"], body["provider"]) == (deployment.pk, "gpt-4o", deployment.provider.name)
    cost = load_billing().costs[deployment.pk].at(NOW.timestamp())
    assert (cost.input, cost.output, cost.cached_input) == (Decimal("2"), Decimal("8"), Decimal("1"))


def test_provider_costs_are_filtered_by_deployment_and_model(client, operator, deployment):
    second = make_route(public_id="gpt-4o")
    mine = deployment_price_add(deployment=deployment, input_per_million=Decimal(1), output_per_million=Decimal(1))
    theirs = deployment_price_add(deployment=second, input_per_million=Decimal(1), output_per_million=Decimal(1))
    make_route(public_id="o1")

    by_deployment = client.get(f"/api/deployment-prices/?deployment={deployment.pk}", headers=operator).json()
    by_model = client.get("/api/deployment-prices/?model=gpt-4o", headers=operator).json()
    by_other_model = client.get("/api/deployment-prices/?model=o1", headers=operator).json()

    assert [row["id"] for row in by_deployment["results"]] == [mine.pk]
    assert sorted(row["id"] for row in by_model["results"]) == sorted([mine.pk, theirs.pk])
    assert by_other_model["results"] == []


def test_a_provider_cost_in_effect_is_kept_and_a_scheduled_one_withdrawn(client, operator, deployment):
    started = deployment_price_add(
        deployment=deployment, input_per_million=Decimal(1), output_per_million=Decimal(1), effective_from=NOW
    )
    scheduled = deployment_price_add(
        deployment=deployment,
        input_per_million=Decimal(2),
        output_per_million=Decimal(2),
        effective_from=NOW + timedelta(hours=1),
    )

    kept = client.delete(f"/api/deployment-prices/{started.pk}/", headers=operator)
    withdrawn = client.delete(f"/api/deployment-prices/{scheduled.pk}/", headers=operator)

    assert (kept.status_code, withdrawn.status_code) == (400, 204)
    assert list(DeploymentPrice.objects.values_list("pk", flat=True)) == [started.pk]


def test_provider_costs_are_for_operators_only(client, acme_admin, deployment):
    cost = deployment_price_add(deployment=deployment, input_per_million=Decimal(1), output_per_million=Decimal(1))

    listed = client.get("/api/deployment-prices/", headers=acme_admin)
    shown = client.get(f"/api/deployment-prices/{cost.pk}/", headers=acme_admin)
    added = _post(
        client,
        "/api/deployment-prices/",
        acme_admin,
        deployment=deployment.pk,
        input_per_million="0",
        output_per_million="0",
    )

    assert (listed.status_code, shown.status_code, added.status_code) == (403, 403, 403)
    assert DeploymentPrice.objects.count() == 1
