"""Probe findings on the admin console: headers, passwords, sign-in throttling and management tokens."""

from __future__ import annotations

import os
import subprocess
import sys
from datetime import timedelta
from html.parser import HTMLParser

import pytest
import time_machine
from django.conf import settings
from django.contrib.auth import get_user_model, user_logged_in, user_login_failed
from django.contrib.auth.password_validation import validate_password
from django.contrib.staticfiles import finders
from django.core.exceptions import ValidationError
from django.test import Client, override_settings
from django.urls import reverse
from django.utils import timezone

from billing.tests.factories import make_user
from providers.tests.factories import make_provider, make_route

pytestmark = pytest.mark.django_db

PASSWORD = "correct horse battery staple"
_EXECUTABLE_SCRIPT_TYPES = {"", "text/javascript", "application/javascript", "module"}


class _InlineCode(HTMLParser):
    """Collects what a CSP without 'unsafe-inline' would block: inline scripts and on* handler attributes."""

    def __init__(self) -> None:
        super().__init__()
        self.found: list[str] = []
        self._in_inline_script = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        named = dict(attrs)
        self.found += [f"<{tag} {name}=...>" for name in named if name.startswith("on")]
        if tag == "script" and "src" not in named and (named.get("type") or "").lower() in _EXECUTABLE_SCRIPT_TYPES:
            self._in_inline_script = True

    def handle_data(self, data: str) -> None:
        if self._in_inline_script and data.strip():
            self.found.append(f"<script>{data.strip()[:60]}")

    def handle_endtag(self, tag: str) -> None:
        if tag == "script":
            self._in_inline_script = False


def _inline_code(html: str) -> list[str]:
    parser = _InlineCode()
    parser.feed(html)
    return parser.found


@pytest.fixture
def web() -> Client:
    return Client()


@pytest.fixture
def staff_user(db):
    return get_user_model().objects.create_user(username=f"ops-{os.getpid()}", password=PASSWORD, is_staff=True)


def _sign_in(web: Client, username: str, password: str, address: str = "192.0.2.1"):
    return web.post(reverse("admin:login"), {"username": username, "password": password}, REMOTE_ADDR=address)


# --- Content-Security-Policy --------------------------------------------------------------------------


def test_admin_pages_carry_a_content_security_policy_without_inline_scripts(web, admin_client, owner):
    route = make_route(provider=make_provider(name="openai"), public_id="gpt-4o")
    pages = [reverse("admin:tenants_tenant_change", args=[owner.api_key.tenant_id])]
    pages += [reverse(f"admin:{name}") for name in ("index", "tenants_tenant_add", "tenants_apikey_add")]
    pages += [
        reverse("admin:tenants_managementtoken_add"),
        reverse("admin:providers_modelroute_change", args=[route.pk]),
    ]
    pages += [reverse("admin:providers_provider_change", args=[route.provider_id])]
    key_created = admin_client.post(
        reverse("admin:tenants_apikey_add"),
        {"tenant": owner.api_key.tenant_id, "name": "ci", "expires_at_0": ""},
        follow=True,
    )
    responses = [web.get(reverse("admin:login")), key_created, *(admin_client.get(page) for page in pages)]

    for response in responses:
        assert response.status_code == 200
        policy = response["Content-Security-Policy"]
        assert "default-src 'self'" in policy
        assert "script-src 'self'" in policy
        assert "unsafe-inline" not in policy.split("script-src")[1].split(";")[0]
        assert _inline_code(response.content.decode()) == [], response.wsgi_request.path
    assert "Content-Security-Policy" not in web.get("/api/no-such-thing/")  # the admin's policy, for the admin


def test_the_scripts_the_admin_pages_load_are_served_from_portico(admin_client, owner):
    response = admin_client.post(
        reverse("admin:tenants_apikey_add"),
        {"tenant": owner.api_key.tenant_id, "name": "ci", "expires_at_0": ""},
        follow=True,
    )

    assert f"{settings.STATIC_URL}tenants/copy_secret.js" in response.content.decode()
    assert finders.find("tenants/copy_secret.js")


# --- HSTS ---------------------------------------------------------------------------------------------


def _settings_value(name: str, **env: str) -> str:
    environment = {**os.environ, "DJANGO_SETTINGS_MODULE": "gateway.settings", **env}
    code = f"from django.conf import settings; print(settings.{name})"
    return subprocess.run(
        [sys.executable, "-c", code], env=environment, capture_output=True, text=True, check=True
    ).stdout.strip()


def test_hsts_is_on_behind_a_tls_proxy_and_off_otherwise(web):
    behind = int(_settings_value("SECURE_HSTS_SECONDS", PORTICO_BEHIND_TLS_PROXY="true"))
    assert behind >= 31_536_000
    assert int(_settings_value("SECURE_HSTS_SECONDS", PORTICO_BEHIND_TLS_PROXY="false")) == 0
    with override_settings(SECURE_HSTS_SECONDS=behind, SECURE_PROXY_SSL_HEADER=("HTTP_X_FORWARDED_PROTO", "https")):
        response = web.get(reverse("admin:login"), HTTP_X_FORWARDED_PROTO="https")
    assert response["Strict-Transport-Security"].startswith(f"max-age={behind}")


# --- Passwords ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("password", ["password", "12345678", "short", "ops-user-1"])
def test_weak_passwords_are_refused_and_a_strong_one_is_accepted(password):
    user = get_user_model()(username="ops-user-1")

    with pytest.raises(ValidationError):
        validate_password(password, user)
    validate_password(PASSWORD, user)


# --- Sign-in throttling -------------------------------------------------------------------------------


@override_settings(PORTICO_ADMIN_LOGIN_ATTEMPTS=3, PORTICO_ADMIN_LOGIN_WINDOW=600)
def test_after_too_many_failures_the_sign_in_is_refused_without_checking_the_password(web, staff_user):
    checked: list[str] = []
    user_login_failed.connect(lambda **kwargs: checked.append("failed"), weak=False, dispatch_uid="probe-failed")
    user_logged_in.connect(lambda **kwargs: checked.append("in"), weak=False, dispatch_uid="probe-in")
    try:
        with time_machine.travel(timezone.now().replace(minute=0, second=1), tick=False) as clock:
            for _ in range(3):
                assert "_auth_user_id" not in _sign_in(web, staff_user.username, "wrong").wsgi_request.session
            refused = _sign_in(web, staff_user.username, PASSWORD)

            assert checked == ["failed"] * 3
            assert "Too many failed sign-ins" in refused.content.decode()
            assert "_auth_user_id" not in web.session

            clock.shift(timedelta(seconds=600))
            _sign_in(web, staff_user.username, PASSWORD)
    finally:
        user_login_failed.disconnect(dispatch_uid="probe-failed")
        user_logged_in.disconnect(dispatch_uid="probe-in")

    assert web.session["_auth_user_id"] == str(staff_user.pk)


@override_settings(PORTICO_ADMIN_LOGIN_ATTEMPTS=2)
def test_the_throttle_counts_per_username_and_address(web, staff_user):
    for _ in range(2):
        _sign_in(web, staff_user.username, "wrong", address="192.0.2.2")

    assert "Too many" in _sign_in(web, staff_user.username, PASSWORD, address="192.0.2.2").content.decode()
    _sign_in(web, staff_user.username, PASSWORD, address="192.0.2.3")
    assert web.session["_auth_user_id"] == str(staff_user.pk)


# --- Management tokens --------------------------------------------------------------------------------


def test_the_admin_no_longer_lists_plaintext_tokens(admin_client):
    assert admin_client.get("/admin/authtoken/tokenproxy/").status_code == 404
    assert "authtoken" not in settings.INSTALLED_APPS


def test_a_token_added_in_the_admin_is_shown_once_and_listed_by_its_prefix(admin_client, tenant):
    ada = make_user(username="ada", admin_of=[tenant])
    add_url = reverse("admin:tenants_managementtoken_add")

    created = admin_client.post(add_url, {"user": ada.pk}, follow=True)
    resent = admin_client.post(add_url, {"user": ada.pk})  # the browser's reload of that page
    listed = admin_client.get(reverse("admin:tenants_managementtoken_changelist")).content.decode()

    plaintext = created.context["plaintext"]
    assert plaintext in created.content.decode()
    assert "no-store" in created["Cache-Control"]
    assert resent.status_code == 200
    assert "already exists" in resent.content.decode()
    assert ada.management_token.prefix in listed
    assert plaintext not in listed
    assert plaintext not in resent.content.decode()
    assert Client().get("/api/tenants/", headers={"Authorization": f"Bearer {plaintext}"}).status_code == 200
