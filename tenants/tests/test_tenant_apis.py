"""Tenants created, changed and deactivated through the management API.

Operators write; acme's admin reads acme only (globex, `outsider`'s tenant, is
a 404 to them) and is refused every write; anyone else is refused everything.
What a change does is checked where it matters: in the grants the hot path
loads (`load_key_grants`).
"""

from __future__ import annotations

import time

import pytest
from django.contrib.auth import get_user_model
from django.test import Client

from providers.tests.factories import make_route
from tenants.facade import authenticate, load_key_grants
from tenants.models import Tenant, TenantRole
from tenants.services import membership_create
from tenants.tests.factories import IssuedKey, make_key, management_token_headers

pytestmark = pytest.mark.django_db


def _headers(*, staff: bool = False, admin_of: tuple[Tenant, ...] = ()) -> dict[str, str]:
    user = get_user_model().objects.create_user(username=f"user-{get_user_model().objects.count()}", is_staff=staff)
    for tenant in admin_of:
        membership_create(tenant=tenant, user=user, role=TenantRole.ADMIN)
    return management_token_headers(user)


@pytest.fixture
def operator(db) -> dict[str, str]:
    return _headers(staff=True)


@pytest.fixture
def acme_admin(tenant: Tenant) -> dict[str, str]:
    return _headers(admin_of=(tenant,))


@pytest.fixture
def models(db) -> None:
    make_route(public_id="gpt-4o")
    make_route(public_id="o1")


def _send(client: Client, method: str, url: str, headers: dict[str, str], body: dict | None = None):
    return getattr(client, method)(url, body or {}, content_type="application/json", headers=headers)


def test_an_operator_creates_a_tenant_with_its_models_and_queue_policy(client, operator, models):
    response = _send(
        client,
        "post",
        "/api/tenants/",
        operator,
        {"name": "Initech", "slug": "initech", "allowed_models": ["o1", "gpt-4o"], "queue_mode": "wait"},
    )

    assert response.status_code == 201, response.content
    body = response.json()
    assert (body["name"], body["slug"], body["active"]) == ("Initech", "initech", True)
    assert body["allowed_models"] == ["gpt-4o", "o1"]
    assert (body["queue_mode"], body["queue_max_wait"]) == ("wait", 30)
    key = make_key(tenant=Tenant.objects.get(pk=body["id"]))
    grant = load_key_grants()[key.api_key.prefix]
    assert grant.allowed_models == frozenset({"gpt-4o", "o1"})
    assert grant.queue.mode == "wait"


def test_a_tenant_without_a_model_list_may_use_every_model(client, operator, models):
    body = _send(client, "post", "/api/tenants/", operator, {"name": "Wide", "slug": "wide"}).json()

    key = make_key(tenant=Tenant.objects.get(pk=body["id"]))

    assert body["allowed_models"] is None
    assert load_key_grants()[key.api_key.prefix].allowed_models is None


def test_an_empty_model_list_allows_no_model_and_null_lifts_the_limit(client, operator, tenant, owner, models):
    url = f"/api/tenants/{tenant.pk}/"

    none = _send(client, "patch", url, operator, {"allowed_models": []})
    narrowed = load_key_grants()[owner.api_key.prefix].allowed_models
    every = _send(client, "patch", url, operator, {"allowed_models": None})

    assert none.status_code == 200, none.content
    assert none.json()["allowed_models"] == []
    assert narrowed == frozenset()
    assert every.json()["allowed_models"] is None
    assert load_key_grants()[owner.api_key.prefix].allowed_models is None


def test_an_operator_renames_a_tenant_and_changes_its_slug_and_queue(client, operator, tenant, owner):
    response = _send(
        client,
        "patch",
        f"/api/tenants/{tenant.pk}/",
        operator,
        {"name": "Acme Corp", "slug": "acme-corp", "queue_max_wait": 90},
    )

    assert response.status_code == 200, response.content
    tenant.refresh_from_db()
    assert (tenant.name, tenant.slug, tenant.queue_max_wait) == ("Acme Corp", "acme-corp", 90)
    assert load_key_grants()[owner.api_key.prefix].tenant_slug == "acme-corp"


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"name": "Again", "slug": "acme"}, "slug"),
        ({"name": "Bad", "slug": "not a slug"}, "slug"),
        ({"name": "Unknown", "slug": "unknown", "allowed_models": ["gpt-5"]}, "allowed_models"),
        ({"name": "Long wait", "slug": "long-wait", "queue_max_wait": 86_401}, "queue_max_wait"),
        ({"slug": "nameless"}, "name"),
    ],
)
def test_a_tenant_is_not_created_from_a_wrong_body(client, operator, tenant, models, body, field):
    response = _send(client, "post", "/api/tenants/", operator, body)

    assert response.status_code == 400
    assert field in response.json()
    assert Tenant.objects.count() == 1


def test_deleting_a_tenant_deactivates_it_and_refuses_its_keys(client, operator, tenant, owner, outsider):
    response = _send(client, "delete", f"/api/tenants/{tenant.pk}/", operator)

    assert response.status_code == 204
    tenant.refresh_from_db()
    assert tenant.active is False
    grants = load_key_grants()
    assert authenticate(grants, owner.plaintext, time.time()) is None
    assert authenticate(grants, outsider.plaintext, time.time()) is not None
    assert _send(client, "get", f"/api/tenants/{tenant.pk}/", operator).json()["active"] is False


def test_a_deactivated_tenant_is_brought_back_by_a_change(client, operator, tenant, owner):
    _send(client, "delete", f"/api/tenants/{tenant.pk}/", operator)

    response = _send(client, "patch", f"/api/tenants/{tenant.pk}/", operator, {"active": True})

    assert response.json()["active"] is True
    assert authenticate(load_key_grants(), owner.plaintext, time.time()) is not None


def test_a_tenant_is_changed_but_never_replaced_whole(client, operator, tenant):
    response = _send(client, "put", f"/api/tenants/{tenant.pk}/", operator, {"name": "X", "slug": "x"})

    assert response.status_code == 405


def test_a_tenant_admin_reads_their_tenant_and_may_not_change_it(client, acme_admin, tenant, owner: IssuedKey):
    url = f"/api/tenants/{tenant.pk}/"

    read = _send(client, "get", url, acme_admin)
    writes = [
        _send(client, "post", "/api/tenants/", acme_admin, {"name": "Mine", "slug": "mine"}),
        _send(client, "patch", url, acme_admin, {"allowed_models": None, "name": "Renamed"}),
        _send(client, "delete", url, acme_admin),
    ]

    assert read.status_code == 200
    assert read.json()["slug"] == "acme"
    assert [response.status_code for response in writes] == [403, 403, 403]
    tenant.refresh_from_db()
    assert (tenant.name, tenant.active) == ("Acme", True)
    assert not Tenant.objects.filter(slug="mine").exists()


def test_another_tenant_does_not_exist_for_a_tenant_admin(client, acme_admin, outsider):
    response = _send(client, "get", f"/api/tenants/{outsider.api_key.tenant_id}/", acme_admin)

    assert response.status_code == 404


@pytest.mark.parametrize(("method", "status"), [("get", 401), ("post", 401), ("patch", 401), ("delete", 401)])
def test_an_anonymous_caller_is_asked_for_a_token(client, tenant, method, status):
    url = "/api/tenants/" if method == "post" else f"/api/tenants/{tenant.pk}/"

    assert _send(client, method, url, {}, {"name": "X", "slug": "x"}).status_code == status


@pytest.mark.parametrize("method", ["get", "post", "patch", "delete"])
def test_a_user_who_is_neither_operator_nor_tenant_admin_is_refused(client, tenant, method):
    url = "/api/tenants/" if method == "post" else f"/api/tenants/{tenant.pk}/"

    assert _send(client, method, url, _headers(), {"name": "X", "slug": "x"}).status_code == 403
    tenant.refresh_from_db()
    assert tenant.active is True
