"""Admins invite people by email and remove members; a new user sets their password through a one-time link."""

from __future__ import annotations

import re

from django.contrib.auth.models import User
from django.test import Client

from portal.tests.conftest import PASSWORD, SignedIn, Tenancy
from tenants.models import TenantMembership, TenantRole

LINK = re.compile(rb'value="http://testserver(/portal/set-password/[^"]+)"')
NEW_PASSWORD = "correct horse battery staple 7"


def _invite(web: Client, email: str, role: str = TenantRole.MEMBER) -> tuple[int, str]:
    response = web.post("/portal/acme/members/", {"email": email, "role": role})
    return response.status_code, response.get("Location", "")


def test_inviting_someone_new_makes_a_user_without_a_password_and_shows_a_link_once(
    signed_in: SignedIn, acme: Tenancy
) -> None:
    web = signed_in(TenantRole.ADMIN)

    status, location = _invite(web, "Newcomer@Example.com", TenantRole.VIEWER)
    shown = web.get(location)
    reloaded = web.get(location)

    assert (status, location) == (302, "/portal/acme/members/invited/")
    user = User.objects.get(email="Newcomer@example.com")
    assert not user.has_usable_password()
    assert TenantMembership.objects.get(user=user).role == TenantRole.VIEWER
    assert len(LINK.findall(shown.content)) == 1
    assert "no-store" in shown["Cache-Control"]
    assert reloaded.status_code == 302
    assert reloaded["Location"] == "/portal/acme/members/"


def test_the_link_sets_a_password_once_and_signs_the_new_user_in(signed_in: SignedIn, acme: Tenancy) -> None:
    admin = signed_in(TenantRole.ADMIN)
    _status, location = _invite(admin, "newcomer@example.com")
    [link] = LINK.findall(admin.get(location).content)
    newcomer = Client()

    form = newcomer.get(link.decode(), follow=True)
    done = newcomer.post(form.redirect_chain[-1][0], {"new_password1": NEW_PASSWORD, "new_password2": NEW_PASSWORD})
    again = Client().get(link.decode(), follow=True)

    assert done.status_code == 302
    assert done["Location"] == "/portal/"
    assert b"Acme" in newcomer.get("/portal/").content
    assert User.objects.get(email="newcomer@example.com").check_password(NEW_PASSWORD)
    assert b"has been used already or has expired" in again.content
    assert b'name="new_password1"' not in again.content


def test_inviting_an_existing_user_adds_them_with_no_link(
    signed_in: SignedIn, acme: Tenancy, people: dict[str, User]
) -> None:
    web = signed_in(TenantRole.ADMIN)

    status, location = _invite(web, "otto@example.com", TenantRole.ADMIN)  # globex's admin, now acme's too
    page = web.get(location)

    assert (status, location) == (302, "/portal/acme/members/")
    assert TenantMembership.objects.get(tenant=acme.tenant, user=people["outsider"]).role == TenantRole.ADMIN
    assert people["outsider"].check_password(PASSWORD)
    assert b"otto@example.com is now in Acme, as admin." in page.content
    assert not LINK.findall(page.content)


def test_inviting_a_member_again_is_a_form_error(signed_in: SignedIn, acme: Tenancy) -> None:
    response = signed_in(TenantRole.ADMIN).post("/portal/acme/members/", {"email": "MEL@example.com", "role": "admin"})

    assert response.status_code == 200
    assert b"MEL@example.com is a member of Acme already." in response.content
    assert TenantMembership.objects.get(tenant=acme.tenant, user__username="mel").role == TenantRole.MEMBER


def test_an_admin_removes_a_member(signed_in: SignedIn, acme: Tenancy, people: dict[str, User]) -> None:
    mel = TenantMembership.objects.get(user=people[TenantRole.MEMBER])
    web = signed_in(TenantRole.ADMIN)

    response = web.post(f"/portal/acme/members/{mel.pk}/remove/")

    assert response["Location"] == "/portal/acme/members/"
    assert not TenantMembership.objects.filter(pk=mel.pk).exists()
    assert signed_in(TenantRole.MEMBER).get("/portal/acme/").status_code == 404


def test_the_last_admin_cannot_be_removed_but_one_of_two_can_leave(
    signed_in: SignedIn, acme: Tenancy, people: dict[str, User]
) -> None:
    ada = TenantMembership.objects.get(user=people[TenantRole.ADMIN])
    web = signed_in(TenantRole.ADMIN)

    refused = web.post(f"/portal/acme/members/{ada.pk}/remove/", follow=True)
    assert TenantMembership.objects.filter(pk=ada.pk).exists()
    assert b"last admin of Acme" in refused.content

    _invite(web, "otto@example.com", TenantRole.ADMIN)
    left = web.post(f"/portal/acme/members/{ada.pk}/remove/")
    assert left["Location"] == "/portal/"
    assert not TenantMembership.objects.filter(pk=ada.pk).exists()
