"""The ledger stays exactly once and complete while Postgres or Redis goes away, or a server is killed.

Each test starts a server of its own with a spool directory of its own, so
no other process drains its lines. Postgres goes away for that server alone,
through a TCP proxy that is cut; Redis is a private redis-server that is
stopped and started again. The shared Postgres and Redis stay up throughout.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import httpx
import pytest

from billing.ledger import drain
from billing.models import RateLimit, UsageRecord
from billing.services import budget_set
from providers.models import ModelRoute
from tenants.tests.factories import IssuedKey
from tests.fakes.openai_upstream import FakeUpstream, Reply
from tests.integration.test_ledger import assert_once_each, ledger_rows, spooled
from tests.redis_server import RedisServer
from tests.servers import PROJECT_ROOT, PorticoServer, Settle
from tests.tcp_proxy import TcpProxy

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("committed_db")]

HELLO = [{"role": "user", "content": "Say hello."}]
LOAD_THREADS = 4
# The writer backs off up to 5 s while the database refuses, so rows may take that long after it is back.
ARRIVAL_TIMEOUT = 15.0


@dataclass
class Answer:
    status: int
    at: float  # time.monotonic() when it came


@dataclass
class Load:
    """Threads sending chat requests (whole and streamed by turns), each with an x-request-id of its own."""

    server: PorticoServer
    key: str
    model: str
    answers: dict[str, Answer] = field(default_factory=dict)
    unanswered: list[str] = field(default_factory=list)  # the connection broke: served or not, nobody knows
    _stop: threading.Event = field(default_factory=threading.Event)
    _threads: list[threading.Thread] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def __enter__(self) -> Load:
        self._threads = [threading.Thread(target=self._send, args=(n,)) for n in range(LOAD_THREADS)]
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join()

    def _send(self, number: int) -> None:
        headers = {"Authorization": f"Bearer {self.key}"}
        with httpx.Client(base_url=self.server.base_url, headers=headers, timeout=5) as http:
            turn = number
            while not self._stop.is_set():
                turn += 1
                request_id = f"load-{uuid.uuid4()}"
                body = {"model": self.model, "messages": HELLO, "stream": bool(turn % 2)}
                try:
                    response = http.post("/v1/chat/completions", json=body, headers={"x-request-id": request_id})
                except httpx.TransportError:
                    with self._lock:
                        self.unanswered.append(request_id)
                    continue
                with self._lock:
                    self.answers[request_id] = Answer(response.status_code, time.monotonic())

    def answered_between(self, start: float, end: float) -> list[int]:
        with self._lock:
            return [answer.status for answer in self.answers.values() if start <= answer.at <= end]


def assert_recorded_exactly_once(load: Load, spool: Path) -> None:
    """Every answered request has one row; a request whose answer never came has at most one."""
    answered = set(load.answers)
    rows = ledger_rows(answered, spool=spool, timeout=ARRIVAL_TIMEOUT)
    assert_once_each(rows, answered)
    others = UsageRecord.objects.filter(client_request_id__in=load.unanswered)
    assert others.count() == len({row.client_request_id for row in others})
    assert {answer.status for answer in load.answers.values()} == {200}


@pytest.fixture
def route(upstream: FakeUpstream, upstream_route: ModelRoute, key: IssuedKey, settle: Settle) -> ModelRoute:
    upstream.script(upstream_route.upstream_model, Reply("Hello there, from the fake upstream."))
    settle()
    return upstream_route


StartServer = Callable[..., PorticoServer]


@pytest.fixture
def start_server(server_env: dict[str, str], tmp_path: Path) -> Iterator[StartServer]:
    """Start a server of this test's own; `env` adds to (or replaces) the session servers' environment."""
    servers: list[PorticoServer] = []

    def start(name: str, **env: str) -> PorticoServer:
        server = PorticoServer(env={**server_env, **env}, log_path=tmp_path / f"{name}.log")
        servers.append(server)
        server.start()
        return server

    yield start
    for server in reversed(servers):
        server.stop()


# --- Postgres goes away ---


@pytest.fixture
def postgres_proxy(server_env: dict[str, str]) -> Iterator[TcpProxy]:
    database = urlsplit(server_env["DATABASE_URL"])
    proxy = TcpProxy(database.hostname or "127.0.0.1", database.port or 5432)
    proxy.start()
    yield proxy
    proxy.stop()


def through(proxy: TcpProxy, database_url: str) -> str:
    parts = urlsplit(database_url)
    credentials = parts.netloc.rpartition("@")[0]
    return urlunsplit(
        parts._replace(netloc=f"{credentials}@127.0.0.1:{proxy.port}" if credentials else f"127.0.0.1:{proxy.port}")
    )


def test_requests_served_while_postgres_is_down_reach_the_ledger_once_it_is_back(
    start_server: StartServer,
    postgres_proxy: TcpProxy,
    server_env: dict[str, str],
    key: IssuedKey,
    route: ModelRoute,
    tmp_path: Path,
) -> None:
    spool = tmp_path / "spool"
    server = start_server(
        "portico",
        DATABASE_URL=through(postgres_proxy, server_env["DATABASE_URL"]),
        PORTICO_LEDGER_DIR=str(spool),
        PORTICO_LEDGER_FLUSH="0.1",
    )

    with Load(server, key.plaintext, route.public_id) as load:
        time.sleep(0.5)
        cut_at = time.monotonic()
        postgres_proxy.cut()
        time.sleep(2.0)
        postgres_proxy.restore()
        restored_at = time.monotonic()
        time.sleep(0.5)

    served_while_down = load.answered_between(cut_at, restored_at)
    assert len(served_while_down) >= 10, "the server stopped answering while its database was away"
    assert postgres_proxy.refused > 0, "the server never tried its database while it was away"
    assert_recorded_exactly_once(load, spool)
    log = server.log()
    assert "ledger rows cannot reach the database" in log
    assert "ledger writes resumed" in log


def test_a_server_stopped_while_postgres_is_down_leaves_its_lines_for_the_next_process(
    start_server: StartServer,
    postgres_proxy: TcpProxy,
    server_env: dict[str, str],
    key: IssuedKey,
    route: ModelRoute,
    tmp_path: Path,
) -> None:
    spool = tmp_path / "spool"
    server = start_server(
        "portico",
        DATABASE_URL=through(postgres_proxy, server_env["DATABASE_URL"]),
        PORTICO_LEDGER_DIR=str(spool),
        PORTICO_LEDGER_FLUSH="3600",
    )
    request_ids = [f"stopped-{uuid.uuid4()}" for _ in range(3)]
    for request_id in request_ids:
        response = server.http.post(
            "/v1/chat/completions",
            json={"model": route.public_id, "messages": HELLO},
            headers={"Authorization": f"Bearer {key.plaintext}", "x-request-id": request_id},
        )
        assert response.status_code == 200

    postgres_proxy.cut()
    server.stop()
    postgres_proxy.restore()

    assert [path.suffix for path in spool.iterdir()] == [".ready"]
    assert not UsageRecord.objects.filter(client_request_id__in=request_ids).exists()
    assert drain(spool) == 3
    assert_once_each(ledger_rows(request_ids, spool=spool), request_ids)


# --- Redis goes away ---


@pytest.fixture
def private_redis(tmp_path: Path) -> Iterator[RedisServer]:
    redis = RedisServer(log_path=tmp_path / "redis.log")
    redis.start()
    yield redis
    redis.stop()


def test_requests_served_while_redis_restarts_reach_the_ledger_once(
    start_server: StartServer, private_redis: RedisServer, key: IssuedKey, route: ModelRoute, tmp_path: Path
) -> None:
    # A limit and a budget send every request of the key through the shared limiter, that is through Redis.
    RateLimit.objects.create(api_key=key.api_key, requests_per_minute=1_000_000, max_concurrent=100)
    budget_set(api_key=key.api_key, amount=Decimal("1000"))
    spool = tmp_path / "spool"
    server = start_server(
        "portico", REDIS_URL=private_redis.url, PORTICO_LEDGER_DIR=str(spool), PORTICO_LEDGER_FLUSH="0.1"
    )

    with Load(server, key.plaintext, route.public_id) as load:
        time.sleep(0.5)
        stopped_at = time.monotonic()
        private_redis.stop()
        time.sleep(1.0)
        private_redis.start()
        restarted_at = time.monotonic()
        time.sleep(1.5)

    assert len(load.answered_between(stopped_at, restarted_at)) >= 5
    assert_recorded_exactly_once(load, spool)
    assert "Redis does not answer the rate limiter" in server.log()


# --- a server is killed ---


def kill(server: PorticoServer) -> int:
    """SIGKILL the server, as the kernel's OOM killer would; returns its pid."""
    process = server._process
    assert process is not None
    os.kill(process.pid, signal.SIGKILL)
    process.wait(timeout=10)
    return process.pid


def serve_and_kill(start_server: StartServer, key: IssuedKey, route: ModelRoute, spool: Path) -> tuple[list[str], int]:
    """Requests answered by a server that is then killed before it flushed its spool."""
    server = start_server("doomed", PORTICO_LEDGER_DIR=str(spool), PORTICO_LEDGER_FLUSH="3600")
    request_ids = [f"doomed-{uuid.uuid4()}" for _ in range(10)]
    headers = {"Authorization": f"Bearer {key.plaintext}"}
    for n, request_id in enumerate(request_ids):
        body = {"model": route.public_id, "messages": HELLO, "stream": bool(n % 2)}
        response = server.http.post("/v1/chat/completions", json=body, headers={**headers, "x-request-id": request_id})
        assert response.status_code == 200
    # A stream's line is appended as its generator ends, a moment after the client has read [DONE].
    deadline = time.monotonic() + 5
    while spooled(spool, request_ids) != set(request_ids):
        assert time.monotonic() < deadline, "the answered requests were not spooled"
        time.sleep(0.01)
    return request_ids, kill(server)


def test_the_ledger_command_inserts_the_lines_of_a_killed_server_once(
    start_server: StartServer, server_env: dict[str, str], key: IssuedKey, route: ModelRoute, tmp_path: Path
) -> None:
    spool = tmp_path / "spool"
    request_ids, pid = serve_and_kill(start_server, key, route, spool)
    [left] = spool.iterdir()
    assert (left.name.split("-")[1], left.suffix) == (str(pid), ".active")
    assert not UsageRecord.objects.filter(client_request_id__in=request_ids).exists()

    def ledger_flush() -> str:
        # The `portico` script installed beside this interpreter, as an operator would run it.
        command = [str(Path(sys.executable).with_name("portico")), "ledger_flush", "--dir", str(spool)]
        env = {**os.environ, **server_env}
        done = subprocess.run(command, cwd=PROJECT_ROOT, env=env, capture_output=True, text=True, check=True)  # noqa: S603
        return done.stdout

    assert ledger_flush() == f"10 ledger row(s) inserted from {spool}.\n"
    assert ledger_flush() == f"0 ledger row(s) inserted from {spool}.\n"
    rows = ledger_rows(request_ids, spool=spool)
    assert_once_each(rows, request_ids)
    assert {(row.status, row.streamed) for row in rows} == {(200, True), (200, False)}


def test_the_next_server_on_the_host_inserts_the_lines_of_a_killed_one_once(
    start_server: StartServer, key: IssuedKey, route: ModelRoute, tmp_path: Path
) -> None:
    spool = tmp_path / "spool"
    request_ids, _pid = serve_and_kill(start_server, key, route, spool)

    start_server("successor", PORTICO_LEDGER_DIR=str(spool), PORTICO_LEDGER_FLUSH="0.1")

    rows = ledger_rows(request_ids, spool=spool)
    assert_once_each(rows, request_ids)
    assert list(spool.iterdir()) == []


def test_a_server_stopped_gracefully_flushes_its_spool_before_it_exits(
    start_server: StartServer, key: IssuedKey, route: ModelRoute, tmp_path: Path
) -> None:
    spool = tmp_path / "spool"
    server = start_server("stopped", PORTICO_LEDGER_DIR=str(spool), PORTICO_LEDGER_FLUSH="3600")
    request_id = f"last-{uuid.uuid4()}"
    response = server.http.post(
        "/v1/chat/completions",
        json={"model": route.public_id, "messages": HELLO},
        headers={"Authorization": f"Bearer {key.plaintext}", "x-request-id": request_id},
    )
    assert response.status_code == 200

    server.stop()

    assert UsageRecord.objects.filter(client_request_id=request_id).count() == 1
    assert list(spool.iterdir()) == []
