"""Signing in to the console in a real browser: an operator's password reaches the dashboard, a wrong one is refused.

Both pages must load without a console or JavaScript error (tests/browser.py). Every other page of the console
and the portal is opened by tests/integration/test_console_crawl.py.
"""

from __future__ import annotations

import pytest
from django.contrib.auth import get_user_model
from playwright.sync_api import Page, expect

from tests.servers import PorticoServer

pytestmark = pytest.mark.integration

PASSWORD = "correct horse battery staple"


@pytest.fixture
def operator(committed_db: None, tag: str) -> str:
    username = f"operator-{tag}"
    get_user_model().objects.create_superuser(username=username, email=f"{username}@example.com", password=PASSWORD)
    return username


def sign_in(page: Page, portico: PorticoServer, username: str) -> None:
    page.goto(portico.url("/admin/login/"))
    page.get_by_label("Username").fill(username)
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Log in").click()


def test_an_operator_signs_in_to_the_console(page: Page, portico: PorticoServer, operator: str) -> None:
    sign_in(page, portico, operator)

    expect(page.get_by_role("link", name="Log out").or_(page.get_by_role("button", name="Log out"))).to_be_visible()
    assert page.url.rstrip("/").endswith("/admin")


def test_a_wrong_password_is_refused_in_the_browser(page: Page, portico: PorticoServer, operator: str) -> None:
    page.goto(portico.url("/admin/login/"))
    page.get_by_label("Username").fill(operator)
    page.get_by_label("Password").fill("not the password")
    page.get_by_role("button", name="Log in").click()

    expect(page.locator(".errornote")).to_be_visible()
    assert "/admin/login/" in page.url
