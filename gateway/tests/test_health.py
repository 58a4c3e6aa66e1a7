"""/health/live and /health/ready in-process: what each check says, and that no probe hangs."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Iterator

import pytest

from gateway import health
from gateway.snapshot import Snapshot, store
from tests.servers import free_port


@pytest.fixture
def loaded(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(store, "current", Snapshot())


@pytest.fixture
def not_loaded(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(store, "current", None)


async def test_live_answers_without_the_database_or_redis(async_client, settings, not_loaded):
    # No `db` fixture: the test database is locked, so a query would fail the test.
    settings.REDIS_URL = f"redis://127.0.0.1:{free_port()}/0"

    response = await async_client.get("/health/live")

    assert response.status_code == 200
    assert response.json() == {"status": "ok"}
    assert response["Cache-Control"] == "no-store"


@pytest.mark.django_db
async def test_ready_answers_200_when_the_database_redis_and_snapshot_are_there(async_client, loaded):
    response = await async_client.get("/health/ready")

    assert response.status_code == 200
    assert response.json() == {"status": "ok", "checks": {"database": "ok", "redis": "ok", "snapshot": "ok"}}


@pytest.mark.django_db
async def test_ready_is_unavailable_until_the_snapshot_is_loaded(async_client, not_loaded):
    response = await async_client.get("/health/ready")

    assert response.status_code == 503
    assert response.json() == {
        "status": "unavailable",
        "checks": {"database": "ok", "redis": "ok", "snapshot": "error: not loaded yet"},
    }


@pytest.mark.django_db
async def test_ready_names_redis_when_it_does_not_answer(async_client, settings, loaded):
    settings.REDIS_URL = f"redis://127.0.0.1:{free_port()}/0"

    response = await async_client.get("/health/ready")

    assert response.status_code == 503
    assert response.json()["checks"] == {"database": "ok", "redis": "error: ConnectionError", "snapshot": "ok"}


@pytest.mark.django_db
async def test_without_redis_configured_ready_does_not_check_it(async_client, settings, loaded):
    settings.REDIS_URL = ""

    response = await async_client.get("/health/ready")

    assert response.status_code == 200
    assert response.json()["checks"] == {"database": "ok", "snapshot": "ok"}


async def test_the_probes_take_get_and_head_only(async_client):
    assert (await async_client.post("/health/live")).status_code == 405
    assert (await async_client.head("/health/live")).status_code == 200


class HangingConnection:
    """A database connection whose every query hangs until released."""

    def __init__(self) -> None:
        self.release = threading.Event()
        self.queries = 0

    def cursor(self) -> HangingConnection:
        return self

    def __enter__(self) -> HangingConnection:
        return self

    def __exit__(self, *exc: object) -> None:
        pass

    def execute(self, sql: str) -> None:
        self.queries += 1
        self.release.wait(10)

    def close(self) -> None:
        pass


@pytest.fixture
def hanging(monkeypatch: pytest.MonkeyPatch) -> Iterator[HangingConnection]:
    database = HangingConnection()
    monkeypatch.setattr(health, "connection", database)
    monkeypatch.setattr(health, "CHECK_TIMEOUT", 0.2)
    yield database
    database.release.set()


async def test_a_database_that_hangs_fails_the_probe_within_its_timeout_without_piling_up_threads(
    async_client, settings, loaded, hanging
):
    settings.REDIS_URL = ""

    started = time.monotonic()
    first = await async_client.get("/health/ready")
    second = await async_client.get("/health/ready")
    elapsed = time.monotonic() - started

    assert elapsed < 1.0
    assert first.status_code == second.status_code == 503
    assert first.json()["checks"]["database"] == "error: no answer within 0.2 s"
    assert second.json()["checks"]["database"] == "error: the previous check has not returned yet"
    assert hanging.queries == 1
    hanging.release.set()
    await asyncio.sleep(0)
