"""`portico createtenant`: a tenant with its models, limits, budget and first key, or nothing and a clear error.

What it made is checked where it is used: the key authenticates, its grant
carries the model list, and the billing snapshot holds the limits and budget.
"""

from __future__ import annotations

import io
import json
import time
from decimal import Decimal

import pytest
from django.core.management import CommandError, call_command

from billing.facade import LimitInfo, load_billing
from providers.tests.factories import make_route
from tenants.facade import authenticate, load_key_grants
from tenants.models import ApiKey, Tenant
from tenants.tests.factories import make_tenant

pytestmark = pytest.mark.django_db


@pytest.fixture
def models(db) -> None:
    make_route(public_id="gpt-4o")
    make_route(public_id="gpt-4o-mini")


def createtenant(*args: str) -> tuple[str, str]:
    out, err = io.StringIO(), io.StringIO()
    call_command("createtenant", *args, stdout=out, stderr=err)
    return out.getvalue(), err.getvalue()


def test_it_creates_a_tenant_with_models_limits_budget_and_a_key_it_prints_once(models):
    out, err = createtenant(
        "--name", "Acme Corp", "--models", "gpt-4o, gpt-4o-mini", "--rpm", "600", "--tpm", "90000",
        "--budget", "250.50", "--period", "daily", "--with-key", "ci",
    )  # fmt: skip

    plaintext = out.strip()
    tenant = Tenant.objects.get(slug="acme-corp")
    grant = authenticate(load_key_grants(), plaintext, time.time())
    assert (grant.tenant_id, grant.allowed_models) == (tenant.pk, frozenset({"gpt-4o", "gpt-4o-mini"}))
    billing = load_billing()
    assert billing.limits[("tenant", tenant.pk, "")] == LimitInfo(600, 90000, None)
    budget = billing.budgets[("tenant", tenant.pk)]
    assert (budget.amount, budget.period) == (Decimal("250.50"), "daily")
    assert "Created tenant acme-corp (Acme Corp)" in err
    assert plaintext not in err
    assert ApiKey.objects.get(tenant=tenant).name == "ci"


def test_without_options_the_tenant_may_use_every_model_and_has_no_limits(models):
    out, _err = createtenant("--name", "Globex", "--slug", "gx")

    tenant = Tenant.objects.get(slug="gx")
    assert "every model" in out
    assert not tenant.models_restricted
    assert load_billing().applies_to(0, tenant.pk) is False
    assert not ApiKey.objects.filter(tenant=tenant).exists()


def test_json_output_is_one_object_for_scripts(models):
    out, _err = createtenant("--name", "Initech", "--models", "gpt-4o", "--rpm", "60", "--with-key", "k", "--json")

    created = json.loads(out)
    assert created["slug"] == "initech"
    assert created["allowed_models"] == ["gpt-4o"]
    assert created["rate_limit"] == {"requests_per_minute": 60, "tokens_per_minute": None}
    assert created["budget"] is None
    assert authenticate(load_key_grants(), created["key"]["key"], time.time()).key_id == created["key"]["id"]


def test_a_taken_slug_is_refused_and_nothing_is_made(models):
    make_tenant(slug="acme")

    with pytest.raises(CommandError, match="The slug 'acme' is taken"):
        createtenant("--name", "Acme", "--with-key", "ci")

    assert Tenant.objects.count() == 1
    assert not ApiKey.objects.exists()


def test_an_unknown_model_is_named_and_nothing_is_made(models):
    with pytest.raises(CommandError, match=r"Unknown model id\(s\): gpt-5\. Known models: gpt-4o, gpt-4o-mini"):
        createtenant("--name", "Hooli", "--models", "gpt-4o,gpt-5", "--budget", "10")

    assert not Tenant.objects.filter(slug="hooli").exists()


@pytest.mark.parametrize(
    ("args", "problem"),
    [
        (("--name", "!!!"), "give one with --slug"),
        (("--name", "X", "--period", "daily"), "--period needs --budget"),
        (("--name", "X", "--slug", "not a slug"), "--slug"),
    ],
)
def test_a_wrong_option_is_explained(models, args, problem):
    with pytest.raises(CommandError, match=problem):
        createtenant(*args)

    assert not Tenant.objects.exists()


@pytest.mark.parametrize("args", [("--rpm", "0"), ("--budget", "-1"), ("--budget", "1.00001"), ("--tpm", "lots")])
def test_a_bad_number_is_refused_before_anything_is_made(models, args):
    with pytest.raises(CommandError):
        createtenant("--name", "Numbers", *args)

    assert not Tenant.objects.exists()
