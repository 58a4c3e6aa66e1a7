"""Who may open which page and do what: every role of acme, an outsider from globex: Tenancy, and no one signed in.

Every role reads every page of its tenant. Changes are refused with 403 to the
roles without them (viewers: keys and members; members: members). Anything of a
tenant the user is not in answers 404, exactly as something that does not exist.
"""

from __future__ import annotations

import pytest
from django.contrib.auth.models import User
from django.test import Client

from portal.tests.conftest import SignedIn, Tenancy
from tenants.models import ApiKey, TenantMembership, TenantRole

ROLES = [TenantRole.ADMIN, TenantRole.MEMBER, TenantRole.VIEWER]


def _pages(tenancy: Tenancy) -> list[str]:
    slug = tenancy.tenant.slug
    return [
        f"/portal/{slug}/",
        f"/portal/{slug}/usage/",
        f"/portal/{slug}/requests/",
        f"/portal/{slug}/requests/{tenancy.row.pk}/",
        f"/portal/{slug}/keys/",
        f"/portal/{slug}/keys/{tenancy.key.pk}/",
        f"/portal/{slug}/members/",
    ]


@pytest.mark.parametrize("role", ROLES)
def test_every_role_reads_every_page_of_its_tenant(signed_in: SignedIn, acme: Tenancy, role: str) -> None:
    web = signed_in(role)

    for url in _pages(acme):
        response = web.get(url)
        assert response.status_code == 200, url
        assert acme.tenant.name.encode() in response.content


def test_no_one_signed_in_is_sent_to_sign_in(acme: Tenancy) -> None:
    for url in ["/portal/", *_pages(acme)]:
        response = Client().get(url)
        assert response.status_code == 302, url
        assert response["Location"].startswith("/portal/login/?next=")


@pytest.mark.parametrize("role", [*ROLES, "outsider"])
def test_a_tenant_the_user_is_not_in_reads_as_one_that_does_not_exist(
    signed_in: SignedIn, acme: Tenancy, globex: Tenancy, role: str
) -> None:
    web = signed_in(role)
    theirs = acme if role == "outsider" else globex

    for url in _pages(theirs):
        assert web.get(url).status_code == 404, url
    assert web.get("/portal/no-such-tenant/").status_code == 404


@pytest.mark.parametrize("role", [*ROLES, "outsider"])
def test_the_tenant_list_holds_the_user_s_tenants_only(signed_in: SignedIn, role: str) -> None:
    listed = signed_in(role).get("/portal/").content

    assert (b"Globex" in listed, b"Acme" in listed) == ((True, False) if role == "outsider" else (False, True))


def test_another_tenant_s_key_row_or_member_named_under_one_s_own_slug_is_not_found(
    signed_in: SignedIn, acme: Tenancy, globex: Tenancy
) -> None:
    web = signed_in(TenantRole.ADMIN)
    otto = TenantMembership.objects.get(tenant=globex.tenant)

    assert web.get(f"/portal/acme/keys/{globex.key.pk}/").status_code == 404
    assert web.post(f"/portal/acme/keys/{globex.key.pk}/", {"models": []}).status_code == 404
    assert web.post(f"/portal/acme/keys/{globex.key.pk}/revoke/").status_code == 404
    assert web.get(f"/portal/acme/requests/{globex.row.pk}/").status_code == 404
    assert web.post(f"/portal/acme/members/{otto.pk}/remove/").status_code == 404
    assert ApiKey.objects.get(pk=globex.key.pk).revoked_at is None
    assert TenantMembership.objects.filter(pk=otto.pk).exists()


def test_an_outsider_s_changes_to_a_tenant_they_are_not_in_are_not_found(
    signed_in: SignedIn, acme: Tenancy, people: dict[str, User]
) -> None:
    web = signed_in("outsider")
    mel = TenantMembership.objects.get(user=people[TenantRole.MEMBER])

    assert web.post("/portal/acme/keys/", {"name": "sneaky"}).status_code == 404
    assert web.post(f"/portal/acme/keys/{acme.key.pk}/revoke/").status_code == 404
    assert web.post("/portal/acme/members/", {"email": "x@example.com", "role": "admin"}).status_code == 404
    assert web.post(f"/portal/acme/members/{mel.pk}/remove/").status_code == 404
    assert not ApiKey.objects.filter(name="sneaky").exists()
    assert ApiKey.objects.get(pk=acme.key.pk).revoked_at is None
    assert TenantMembership.objects.filter(pk=mel.pk).exists()


# --- changes, role by role: allowed (a redirect, and the change made) or refused (403, and nothing changed) ---


@pytest.mark.parametrize(("role", "status"), [("admin", 302), ("member", 302), ("viewer", 403)])
def test_creating_a_key_needs_a_member_or_an_admin(signed_in: SignedIn, acme: Tenancy, role: str, status: int) -> None:
    response = signed_in(role).post("/portal/acme/keys/", {"name": "new key"})

    assert response.status_code == status
    assert ApiKey.objects.filter(tenant=acme.tenant, name="new key").exists() is (status == 302)


@pytest.mark.parametrize(("role", "status"), [("admin", 302), ("member", 302), ("viewer", 403)])
def test_revoking_a_key_needs_a_member_or_an_admin(signed_in: SignedIn, acme: Tenancy, role: str, status: int) -> None:
    response = signed_in(role).post(f"/portal/acme/keys/{acme.key.pk}/revoke/")

    assert response.status_code == status
    assert (ApiKey.objects.get(pk=acme.key.pk).revoked_at is not None) is (status == 302)


@pytest.mark.parametrize(("role", "status"), [("admin", 302), ("member", 302), ("viewer", 403)])
def test_narrowing_a_key_needs_a_member_or_an_admin(signed_in: SignedIn, acme: Tenancy, role: str, status: int) -> None:
    response = signed_in(role).post(f"/portal/acme/keys/{acme.key.pk}/", {"models": ["mini"]})

    assert response.status_code == status
    assert ApiKey.objects.get(pk=acme.key.pk).models_restricted is (status == 302)


@pytest.mark.parametrize(("role", "status"), [("admin", 302), ("member", 403), ("viewer", 403)])
def test_inviting_needs_an_admin(signed_in: SignedIn, acme: Tenancy, role: str, status: int) -> None:
    response = signed_in(role).post("/portal/acme/members/", {"email": "new@example.com", "role": "viewer"})

    assert response.status_code == status
    assert TenantMembership.objects.filter(tenant=acme.tenant, user__email="new@example.com").exists() is (
        status == 302
    )


@pytest.mark.parametrize(("role", "status"), [("admin", 302), ("member", 403), ("viewer", 403)])
def test_removing_a_member_needs_an_admin(
    signed_in: SignedIn, acme: Tenancy, people: dict[str, User], role: str, status: int
) -> None:
    vic = TenantMembership.objects.get(user=people[TenantRole.VIEWER])

    response = signed_in(role).post(f"/portal/acme/members/{vic.pk}/remove/")

    assert response.status_code == status
    assert TenantMembership.objects.filter(pk=vic.pk).exists() is (status == 403)


# --- what each role is offered ---


@pytest.mark.parametrize(("role", "offered"), [("admin", True), ("member", True), ("viewer", False)])
def test_key_buttons_are_offered_only_to_those_who_may_use_them(
    signed_in: SignedIn, acme: Tenancy, role: str, offered: bool
) -> None:
    web = signed_in(role)
    keys = web.get("/portal/acme/keys/").content
    key = web.get(f"/portal/acme/keys/{acme.key.pk}/").content

    assert (b"Create key" in keys, b"Revoke" in keys) == (offered, offered)
    assert (b"Revoke this key" in key, b'name="models"' in key) == (offered, offered)


@pytest.mark.parametrize(("role", "offered"), [("admin", True), ("member", False), ("viewer", False)])
def test_member_buttons_are_offered_only_to_admins(
    signed_in: SignedIn, acme: Tenancy, role: str, offered: bool
) -> None:
    members = signed_in(role).get("/portal/acme/members/").content

    assert (b"Invite" in members, b">Remove<" in members) == (offered, offered)
    assert b"mel" in members
    assert b"vic" in members


def test_forms_are_refused_without_their_csrf_token(people: dict[str, User], acme: Tenancy) -> None:
    web = Client(enforce_csrf_checks=True)
    web.force_login(people[TenantRole.ADMIN])

    assert web.post("/portal/acme/keys/", {"name": "forged"}).status_code == 403
    assert not ApiKey.objects.filter(name="forged").exists()
