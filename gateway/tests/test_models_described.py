"""/v1/models objects with Portico's description of each model, and the tenant setting that hides it.

The objects are built from what the snapshot loads (`load_models`, `load_billing`)
and checked against the `Model` schema of OpenAI's OpenAPI document; the tenant's
`describe_models` is followed from the admin's model, the management API and a
setup file to the grant the hot path reads, then to the answer of the ASGI app.
"""

from __future__ import annotations

import io
import time
from datetime import timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml
from django.contrib.auth import get_user_model
from django.core.management import call_command
from django.test import Client
from django.urls import reverse
from django.utils import timezone
from pytest_django import Settings

from billing.facade import load_billing
from billing.services import price_add
from gateway.routers.models import model_object
from gateway.tests.test_fastpath import run_in_process, started_portico
from providers.facade import ModelInfo, load_models
from providers.models import ModelRoute
from providers.tests.factories import make_provider, make_route
from tenants.facade import load_key_grants
from tenants.models import Tenant
from tenants.tests.factories import IssuedKey, make_key, make_tenant, management_token_headers
from tests.openai_schemas import schema

OPENAI_FIELDS = {"id", "object", "created", "owned_by"}
PORTICO_FIELDS = {"providers", "capabilities", "context_window", "max_output_tokens", "pricing", "model_family"}


def openai_model_schema() -> dict[str, Any]:
    """The `Model` schema of OpenAI's OpenAPI document (tests/specs/openai-schemas.json)."""
    model = schema("Model")
    # Portico's fields are extras: the check is that OpenAI's own hold and that nothing forbids the rest.
    assert model.get("additionalProperties", True) is not False
    return model


@pytest.fixture
def model_schema() -> dict[str, Any]:
    return openai_model_schema()


def _loaded(public_id: str) -> ModelInfo:
    return load_models()[public_id]


def _described(model: ModelInfo, *, now: float | None = None) -> dict[str, Any]:
    return model_object(model, described=True, billing=load_billing(), now=now or time.time())


@pytest.fixture
def gpt(db) -> ModelRoute:
    """A model with two deployments on one provider and one on another, a known window and a family."""
    primary = make_provider(kind="mock", name="azure-eu")
    spare = make_provider(kind="mock", name="openai-us")
    route = make_route(
        provider=primary,
        public_id="gpt-house",
        owned_by="openai",
        context_window=128_000,
        max_output_tokens=16_384,
        model_family="gpt-4o",
        supports_vision=True,
        priority=0,
    )
    make_route(provider=spare, public_id="gpt-house", priority=1)
    make_route(provider=primary, public_id="gpt-house", upstream_model="gpt-house-2", priority=2)
    return route


# --- the object ---------------------------------------------------------------------------------------------------


@pytest.mark.django_db
def test_a_described_model_adds_porticos_fields_after_openais(gpt):
    price_add(model=gpt.model, input_per_million=Decimal("2.5"), output_per_million=Decimal("10"))

    shown = _described(_loaded("gpt-house"))

    assert list(shown)[:4] == ["id", "object", "created", "owned_by"]
    assert set(shown) == OPENAI_FIELDS | PORTICO_FIELDS
    assert (shown["id"], shown["object"], shown["owned_by"]) == ("gpt-house", "model", "openai")
    assert shown["created"] == int(gpt.model.created_at.timestamp())
    assert shown["providers"] == ["azure-eu", "openai-us"]  # routing order, each provider once
    assert shown["capabilities"] == ["chat", "json_mode", "streaming", "tools", "vision"]
    assert (shown["context_window"], shown["max_output_tokens"]) == (128_000, 16_384)
    assert shown["model_family"] == "gpt-4o"


@pytest.mark.django_db
def test_what_portico_does_not_know_is_null():
    make_route(public_id="bare", supports_tools=False, supports_json_mode=False)

    shown = _described(_loaded("bare"))

    assert (shown["context_window"], shown["max_output_tokens"], shown["model_family"]) == (None, None, None)
    assert shown["pricing"] is None
    assert shown["capabilities"] == ["chat", "streaming"]


@pytest.mark.django_db
def test_prices_are_exact_decimal_strings_per_million_tokens(gpt):
    price_add(
        model=gpt.model,
        input_per_million=Decimal("0.150000"),
        output_per_million=Decimal("0.6"),
        cached_input_per_million=Decimal("0.075"),
    )

    shown = _described(_loaded("gpt-house"))

    assert shown["pricing"] == {
        "currency": "USD",
        "input_per_million": "0.15",
        "output_per_million": "0.6",
        "cached_input_per_million": "0.075",
    }


@pytest.mark.django_db
def test_cached_input_without_a_price_of_its_own_costs_the_input_price(gpt):
    price_add(model=gpt.model, input_per_million=Decimal("3"), output_per_million=Decimal("15"))

    pricing = _described(_loaded("gpt-house"))["pricing"]

    assert (pricing["input_per_million"], pricing["cached_input_per_million"]) == ("3", "3")


@pytest.mark.django_db
def test_the_price_shown_is_the_one_in_effect_at_the_time_asked(gpt):
    now = timezone.now()
    price_add(model=gpt.model, input_per_million=Decimal(1), output_per_million=Decimal(2), effective_from=now)
    later = now + timedelta(days=30)
    price_add(model=gpt.model, input_per_million=Decimal(4), output_per_million=Decimal(8), effective_from=later)
    model = _loaded("gpt-house")

    today = _described(model, now=now.timestamp() + 1)["pricing"]
    next_month = _described(model, now=later.timestamp() + 1)["pricing"]
    before_any = _described(model, now=now.timestamp() - 1)["pricing"]

    assert (today["input_per_million"], today["output_per_million"]) == ("1", "2")
    assert (next_month["input_per_million"], next_month["output_per_million"]) == ("4", "8")
    assert before_any is None


@pytest.mark.django_db
def test_a_model_not_described_is_exactly_openais_object(gpt):
    price_add(model=gpt.model, input_per_million=Decimal(1), output_per_million=Decimal(2))

    shown = model_object(_loaded("gpt-house"), described=False, billing=load_billing(), now=time.time())

    assert shown == {
        "id": "gpt-house",
        "object": "model",
        "created": int(gpt.model.created_at.timestamp()),
        "owned_by": "openai",
    }


@pytest.mark.django_db
def test_provider_names_are_left_out_when_the_operator_hides_them(gpt, settings: Settings):
    settings.PORTICO_HIDE_PROVIDER = True

    shown = _described(_loaded("gpt-house"))

    assert "providers" not in shown
    assert set(shown) == OPENAI_FIELDS | PORTICO_FIELDS - {"providers"}


@pytest.mark.django_db
@pytest.mark.parametrize("described", [True, False], ids=["described", "openai-only"])
def test_every_object_is_valid_against_openais_model_schema(gpt, model_schema, described):
    price_add(model=gpt.model, input_per_million=Decimal("2.5"), output_per_million=Decimal("10"))
    make_route(public_id="bare")

    for model in load_models().values():
        jsonschema.validate(
            model_object(model, described=described, billing=load_billing(), now=time.time()), model_schema
        )


def test_the_schema_check_can_fail(model_schema):
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate({"id": "x", "object": "model", "created": "yesterday", "owned_by": "p"}, model_schema)


# --- the tenant's setting, as far as the grant -------------------------------------------------------------------


@pytest.mark.django_db
def test_a_tenant_describes_models_unless_told_not_to():
    shown = make_key(tenant=make_tenant(slug="shown"))
    hidden = make_key(tenant=make_tenant(slug="hidden"))
    Tenant.objects.filter(slug="hidden").update(describe_models=False)

    grants = load_key_grants()

    assert grants[shown.api_key.prefix].describe_models is True
    assert grants[hidden.api_key.prefix].describe_models is False


@pytest.mark.django_db
@pytest.mark.parametrize(("ticked", "described"), [(True, True), (False, False)], ids=["ticked", "unticked"])
def test_the_console_sets_the_description_with_the_tenant(admin_client: Client, ticked: bool, described: bool):
    form = {
        "name": "Initech",
        "slug": "initech",
        "active": "on",
        **({"describe_models": "on"} if ticked else {}),
        "api_keys-TOTAL_FORMS": "0",
        "api_keys-INITIAL_FORMS": "0",
        "memberships-TOTAL_FORMS": "0",
        "memberships-INITIAL_FORMS": "0",
    }

    page = admin_client.get(reverse("admin:tenants_tenant_add"))
    admin_client.post(reverse("admin:tenants_tenant_add"), form)

    assert 'name="describe_models"' in page.content.decode()
    issued = make_key(tenant=Tenant.objects.get(slug="initech"))
    assert load_key_grants()[issued.api_key.prefix].describe_models is described


@pytest.mark.django_db
def test_an_operator_turns_the_description_off_through_the_management_api(client: Client, tenant, owner):
    operator = get_user_model().objects.create_user(username="operator", is_staff=True)
    headers = management_token_headers(operator)

    changed = client.patch(
        f"/api/tenants/{tenant.pk}/", {"describe_models": False}, content_type="application/json", headers=headers
    )
    created = client.post(
        "/api/tenants/", {"name": "Initech", "slug": "initech"}, content_type="application/json", headers=headers
    )

    assert changed.status_code == 200, changed.content
    assert changed.json()["describe_models"] is False
    assert created.json()["describe_models"] is True
    assert load_key_grants()[owner.api_key.prefix].describe_models is False


@pytest.mark.django_db
def test_a_setup_file_carries_the_setting_both_ways(tmp_path: Path, tenant, owner):
    exported = io.StringIO()
    call_command("config", "export", stdout=exported)
    document = yaml.safe_load(exported.getvalue())
    [entry] = [item for item in document["tenants"] if item["slug"] == tenant.slug]
    assert entry["describe_models"] is True

    entry["describe_models"] = False
    path = tmp_path / "portico.yaml"
    path.write_text(yaml.safe_dump(document, sort_keys=False))
    printed = io.StringIO()
    call_command("config", "apply", str(path), stdout=printed, stderr=io.StringIO())

    assert "describe_models" in printed.getvalue()
    assert load_key_grants()[owner.api_key.prefix].describe_models is False


# --- the ASGI app -----------------------------------------------------------------------------------------------


@pytest.fixture
def two_tenants(transactional_db) -> tuple[IssuedKey, IssuedKey]:
    """A key of a tenant that describes models and one of a tenant that does not; one priced model."""
    route = make_route(provider=make_provider(kind="mock", name="house"), public_id="house-echo")
    price_add(model=route.model, input_per_million=Decimal("1.25"), output_per_million=Decimal("5"))
    described = make_key(tenant=make_tenant(slug="described"))
    plain = make_key(tenant=make_tenant(slug="plain"))
    Tenant.objects.filter(slug="plain").update(describe_models=False)
    return described, plain


async def test_the_app_answers_each_tenant_as_it_chose(
    two_tenants: tuple[IssuedKey, IssuedKey], settings: Settings, monkeypatch: pytest.MonkeyPatch
):
    run_in_process(settings, monkeypatch)

    async with started_portico() as portico:
        listed = {}
        retrieved = {}
        for name, issued in zip(("described", "plain"), two_tenants, strict=True):
            headers = {"Authorization": f"Bearer {issued.plaintext}"}
            listed[name] = (await portico.get("/v1/models", headers=headers)).json()["data"]
            retrieved[name] = (await portico.get("/v1/models/house-echo", headers=headers)).json()

    assert set(listed["plain"][0]) == OPENAI_FIELDS
    assert set(retrieved["plain"]) == OPENAI_FIELDS
    assert set(listed["described"][0]) == OPENAI_FIELDS | PORTICO_FIELDS
    assert retrieved["described"] == listed["described"][0]
    assert retrieved["described"]["pricing"]["input_per_million"] == "1.25"
    assert retrieved["described"]["providers"] == ["house"]
