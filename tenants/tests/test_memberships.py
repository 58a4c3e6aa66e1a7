"""Tenant memberships: invitations, removals (never the last admin), and who the management API lets in."""

from __future__ import annotations

import pytest
from django.contrib.auth.models import User
from django.test import Client

from tenants.models import Tenant, TenantMembership, TenantRole
from tenants.services import AlreadyMember, LastAdmin, membership_create, membership_invite, membership_remove
from tenants.tests.factories import make_tenant, management_token_headers

pytestmark = pytest.mark.django_db


def test_an_invitation_of_a_new_address_makes_a_user_who_has_no_password_yet(tenant: Tenant) -> None:
    invitation = membership_invite(tenant=tenant, email="Dana@Example.COM", role=TenantRole.VIEWER)

    user = invitation.membership.user
    assert invitation.new_user
    assert (user.username, user.email) == ("Dana@example.com", "Dana@example.com")
    assert not user.has_usable_password()
    assert invitation.membership.role == TenantRole.VIEWER


def test_an_invitation_finds_an_existing_user_by_email_or_username(tenant: Tenant) -> None:
    by_email = User.objects.create_user(username="erin", email="erin@example.com")
    by_username = User.objects.create_user(username="frank@example.com")

    first = membership_invite(tenant=tenant, email="ERIN@example.com", role=TenantRole.MEMBER)
    second = membership_invite(tenant=tenant, email="frank@example.com", role=TenantRole.ADMIN)

    assert (first.membership.user, first.new_user) == (by_email, False)
    assert (second.membership.user, second.new_user) == (by_username, False)
    assert User.objects.count() == 2


def test_an_invitation_of_a_member_is_refused(tenant: Tenant) -> None:
    membership_invite(tenant=tenant, email="gus@example.com", role=TenantRole.MEMBER)

    with pytest.raises(AlreadyMember):
        membership_invite(tenant=tenant, email="gus@example.com", role=TenantRole.ADMIN)
    assert TenantMembership.objects.get(tenant=tenant).role == TenantRole.MEMBER


def test_the_last_admin_stays_but_members_and_other_admins_go(tenant: Tenant) -> None:
    ada, bea, cy = (User.objects.create_user(username=name) for name in ("ada", "bea", "cy"))
    first = membership_create(tenant=tenant, user=ada, role=TenantRole.ADMIN)
    second = membership_create(tenant=tenant, user=bea, role=TenantRole.ADMIN)
    member = membership_create(tenant=tenant, user=cy, role=TenantRole.MEMBER)
    elsewhere = membership_create(tenant=make_tenant(slug="globex"), user=cy, role=TenantRole.ADMIN)

    membership_remove(membership=member)
    membership_remove(membership=second)
    with pytest.raises(LastAdmin):
        membership_remove(membership=first)

    assert list(TenantMembership.objects.filter(tenant=tenant)) == [first]
    assert TenantMembership.objects.filter(pk=elsewhere.pk).exists()


@pytest.mark.parametrize(("role", "status"), [("admin", 200), ("member", 403), ("viewer", 403)])
def test_only_a_tenant_s_admins_may_use_the_management_api(tenant: Tenant, role: str, status: int) -> None:
    user = User.objects.create_user(username=f"someone-{role}")
    membership_create(tenant=tenant, user=user, role=role)

    response = Client().get("/api/tenants/", headers=management_token_headers(user))

    assert response.status_code == status
    if status == 200:
        assert [row["slug"] for row in response.json()["results"]] == [tenant.slug]
