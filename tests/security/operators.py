"""An operator of a test's own: a staff user with a management API token and a signed-in admin session."""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import httpx
from django.contrib.auth import get_user_model

from tenants.services import management_token_create
from tests.servers import PorticoServer

CSRF_FIELD = re.compile(r'name="csrfmiddlewaretoken" value="([^"]+)"')


@dataclass(frozen=True)
class Operator:
    username: str
    password: str
    token: str

    def api_headers(self) -> dict[str, str]:
        return {"Authorization": f"Token {self.token}"}

    def admin_cookies(self, server: PorticoServer) -> httpx.Cookies:
        """Sign in to the server's admin through its login form; the session's cookies."""
        with httpx.Client(base_url=server.base_url, timeout=10) as browser:
            form = browser.get("/admin/login/")
            [csrf] = CSRF_FIELD.findall(form.text)
            signed_in = browser.post(
                "/admin/login/?next=/admin/",
                data={"csrfmiddlewaretoken": csrf, "username": self.username, "password": self.password},
            )
            assert signed_in.status_code == 302, signed_in.text
            return browser.cookies


@contextmanager
def operator() -> Iterator[Operator]:
    username = f"operator-{uuid.uuid4().hex[:10]}"
    password = uuid.uuid4().hex
    user = get_user_model().objects.create_superuser(username=username, email="", password=password)
    _, token = management_token_create(user=user)
    try:
        yield Operator(username=username, password=password, token=token)
    finally:
        user.delete()
