"""The portal on a real Portico server: a member signs in, makes a key, the official SDK calls with it, and the
call appears in the portal's request log.

The server is started as production starts it (gateway.server), on the test
database, with a small connection pool of its own.
"""

from __future__ import annotations

import re
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from django.contrib.auth.models import User
from django.db import connection

from providers.tests.factories import make_provider, make_route
from tenants.models import ApiKey, TenantRole
from tenants.services import membership_create
from tenants.tests.factories import make_tenant
from tests.servers import PorticoServer, database_url_for

pytestmark = pytest.mark.integration

PASSWORD = "a long portal passphrase 42"
MODEL = "mock-echo-portal"
CSRF = re.compile(r'name="csrfmiddlewaretoken" value="([^"]+)"')
SECRET = re.compile(r'value="(pk-[^"]+)"')
ROW_LINK = re.compile(r"/portal/live/requests/\d+/")
# A server writes its ledger rows every half second; a row later than this is lost, not late.
ARRIVAL_TIMEOUT = 10.0


@pytest.fixture
def server(transactional_db: None, tmp_path: Path) -> Iterator[PorticoServer]:
    route = make_route(provider=make_provider(kind="mock"), public_id=MODEL, upstream_model="mock-echo")
    tenant = make_tenant(slug="live", allowed_model_ids=[route.pk])
    user = User.objects.create_user(username="lee", password=PASSWORD)
    membership_create(tenant=tenant, user=user, role=TenantRole.MEMBER)
    env = {
        "DATABASE_URL": database_url_for(connection.settings_dict["NAME"]),
        "PORTICO_DB_POOL_SIZE": "2",
        "PORTICO_LOG_LEVEL": "WARNING",
        "PORTICO_LEDGER_DIR": str(tmp_path / "ledger"),
    }
    portico = PorticoServer(env=env, log_path=tmp_path / "server.log")
    portico.start()
    yield portico
    # Stopped before the test's tables are emptied, which waits for their connections.
    portico.stop()


def _post_form(browser: httpx.Client, page: str, data: dict[str, str | list[str]]) -> httpx.Response:
    """Post the form of `page` as a browser does: with the CSRF token the page carries."""
    token = CSRF.search(browser.get(page).text)
    assert token is not None, f"{page} has no form"
    return browser.post(page, data={**data, "csrfmiddlewaretoken": token.group(1)})


def _logged(browser: httpx.Client, request_id: str) -> str:
    deadline = time.monotonic() + ARRIVAL_TIMEOUT
    while True:
        page = browser.get("/portal/live/requests/", params={"request_id": request_id}).text
        if ROW_LINK.search(page):
            return page
        if time.monotonic() > deadline:
            raise AssertionError(f"no ledger row for {request_id} in the portal after {ARRIVAL_TIMEOUT:g} s")
        time.sleep(0.05)


def test_a_key_made_in_the_portal_serves_the_sdk_and_its_call_is_in_the_request_log(server: PorticoServer) -> None:
    request_id = f"portal-{uuid.uuid4()}"
    with httpx.Client(base_url=server.base_url, timeout=10) as browser:
        signed_in = _post_form(browser, "/portal/login/", {"username": "lee", "password": PASSWORD})
        created = _post_form(browser, "/portal/live/keys/", {"name": "sdk", "models": [MODEL]})
        shown = browser.get(created.headers["location"])
        reloaded = browser.get(created.headers["location"])
        [plaintext] = SECRET.findall(shown.text)
        server.wait_for_status(plaintext, 200, deadline=time.monotonic() + 5)

        with server.client(plaintext) as sdk:
            completion = sdk.chat.completions.create(
                model=MODEL,
                messages=[{"role": "user", "content": "hello from the portal"}],
                extra_headers={"x-request-id": request_id},
            )
        log = _logged(browser, request_id)

    assert (signed_in.status_code, signed_in.headers["location"]) == (302, "/portal/")
    assert (created.status_code, created.headers["location"]) == (302, "/portal/live/keys/created/")
    assert "default-src 'self'" in shown.headers["content-security-policy"]
    assert reloaded.status_code == 302
    assert plaintext not in reloaded.text
    assert ApiKey.objects.filter(tenant__slug="live").count() == 1
    assert completion.choices[0].message.content == "hello from the portal"
    api_key = ApiKey.objects.get(tenant__slug="live")
    assert f"<code>{api_key.prefix}</code>" in log
    assert f"<td>{MODEL}</td>" in log
    assert '<td class="status-2xx">200</td>' in log
