"""The probes of a real Portico server (on its fast path, as production runs it), with Redis or the database away."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import pytest
from django.db import connection

from tests.servers import PorticoServer, database_url_for, free_port
from tests.tcp_proxy import TcpProxy

pytestmark = pytest.mark.integration

# A probe's checks each have 1.5 s (gateway.health.CHECK_TIMEOUT) and run at once.
PROBE_BOUND = 2.5

StartServer = Callable[..., PorticoServer]


@pytest.fixture
def start_server(transactional_db: None, tmp_path: Path) -> Iterator[StartServer]:
    """A server of the test's own on the test database; `env` adds to or replaces its environment."""
    servers: list[PorticoServer] = []

    def start(**env: str) -> PorticoServer:
        base = {
            "DATABASE_URL": database_url_for(connection.settings_dict["NAME"]),
            "PORTICO_LOG_LEVEL": "WARNING",
            "PORTICO_LEDGER_DIR": str(tmp_path / "ledger"),
        }
        server = PorticoServer(env={**base, **env}, log_path=tmp_path / f"server-{len(servers)}.log")
        servers.append(server)
        server.start()
        return server

    yield start
    # Stopped before the test's tables are emptied, which waits for their connections.
    for server in servers:
        server.stop()


def probe(server: PorticoServer, path: str) -> tuple[int, dict[str, object], float]:
    started = time.monotonic()
    response = server.http.get(path)
    return response.status_code, response.json(), time.monotonic() - started


def test_a_server_is_live_and_ready(start_server: StartServer) -> None:
    server = start_server()

    assert probe(server, "/health/live")[:2] == (200, {"status": "ok"})
    status, body, _ = probe(server, "/health/ready")
    assert (status, body) == (200, {"status": "ok", "checks": {"database": "ok", "redis": "ok", "snapshot": "ok"}})


def test_a_server_whose_redis_is_away_is_live_but_not_ready(start_server: StartServer) -> None:
    server = start_server(REDIS_URL=f"redis://127.0.0.1:{free_port()}/0")

    assert probe(server, "/health/live")[0] == 200
    status, body, took = probe(server, "/health/ready")
    assert status == 503
    assert body == {
        "status": "unavailable",
        "checks": {"database": "ok", "redis": "error: ConnectionError", "snapshot": "ok"},
    }
    assert took < PROBE_BOUND


@pytest.fixture
def postgres_proxy() -> Iterator[TcpProxy]:
    database = urlsplit(database_url_for(connection.settings_dict["NAME"]))
    proxy = TcpProxy(database.hostname or "127.0.0.1", database.port or 5432)
    proxy.start()
    yield proxy
    proxy.stop()


def test_a_server_whose_database_is_away_is_live_but_not_ready_and_says_so_in_time(
    start_server: StartServer, postgres_proxy: TcpProxy
) -> None:
    url = urlsplit(database_url_for(connection.settings_dict["NAME"]))
    credentials = url.netloc.rpartition("@")[0]
    through_proxy = urlunsplit(url._replace(netloc=f"{credentials}@127.0.0.1:{postgres_proxy.port}"))
    server = start_server(DATABASE_URL=through_proxy)
    assert probe(server, "/health/ready")[0] == 200

    postgres_proxy.cut()

    assert probe(server, "/health/live")[0] == 200
    status, body, took = probe(server, "/health/ready")
    assert status == 503
    checks = body["checks"]
    assert isinstance(checks, dict)
    assert str(checks.pop("database")).startswith("error: ")
    assert checks == {"redis": "ok", "snapshot": "ok"}
    assert took < PROBE_BOUND
