"""The management API for tenants and keys, seen by an operator, a tenant admin, and everyone else.

The tenant admin manages acme, whose keys are `owner` and `teammate`; `outsider`
is a key of globex, which they must never see (404, as if it did not exist).
"""

from __future__ import annotations

import time
from datetime import timedelta

import pytest
from django.contrib.auth import get_user_model
from django.utils import timezone

from providers.tests.factories import make_route
from tenants.facade import authenticate, load_key_grants
from tenants.models import ApiKey, TenantRole
from tenants.services import membership_create
from tenants.tests.factories import make_key, make_tenant, management_token_headers

pytestmark = pytest.mark.django_db


def _headers(*, staff: bool = False, admin_of=()) -> dict[str, str]:
    user = get_user_model().objects.create_user(username=f"user-{get_user_model().objects.count()}", is_staff=staff)
    for tenant in admin_of:
        membership_create(tenant=tenant, user=user, role=TenantRole.ADMIN)
    return management_token_headers(user)


@pytest.fixture
def acme_admin(tenant) -> dict[str, str]:
    return _headers(admin_of=[tenant])


@pytest.fixture
def operator(db) -> dict[str, str]:
    return _headers(staff=True)


@pytest.fixture
def stranger(db) -> dict[str, str]:
    """Signed in, but neither an operator nor any tenant's admin."""
    return _headers()


def _ids(response) -> list[int]:
    assert response.status_code == 200, response.content
    return sorted(row["id"] for row in response.json()["results"])


def _create_key(client, headers, **body):
    return client.post("/api/keys/", body, content_type="application/json", headers=headers)


@pytest.mark.parametrize("url", ["/api/tenants/", "/api/keys/"])
def test_it_asks_for_a_token_before_anything_else(client, url):
    response = client.get(url)

    assert response.status_code == 401
    assert response["WWW-Authenticate"] == "Token"


@pytest.mark.parametrize("url", ["/api/tenants/", "/api/keys/"])
def test_it_refuses_a_user_who_is_neither_operator_nor_tenant_admin(client, stranger, url):
    assert client.get(url, headers=stranger).status_code == 403


def test_it_refuses_a_wrong_token(client, owner):
    response = client.get("/api/keys/", headers={"Authorization": "Token not-a-token"})

    assert response.status_code == 401


def test_a_tenant_admin_lists_only_their_tenants(client, acme_admin, tenant, outsider):
    assert _ids(client.get("/api/tenants/", headers=acme_admin)) == [tenant.pk]


def test_an_operator_lists_every_tenant(client, operator, tenant, outsider):
    assert _ids(client.get("/api/tenants/", headers=operator)) == sorted([tenant.pk, outsider.api_key.tenant_id])


def test_an_admin_of_two_tenants_sees_both(client, tenant, outsider):
    globex = outsider.api_key.tenant
    headers = _headers(admin_of=[tenant, globex])

    assert _ids(client.get("/api/tenants/", headers=headers)) == sorted([tenant.pk, globex.pk])


def test_another_tenant_is_not_found_for_a_tenant_admin(client, acme_admin, outsider):
    response = client.get(f"/api/tenants/{outsider.api_key.tenant_id}/", headers=acme_admin)

    assert response.status_code == 404


def test_a_tenant_shows_its_model_allowlist_or_null_for_every_model(client, operator):
    route = make_route(public_id="gpt-4o")
    narrow = make_tenant(slug="narrow", allowed_model_ids=[route.pk])
    wide = make_tenant(slug="wide")

    assert client.get(f"/api/tenants/{narrow.pk}/", headers=operator).json()["allowed_models"] == ["gpt-4o"]
    assert client.get(f"/api/tenants/{wide.pk}/", headers=operator).json()["allowed_models"] is None


def test_a_tenant_admin_lists_their_tenants_keys_only(client, acme_admin, owner, teammate, outsider):
    assert _ids(client.get("/api/keys/", headers=acme_admin)) == sorted([owner.api_key.pk, teammate.api_key.pk])


def test_an_operator_lists_every_key_and_can_filter_by_tenant(client, operator, owner, teammate, outsider):
    every = client.get("/api/keys/", headers=operator)
    globex = client.get(f"/api/keys/?tenant={outsider.api_key.tenant_id}", headers=operator)

    assert _ids(every) == sorted([owner.api_key.pk, teammate.api_key.pk, outsider.api_key.pk])
    assert _ids(globex) == [outsider.api_key.pk]


def test_filtering_on_another_tenant_finds_nothing_for_a_tenant_admin(client, acme_admin, outsider):
    response = client.get(f"/api/keys/?tenant={outsider.api_key.tenant_id}", headers=acme_admin)

    assert _ids(response) == []


def test_a_bad_tenant_filter_is_a_field_error(client, acme_admin):
    response = client.get("/api/keys/?tenant=acme", headers=acme_admin)

    assert response.status_code == 400
    assert "tenant" in response.json()


@pytest.mark.parametrize(("method", "path"), [("get", ""), ("post", "revoke/")])
def test_another_tenants_key_is_not_found_for_a_tenant_admin(client, acme_admin, outsider, method, path):
    response = getattr(client, method)(f"/api/keys/{outsider.api_key.pk}/{path}", headers=acme_admin)

    assert response.status_code == 404
    assert ApiKey.objects.get(pk=outsider.api_key.pk).active


def test_a_key_shows_its_prefix_and_never_its_digest(client, acme_admin, owner):
    response = client.get(f"/api/keys/{owner.api_key.pk}/", headers=acme_admin)

    body = response.json()
    assert body["prefix"] == owner.api_key.prefix
    assert "digest" not in body
    assert "key" not in body
    assert owner.api_key.digest not in response.content.decode()


def test_creating_a_key_returns_a_working_plaintext_once(client, acme_admin, tenant):
    response = _create_key(client, acme_admin, tenant=tenant.pk, name="ci")

    assert response.status_code == 201
    assert response["Cache-Control"] == "no-store"
    created = response.json()
    plaintext = created["key"]
    assert plaintext.startswith(created["prefix"])
    grant = authenticate(load_key_grants(), plaintext, time.time())
    assert (grant.key_id, grant.tenant_slug) == (created["id"], "acme")
    for url in (f"/api/keys/{created['id']}/", "/api/keys/"):
        assert plaintext not in client.get(url, headers=acme_admin).content.decode()


def test_a_new_key_can_expire_and_be_narrowed_to_some_models(client, acme_admin, tenant):
    make_route(public_id="gpt-4o")
    make_route(public_id="o1")
    expires_at = timezone.now() + timedelta(days=30)

    response = _create_key(
        client, acme_admin, tenant=tenant.pk, name="ci", expires_at=expires_at.isoformat(), allowed_models=["gpt-4o"]
    )

    created = response.json()
    assert created["allowed_models"] == ["gpt-4o"]
    assert created["expires_at"] is not None
    grant = authenticate(load_key_grants(), created["key"], time.time())
    assert grant.allowed_models == frozenset({"gpt-4o"})
    assert grant.expires_at == pytest.approx(expires_at.timestamp())


def test_a_new_key_without_models_may_use_all_of_its_tenants(client, acme_admin, tenant):
    created = _create_key(client, acme_admin, tenant=tenant.pk, name="ci").json()

    assert created["allowed_models"] is None
    assert authenticate(load_key_grants(), created["key"], time.time()).allowed_models is None


def test_a_tenant_admin_cannot_create_a_key_for_another_tenant(client, acme_admin, outsider):
    response = _create_key(client, acme_admin, tenant=outsider.api_key.tenant_id, name="sneaky")

    assert response.status_code == 400
    assert "tenant" in response.json()
    assert not ApiKey.objects.filter(name="sneaky").exists()


def test_an_operator_can_create_a_key_for_any_tenant(client, operator, outsider):
    response = _create_key(client, operator, tenant=outsider.api_key.tenant_id, name="ops")

    assert response.status_code == 201
    assert ApiKey.objects.get(pk=response.json()["id"]).tenant_id == outsider.api_key.tenant_id


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"name": ""}, "name"),
        ({"allowed_models": ["no-such-model"]}, "allowed_models"),
        ({"allowed_models": ["o1"]}, "allowed_models"),  # a model the tenant may not use
        ({"expires_at": "2001-01-01T00:00:00Z"}, "expires_at"),
        ({"expires_at": "next week"}, "expires_at"),
    ],
)
def test_an_invalid_key_is_refused_with_the_fields_error(client, operator, body, field):
    allowed = make_route(public_id="gpt-4o")
    make_route(public_id="o1")
    narrow = make_tenant(slug="narrow", allowed_model_ids=[allowed.pk])

    response = _create_key(client, operator, **{"tenant": narrow.pk, "name": "ci", **body})

    assert response.status_code == 400
    assert field in response.json()
    assert not ApiKey.objects.filter(tenant=narrow).exists()


def test_revoking_a_key_stops_it_and_keeps_it_listed(client, acme_admin, owner, teammate):
    response = client.post(f"/api/keys/{owner.api_key.pk}/revoke/", headers=acme_admin)

    assert response.status_code == 200
    assert response.json()["active"] is False
    assert response.json()["revoked_at"] is not None
    grants = load_key_grants()
    assert authenticate(grants, owner.plaintext, time.time()) is None
    assert authenticate(grants, teammate.plaintext, time.time()) is not None
    assert owner.api_key.pk in _ids(client.get("/api/keys/", headers=acme_admin))


def test_revoking_twice_keeps_the_first_revocation_time(client, acme_admin, owner):
    first = client.post(f"/api/keys/{owner.api_key.pk}/revoke/", headers=acme_admin).json()["revoked_at"]

    again = client.post(f"/api/keys/{owner.api_key.pk}/revoke/", headers=acme_admin)

    assert again.status_code == 200
    assert again.json()["revoked_at"] == first


@pytest.mark.parametrize("method", ["put", "patch", "delete"])
def test_keys_are_not_edited_or_deleted_through_the_api(client, operator, owner, method):
    response = getattr(client, method)(
        f"/api/keys/{owner.api_key.pk}/", {"name": "x"}, content_type="application/json", headers=operator
    )

    assert response.status_code == 405
    assert ApiKey.objects.filter(pk=owner.api_key.pk, name="owner").exists()


def test_the_key_list_is_paginated(client, operator, tenant):
    for number in range(3):
        make_key(tenant=tenant, name=f"key {number}")

    body = client.get("/api/keys/?limit=2", headers=operator).json()

    assert body["count"] == 3
    assert len(body["results"]) == 2
    assert "offset=2" in body["next"]
