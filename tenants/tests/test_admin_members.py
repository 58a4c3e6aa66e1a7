"""Operators give a tenant's people their roles in the console, on the tenant's page, finding users by search."""

from __future__ import annotations

import re

import pytest
from django.contrib.auth.models import User
from django.test import Client

from tenants.models import Tenant, TenantMembership, TenantRole

pytestmark = pytest.mark.django_db


@pytest.fixture
def console() -> Client:
    web = Client()
    web.force_login(User.objects.create_superuser(username="operator", password="x" * 20))
    return web


def _empty_inlines(page: str) -> dict[str, str]:
    """Management forms saying "no rows" for every inline of a change page (a new tenant has none)."""
    prefixes = re.findall(r'name="([\w-]+)-TOTAL_FORMS"', page)
    return {name: "0" for prefix in prefixes for name in (f"{prefix}-TOTAL_FORMS", f"{prefix}-INITIAL_FORMS")}


def test_the_tenant_page_lists_its_members_with_a_user_search(console: Client, tenant: Tenant) -> None:
    alice = User.objects.create_user(username="alice")
    TenantMembership.objects.create(tenant=tenant, user=alice, role=TenantRole.ADMIN)

    page = console.get(f"/admin/tenants/tenant/{tenant.pk}/change/").content.decode()

    assert "members and their roles" in page.lower()
    assert 'name="memberships-0-role"' in page
    assert "admin-autocomplete" in page  # the user is picked by searching, not from a list of every user


def test_the_user_search_finds_users_by_name(console: Client, tenant: Tenant) -> None:
    User.objects.create_user(username="alice")
    User.objects.create_user(username="bob")

    found = console.get(
        "/admin/autocomplete/",
        {"app_label": "tenants", "model_name": "tenantmembership", "field_name": "user", "term": "ali"},
    )

    assert found.status_code == 200
    assert [result["text"] for result in found.json()["results"]] == ["alice"]


def test_an_operator_makes_a_user_the_tenant_s_admin(console: Client, tenant: Tenant) -> None:
    alice = User.objects.create_user(username="alice")
    url = f"/admin/tenants/tenant/{tenant.pk}/change/"
    form = {
        "name": tenant.name,
        "slug": tenant.slug,
        "active": "on",
        "queue_mode": tenant.queue_mode,
        "queue_max_wait": str(tenant.queue_max_wait),
        "queue_max_depth": str(tenant.queue_max_depth),
        **_empty_inlines(console.get(url).content.decode()),
        "memberships-TOTAL_FORMS": "1",
        "memberships-0-user": str(alice.pk),
        "memberships-0-role": TenantRole.ADMIN,
    }

    response = console.post(url, form)

    assert response.status_code == 302, response.content.decode()[:2000]
    assert TenantMembership.objects.get(tenant=tenant, user=alice).role == TenantRole.ADMIN
