"""A tenant's memberships through the management API: listed, given and removed by operators only, and audited."""

from __future__ import annotations

import pytest
from django.apps import apps
from django.contrib.auth import get_user_model
from django.test import Client

from tenants.models import Tenant, TenantMembership, TenantRole
from tenants.services import membership_create
from tenants.tests.factories import management_token_headers

pytestmark = pytest.mark.django_db

User = get_user_model()


def _user(username: str, *, staff: bool = False):
    return User.objects.create_user(username=username, email=f"{username}@example.com", is_staff=staff)


@pytest.fixture
def operator(db) -> dict[str, str]:
    return management_token_headers(_user("olga", staff=True))


@pytest.fixture
def acme_admin(tenant: Tenant) -> dict[str, str]:
    admin = _user("ada")
    membership_create(tenant=tenant, user=admin, role=TenantRole.ADMIN)
    return management_token_headers(admin)


def _url(tenant: Tenant, membership_id: int | None = None) -> str:
    return f"/api/tenants/{tenant.pk}/members/" + (f"{membership_id}/" if membership_id else "")


def test_an_operator_gives_lists_and_removes_a_tenant_s_members(client: Client, operator, tenant, outsider):
    _user("bob")
    globex = outsider.api_key.tenant
    membership_create(tenant=globex, user=_user("gus"), role=TenantRole.ADMIN)

    created = client.post(
        _url(tenant), {"user": "bob", "role": "viewer"}, content_type="application/json", headers=operator
    )
    listed = client.get(_url(tenant), headers=operator)

    assert created.status_code == 201, created.content
    assert created.json() | {"id": 0, "created_at": ""} == {
        "id": 0,
        "user": "bob",
        "email": "bob@example.com",
        "role": "viewer",
        "created_at": "",
    }
    assert [(row["user"], row["role"]) for row in listed.json()["results"]] == [("bob", "viewer")]

    removed = client.delete(_url(tenant, created.json()["id"]), headers=operator)

    assert removed.status_code == 204
    assert not TenantMembership.objects.filter(tenant=tenant).exists()
    assert TenantMembership.objects.filter(tenant=globex).count() == 1


def test_a_membership_of_another_tenant_is_not_found_under_this_one(client: Client, operator, tenant, outsider):
    theirs = membership_create(tenant=outsider.api_key.tenant, user=_user("gus"), role=TenantRole.ADMIN)

    assert client.delete(_url(tenant, theirs.pk), headers=operator).status_code == 404
    assert client.get("/api/tenants/999999/members/", headers=operator).status_code == 404
    assert TenantMembership.objects.filter(pk=theirs.pk).exists()


@pytest.mark.parametrize(
    ("body", "field", "said"),
    [
        ({"user": "nobody", "role": "admin"}, "user", "Object with username=nobody does not exist."),
        ({"user": "bob", "role": "owner"}, "role", '"owner" is not a valid choice.'),
        ({"user": "bob", "role": "admin"}, "user", "bob already belongs to this tenant."),
    ],
    ids=["unknown user", "unknown role", "already a member"],
)
def test_a_membership_that_cannot_be_is_refused_by_field(client: Client, operator, tenant, body, field, said):
    membership_create(tenant=tenant, user=_user("bob"), role=TenantRole.MEMBER)

    refused = client.post(_url(tenant), body, content_type="application/json", headers=operator)

    assert refused.status_code == 400
    assert refused.json() == {field: [said]}
    assert TenantMembership.objects.filter(tenant=tenant).count() == 1


def test_the_last_admin_is_not_removed(client: Client, operator, tenant):
    only = membership_create(tenant=tenant, user=_user("ada"), role=TenantRole.ADMIN)

    refused = client.delete(_url(tenant, only.pk), headers=operator)

    assert refused.status_code == 400
    assert refused.json() == [f"ada is the last admin of {tenant.name}: make another admin first."]
    assert TenantMembership.objects.filter(pk=only.pk).exists()


def test_a_tenant_admin_may_neither_read_nor_change_memberships_here(client: Client, acme_admin, tenant):
    _user("bob")

    assert client.get(_url(tenant), headers=acme_admin).status_code == 403
    refused = client.post(
        _url(tenant), {"user": "bob", "role": "admin"}, content_type="application/json", headers=acme_admin
    )
    assert refused.status_code == 403
    assert not TenantMembership.objects.filter(user__username="bob").exists()


def test_anyone_without_a_token_is_refused(client: Client, tenant):
    assert client.get(_url(tenant)).status_code in (401, 403)


def test_each_change_is_audited_as_made_through_the_api(client: Client, operator, tenant):
    _user("bob")
    created = client.post(
        _url(tenant), {"user": "bob", "role": "member"}, content_type="application/json", headers=operator
    )
    client.delete(_url(tenant, created.json()["id"]), headers=operator)

    audit_entries = apps.get_model("audit", "AuditEntry").objects  # tenants may not import audit
    entries = audit_entries.filter(model_label="tenants.tenantmembership").order_by("pk")
    assert [(entry.action, entry.origin, entry.object_id) for entry in entries] == [
        ("create", "api", str(created.json()["id"])),
        ("delete", "api", str(created.json()["id"])),
    ]
    assert all(entry.actor.endswith("of olga") for entry in entries)
