"""CORS in a real browser: a page from another loopback origin calls Portico with fetch().

The page's origin (its own port on 127.0.0.1) is listed by the owner's tenant.
The browser preflights each call, then lets the page read the answer only if
Portico grants that origin for the key used; the outsider's key, whose tenant
does not list the origin, is answered by Portico but kept from the page.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from playwright.sync_api import Page

from providers.models import ModelRoute
from tenants.tenant_services import tenant_update
from tests.browser import BrowserErrors
from tests.integration.conftest import Personas
from tests.servers import PorticoServer, Settle

pytestmark = pytest.mark.integration

PAGE = b"<!doctype html><html><head><title>A browser client</title></head><body>client</body></html>"
# Runs in the page: the answer's status, content and one exposed header, or what the browser made of it.
CALL = """async ([url, key, model]) => {
    try {
        const response = await fetch(url, {
            method: "POST",
            headers: {"Authorization": `Bearer ${key}`, "Content-Type": "application/json"},
            body: JSON.stringify({model, messages: [{role: "user", content: "from the browser"}]}),
        });
        const body = await response.json();
        return {
            status: response.status,
            content: body.choices[0].message.content,
            attempts: response.headers.get("x-portico-attempts"),
        };
    } catch (error) {
        return {error: String(error)};
    }
}"""


class _PageHandler(BaseHTTPRequestHandler):
    def do_GET(self) -> None:  # noqa: N802 - the name http.server dispatches to
        self.send_response(200)
        self.send_header("Content-Type", "text/html; charset=utf-8")
        self.send_header("Content-Length", str(len(PAGE)))
        self.end_headers()
        self.wfile.write(PAGE)

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - the base class's signature
        pass


@pytest.fixture(scope="module")
def page_origin() -> Iterator[str]:
    """A plain web server for the page, on a port (so an origin) of its own."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), _PageHandler)
    thread = threading.Thread(target=server.serve_forever, name="cors-page", daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        thread.join(timeout=10)
        server.server_close()


@pytest.fixture
def people(
    committed_db: None, personas: Callable[..., Personas], echo_route: ModelRoute, settle: Settle, page_origin: str
) -> Personas:
    people = personas(echo_route)
    tenant_update(tenant=people.owner.api_key.tenant, fields={"cors_origins": [page_origin]})
    settle()
    return people


def _call(page: Page, portico: PorticoServer, key: str, model: str) -> dict[str, Any]:
    return page.evaluate(CALL, [portico.url("/v1/chat/completions"), key, model])


def test_a_page_of_a_listed_origin_reads_portico_s_answer(
    page: Page, portico: PorticoServer, people: Personas, echo_route: ModelRoute, page_origin: str
) -> None:
    page.goto(page_origin)

    answer = _call(page, portico, people.owner.plaintext, echo_route.public_id)

    assert answer == {"status": 200, "content": "from the browser", "attempts": "1"}


def test_the_browser_keeps_an_answer_for_another_tenants_key_from_the_page(
    page: Page,
    portico: PorticoServer,
    people: Personas,
    echo_route: ModelRoute,
    page_origin: str,
    browser_errors: BrowserErrors,
) -> None:
    page.goto(page_origin)

    answer = _call(page, portico, people.outsider.plaintext, echo_route.public_id)

    assert answer == {"error": "TypeError: Failed to fetch"}
    # The browser says why on its console: that is the point of this test, not an error of the page.
    blocked = [seen for seen in browser_errors.seen if "CORS policy" in seen or "net::ERR_FAILED" in seen]
    assert any("No 'Access-Control-Allow-Origin' header" in seen for seen in blocked), browser_errors.seen
    browser_errors.seen[:] = [seen for seen in browser_errors.seen if seen not in blocked]
