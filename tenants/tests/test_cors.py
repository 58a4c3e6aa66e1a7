"""A tenant's CORS origins: checked wherever they are set, and handed to the hot path in each key's grant."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import pytest
from django.core.exceptions import ValidationError
from django.core.management import call_command
from django.test import Client
from django.urls import reverse
from pytest_django import Settings

from tenants.cors import origin_problem, validate_cors_origins
from tenants.facade import load_key_grants
from tenants.models import Tenant
from tenants.tenant_services import tenant_update
from tenants.tests.factories import IssuedKey, management_token_headers

pytestmark = pytest.mark.django_db

APP = "https://app.example.com"


@pytest.mark.parametrize("origin", [APP, "http://127.0.0.1:5173", "http://localhost:3000", "https://[::1]:8443"])
def test_an_exact_origin_is_accepted(origin: str) -> None:
    assert origin_problem(origin) is None


@pytest.mark.parametrize(
    "origin",
    [
        "",
        "app.example.com",
        "https://app.example.com/",
        "https://app.example.com/path",
        "https://app.example.com?x=1",
        "ftp://app.example.com",
        "https://user@app.example.com",
        "https://App.Example.com",
        " https://app.example.com",
        "https://app.example.com:99999",
        "*",
    ],
)
def test_what_is_no_origin_is_refused(origin: str) -> None:
    assert origin_problem(origin) is not None


def test_any_origin_is_accepted_only_when_the_operator_allows_it(settings: Settings) -> None:
    settings.PORTICO_CORS_ALLOW_ANY = True
    assert origin_problem("*") is None


def test_a_list_may_not_name_an_origin_twice() -> None:
    with pytest.raises(ValidationError):
        validate_cors_origins([APP, APP])
    with pytest.raises(ValidationError):
        validate_cors_origins(APP)


def test_each_key_of_the_tenant_carries_its_origins_and_others_carry_none(
    owner: IssuedKey, teammate: IssuedKey, outsider: IssuedKey
) -> None:
    tenant_update(tenant=owner.api_key.tenant, fields={"cors_origins": [APP, "http://localhost:3000"]})

    grants = load_key_grants()

    assert grants[owner.api_key.prefix].cors_origins == frozenset({APP, "http://localhost:3000"})
    assert grants[teammate.api_key.prefix].cors_origins == grants[owner.api_key.prefix].cors_origins
    assert grants[outsider.api_key.prefix].cors_origins == frozenset()


def test_a_star_left_from_before_the_operator_turned_it_off_allows_nothing(
    owner: IssuedKey, settings: Settings
) -> None:
    settings.PORTICO_CORS_ALLOW_ANY = True
    tenant_update(tenant=owner.api_key.tenant, fields={"cors_origins": ["*", APP]})
    settings.PORTICO_CORS_ALLOW_ANY = False

    assert load_key_grants()[owner.api_key.prefix].cors_origins == frozenset({APP})


def test_the_service_refuses_a_malformed_origin(tenant: Tenant) -> None:
    with pytest.raises(ValidationError):
        tenant_update(tenant=tenant, fields={"cors_origins": ["https://app.example.com/"]})
    tenant.refresh_from_db()
    assert tenant.cors_origins == []


# --- the management API -------------------------------------------------------------------------------------


@pytest.fixture
def operator(django_user_model: Any) -> dict[str, str]:
    return management_token_headers(django_user_model.objects.create_user(username="operator", is_staff=True))


def test_the_management_api_sets_and_reads_a_tenants_origins(
    client: Client, operator: dict[str, str], tenant: Tenant
) -> None:
    url = f"/api/tenants/{tenant.pk}/"
    changed = client.patch(url, {"cors_origins": [APP]}, content_type="application/json", headers=operator)

    assert changed.status_code == 200, changed.content
    assert client.get(url, headers=operator).json()["cors_origins"] == [APP]


def test_the_management_api_refuses_a_star_unless_the_operator_allows_it(
    client: Client, operator: dict[str, str], tenant: Tenant
) -> None:
    url = f"/api/tenants/{tenant.pk}/"
    refused = client.patch(url, {"cors_origins": ["*"]}, content_type="application/json", headers=operator)

    assert refused.status_code == 400
    assert "cors_origins" in refused.content.decode()
    tenant.refresh_from_db()
    assert tenant.cors_origins == []


# --- the admin -----------------------------------------------------------------------------------------------


def _tenant_form(tenant: Tenant, origins: str) -> dict[str, str]:
    return {
        "name": tenant.name,
        "slug": tenant.slug,
        "active": "on",
        "describe_models": "on",
        "cors_origins": origins,
        "queue_mode": "off",
        "queue_max_wait": "30",
        "queue_max_depth": "100",
        "api_keys-TOTAL_FORMS": "0",
        "api_keys-INITIAL_FORMS": "0",
        "memberships-TOTAL_FORMS": "0",
        "memberships-INITIAL_FORMS": "0",
    }


def test_the_admin_takes_one_origin_per_line(admin_client: Client, tenant: Tenant) -> None:
    url = reverse("admin:tenants_tenant_change", args=[tenant.pk])

    response = admin_client.post(url, _tenant_form(tenant, f"{APP}\r\n\r\n  http://localhost:3000 \r\n"))

    assert response.status_code == 302, response.context["adminform"].form.errors
    tenant.refresh_from_db()
    assert tenant.cors_origins == [APP, "http://localhost:3000"]
    assert f"{APP}\nhttp://localhost:3000" in admin_client.get(url).content.decode()


def test_the_admin_names_a_malformed_origin(admin_client: Client, tenant: Tenant) -> None:
    url = reverse("admin:tenants_tenant_change", args=[tenant.pk])

    response = admin_client.post(url, _tenant_form(tenant, "app.example.com"))

    assert response.status_code == 200
    assert "cors_origins" in response.context["adminform"].form.errors
    tenant.refresh_from_db()
    assert tenant.cors_origins == []


# --- setup as code -------------------------------------------------------------------------------------------


def test_a_setup_file_sets_origins_and_export_writes_them_back(tmp_path: Path) -> None:
    path = tmp_path / "portico.yaml"
    path.write_text(f"tenants:\n- slug: initech\n  name: Initech\n  cors_origins: [{APP}]\n")
    call_command("config", "apply", str(path), stdout=io.StringIO(), stderr=io.StringIO())

    assert Tenant.objects.get(slug="initech").cors_origins == [APP]
    exported = io.StringIO()
    call_command("config", "export", stdout=exported)
    assert f"cors_origins:\n  - {APP}\n" in exported.getvalue()
