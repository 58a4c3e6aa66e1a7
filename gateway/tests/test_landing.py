"""GET /: a page of links to Portico's console, portal, API docs and health, within the console's CSP."""

from __future__ import annotations

from html.parser import HTMLParser

import pytest
from django.test import Client
from django.urls import resolve

from gateway.csp import POLICY

pytestmark = pytest.mark.django_db


class _Page(HTMLParser):
    """The page's links, and whatever a CSP of script-src 'self' and default-src 'self' would load or block."""

    def __init__(self) -> None:
        super().__init__()
        self.links: dict[str, str] = {}
        self.loaded: list[str] = []
        self.scripts: list[str] = []
        self._href: str | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        named = dict(attrs)
        self.scripts += [f"{tag} {name}" for name in named if name.startswith("on")]
        if tag == "script":
            self.scripts.append("script")
        if tag in {"link", "img", "iframe", "object", "embed", "source"}:
            self.loaded.append(named.get("href") or named.get("src") or tag)
        if tag == "a":
            self._href = named.get("href")

    def handle_data(self, data: str) -> None:
        if self._href is not None and data.strip():
            self.links[data.strip()] = self._href
            self._href = None


def _page(response) -> _Page:
    page = _Page()
    page.feed(response.content.decode())
    return page


def test_anyone_gets_a_page_linking_the_console_portal_docs_schema_and_health():
    response = Client().get("/")

    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/html")
    assert _page(response).links == {
        "Console": "/admin/",
        "Tenant portal": "/portal/",
        "OpenAI API docs": "/v1/docs",
        "Management API schema": "/api/schema/",
        "Health": "/health",
    }


def test_every_link_is_a_page_portico_serves():
    for href in _page(Client().get("/")).links.values():
        resolve(href)  # raises Resolver404 for a link to nowhere


def test_the_page_keeps_to_the_consoles_content_security_policy():
    response = Client().get("/")
    page = _page(response)

    assert response["Content-Security-Policy"] == POLICY
    assert page.scripts == []
    assert page.loaded == []
    assert "http://" not in response.content.decode().replace(f"http://{response.wsgi_request.get_host()}", "")
    assert "https://" not in response.content.decode()


def test_it_answers_only_reads():
    assert Client().post("/").status_code == 405
    assert Client().head("/").status_code == 200
