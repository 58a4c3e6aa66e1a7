"""Postgres refuses every new connection: /v1/ keeps serving, /api/ refuses cleanly, the ledger loses nothing.

The server connects as a role of this test's own. To saturate it, the test
takes connections as that role, lowers the role's limit to exactly those, and
ends the server's: every connection the server then tries is refused with
too_many_connections, as at a server's max_connections, while the shared
Postgres is untouched.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from providers.models import ModelRoute
from tenants.tests.factories import IssuedKey
from tests.integration.test_ledger_outages import (  # noqa: F401 - route and start_server are fixtures
    Load,
    StartServer,
    assert_recorded_exactly_once,
    route,
    start_server,
)
from tests.security.operators import Operator, operator
from tests.security.postgres_role import LimitedRole, limited_role
from tests.servers import PorticoServer, database_url_for

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("committed_db")]

ROLE_LIMIT = 10
HELD = 2
POOL_TIMEOUT = 0.5
SERVED_WHILE_SATURATED = 20
DEADLINE = 30.0


@pytest.fixture
def role(test_database: str) -> Iterator[LimitedRole]:
    with limited_role(database_url_for(test_database), limit=ROLE_LIMIT) as made:
        yield made


@pytest.fixture
def staff() -> Iterator[Operator]:
    with operator() as made:
        yield made


@pytest.fixture
def spool(tmp_path: Path) -> Path:
    return tmp_path / "spool"


@pytest.fixture
def server(start_server: StartServer, role: LimitedRole, spool: Path) -> PorticoServer:  # noqa: F811
    return start_server(
        "portico",
        DATABASE_URL=role.database_url,
        PORTICO_DB_POOL_SIZE="4",
        PORTICO_DB_POOL_TIMEOUT=str(POOL_TIMEOUT),
        PORTICO_LEDGER_DIR=str(spool),
        PORTICO_LEDGER_FLUSH="0.1",
        PORTICO_API_THROTTLE_USER="1000000/min",
    )


def until(condition: object, what: str) -> None:
    deadline = time.monotonic() + DEADLINE
    while not condition():  # type: ignore[operator]
        assert time.monotonic() < deadline, f"gave up waiting: {what}"
        time.sleep(0.02)


def test_a_saturated_database_refuses_the_management_api_cleanly_and_the_ledger_loses_nothing(
    server: PorticoServer,
    role: LimitedRole,
    staff: Operator,
    key: IssuedKey,
    route: ModelRoute,  # noqa: F811
    spool: Path,
) -> None:
    api = httpx.Client(base_url=server.base_url, headers=staff.api_headers(), timeout=10)
    assert api.get("/api/keys/").status_code == 200

    with Load(server, key.plaintext, route.public_id) as load:
        until(lambda: len(load.answers) >= 5, "the first chat answers")
        held = [role.connect() for _ in range(HELD)]
        role.limit(HELD)
        role.terminate(sparing=tuple(connection.info.backend_pid for connection in held))
        saturated_at = time.monotonic()

        refusals = [api.get("/api/keys/") for _ in range(3)]
        # /v1/'s stored objects answer as the management API does (they said service_unavailable, without a wait)
        headers = {"Authorization": f"Bearer {key.plaintext}"}
        refusals += [server.http.get(path, headers=headers) for path in ("/v1/files", "/v1/responses/resp_1")]
        until(
            lambda: len(load.answered_between(saturated_at, time.monotonic())) >= SERVED_WHILE_SATURATED,
            "chat answers while the database refuses connections",
        )
        assert role.connections() == HELD, "the server got a connection while saturated"

        role.limit(ROLE_LIMIT)
        for connection in held:
            connection.close()
        until(lambda: api.get("/api/keys/").status_code == 200, "the management API to recover")

    for refusal in refusals:
        assert refusal.status_code == 503
        assert refusal.headers["content-type"] == "application/json"
        assert refusal.json()["error"]["code"] == "database_unavailable"
        assert refusal.headers["retry-after"] == "1"
        assert refusal.elapsed.total_seconds() < POOL_TIMEOUT + 2
    assert "ledger rows cannot reach the database" in server.log()
    assert_recorded_exactly_once(load, spool)
    api.close()
