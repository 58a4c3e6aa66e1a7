"""Signing in and out of the portal, its throttle, and what every page may load under the site's CSP."""

from __future__ import annotations

import pytest
from django.contrib.auth.models import User
from django.contrib.staticfiles import finders
from django.test import Client, override_settings

from portal.tests.conftest import PASSWORD, SignedIn, Tenancy
from tenants.models import TenantRole


def test_a_tenant_s_user_signs_in_without_being_staff_and_signs_out(people: dict[str, User], acme: Tenancy) -> None:
    web = Client()

    signed_in = web.post("/portal/login/", {"username": "vic", "password": PASSWORD})
    home = web.get("/portal/")
    signed_out = web.post("/portal/logout/")

    assert not people[TenantRole.VIEWER].is_staff
    assert signed_in["Location"] == "/portal/"
    assert b"Acme" in home.content
    assert signed_out["Location"] == "/portal/login/"
    assert web.get("/portal/").status_code == 302


def test_signing_in_goes_back_to_the_page_asked_for(people: dict[str, User], acme: Tenancy) -> None:
    response = Client().post("/portal/login/?next=/portal/acme/keys/", {"username": "vic", "password": PASSWORD})

    assert response["Location"] == "/portal/acme/keys/"


def test_a_wrong_password_is_refused_without_saying_staff(people: dict[str, User]) -> None:
    response = Client().post("/portal/login/", {"username": "vic", "password": "wrong"})

    assert response.status_code == 200
    assert b"Please enter a correct username and password" in response.content
    assert b"staff" not in response.content


@override_settings(PORTICO_ADMIN_LOGIN_ATTEMPTS=2)
def test_sign_in_is_throttled_after_repeated_failures(people: dict[str, User]) -> None:
    web = Client(REMOTE_ADDR="203.0.113.9")
    for _ in range(2):
        web.post("/portal/login/", {"username": "mel", "password": "wrong"})

    refused = web.post("/portal/login/", {"username": "mel", "password": PASSWORD})

    assert refused.status_code == 200
    assert b"Too many failed sign-ins" in refused.content


@pytest.mark.parametrize("role", [TenantRole.ADMIN, TenantRole.VIEWER])
def test_every_page_carries_the_csp_and_holds_no_script_nor_inline_style(
    signed_in: SignedIn, acme: Tenancy, role: str
) -> None:
    web = signed_in(role)
    urls = [
        "/portal/",
        "/portal/acme/",
        "/portal/acme/usage/",
        "/portal/acme/requests/",
        f"/portal/acme/requests/{acme.row.pk}/",
        "/portal/acme/keys/",
        f"/portal/acme/keys/{acme.key.pk}/",
        "/portal/acme/members/",
    ]
    pages = [web.get(url) for url in urls] + [Client().get("/portal/login/")]

    for page in pages:
        assert "script-src 'self'" in page["Content-Security-Policy"]
        assert b"<script" not in page.content
        assert b"style=" not in page.content
        assert b'href="/static/portal/portal.css"' in page.content
    assert finders.find("portal/portal.css")
