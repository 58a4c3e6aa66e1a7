"""The hot path runs no database query and no thread hop once warmed up.

Queries may run in any thread (the snapshot is built in a worker thread), so
they are counted globally: every cursor execution and every new connection, in
every thread, while a request is measured. Hops are counted where they start:
each `sync_to_async` call and each job handed to an event loop's executor.

The second half proves the watch can fail: it sees a snapshot reload's queries
in its worker thread, and the queries of a cold first request.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from decimal import Decimal
from typing import Any

import httpx
import orjson
import pytest
from asgiref.sync import SyncToAsync
from django.db.backends.base.base import BaseDatabaseWrapper
from django.db.backends.utils import CursorWrapper
from pytest_django import Settings

from billing.models import Budget, Price, RateLimit
from gateway.asgi import application
from gateway.snapshot import store
from gateway.tests.test_fastpath import CHAT, client_of_portico, run_in_process, started_portico
from providers.models import ModelRoute
from providers.tests.factories import make_route
from tenants.tests.factories import IssuedKey

pytestmark = pytest.mark.django_db(transaction=True)


class Watch:
    """What ran while watching: SQL (with the thread it ran in), new connections, and hops to threads."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.queries: list[tuple[str, str]] = []
        self.connections = 0
        self.sync_to_async_calls = 0
        self.executor_jobs = 0

    def query(self, sql: str) -> None:
        with self._lock:
            self.queries.append((threading.current_thread().name, sql))

    def connection(self) -> None:
        with self._lock:
            self.connections += 1

    def hop(self) -> None:
        with self._lock:
            self.sync_to_async_calls += 1

    def executor_job(self) -> None:
        with self._lock:
            self.executor_jobs += 1

    def summary(self) -> dict[str, Any]:
        return {
            "queries": self.queries,
            "connections": self.connections,
            "sync_to_async": self.sync_to_async_calls,
            "executor_jobs": self.executor_jobs,
        }


@contextmanager
def watching(monkeypatch: pytest.MonkeyPatch) -> Iterator[Watch]:
    watch = Watch()
    execute, executemany, connect = CursorWrapper.execute, CursorWrapper.executemany, BaseDatabaseWrapper.connect
    call_sync, run_in_executor = SyncToAsync.__call__, asyncio.BaseEventLoop.run_in_executor

    def counted_execute(self: CursorWrapper, sql: str, params: Any = None) -> Any:
        watch.query(sql)
        return execute(self, sql, params)

    def counted_executemany(self: CursorWrapper, sql: str, param_list: Any) -> Any:
        watch.query(sql)
        return executemany(self, sql, param_list)

    def counted_connect(self: BaseDatabaseWrapper) -> None:
        watch.connection()
        connect(self)

    async def counted_call(self: SyncToAsync, *args: Any, **kwargs: Any) -> Any:
        watch.hop()
        return await call_sync(self, *args, **kwargs)

    def counted_run_in_executor(self: asyncio.BaseEventLoop, executor: Any, func: Any, *args: Any) -> Any:
        watch.executor_job()
        return run_in_executor(self, executor, func, *args)

    with monkeypatch.context() as patch:
        # CursorDebugWrapper calls these through super(), so they see its queries too.
        patch.setattr(CursorWrapper, "execute", counted_execute)
        patch.setattr(CursorWrapper, "executemany", counted_executemany)
        patch.setattr(BaseDatabaseWrapper, "connect", counted_connect)
        patch.setattr(SyncToAsync, "__call__", counted_call)
        patch.setattr(asyncio.BaseEventLoop, "run_in_executor", counted_run_in_executor)
        yield watch


@pytest.fixture
def house_route(mock_route: ModelRoute) -> ModelRoute:
    return make_route(provider=mock_route.provider, public_id="house-echo", upstream_model="mock-echo")


@pytest.fixture
def prepared(
    house_route: ModelRoute, owner: IssuedKey, settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> IssuedKey:
    run_in_process(settings, monkeypatch)
    return owner


def models_request(key: str) -> tuple[str, str, dict[str, Any]]:
    return "GET", "/v1/models", {"headers": {"Authorization": f"Bearer {key}"}}


def chat_request(key: str, **extra: Any) -> tuple[str, str, dict[str, Any]]:
    return "POST", "/v1/chat/completions", {"json": {**CHAT, **extra}, "headers": {"Authorization": f"Bearer {key}"}}


def check_answer(kind: str, response: httpx.Response) -> None:
    """The measured request really did its work: a zero count for a failed request would prove nothing."""
    assert response.status_code == 200, response.text
    if kind == "models":
        assert [model["id"] for model in response.json()["data"]] == ["house-echo", "mock-echo"]
    elif kind == "chat":
        assert response.json()["choices"][0]["message"]["content"] == "hello fast path"
    else:
        assert response.content.endswith(b"data: [DONE]\n\n")
        assert b'"content":" fast"' in response.content
        assert orjson.loads(response.content.split(b"\n\n")[0][len(b"data: ") :])["model"] == "house-echo"


REQUESTS = {
    "models": lambda key: models_request(key),
    "chat": lambda key: chat_request(key),
    "stream": lambda key: chat_request(key, stream=True, stream_options={"include_usage": True}),
}


@pytest.mark.parametrize("kind", list(REQUESTS))
async def test_a_warmed_up_request_runs_no_query_and_no_thread_hop(
    prepared: IssuedKey, monkeypatch: pytest.MonkeyPatch, kind: str
) -> None:
    method, path, options = REQUESTS[kind](prepared.plaintext)
    async with started_portico() as portico:
        check_answer(kind, await portico.request(method, path, **options))  # warm-up

        with watching(monkeypatch) as watch:
            responses = [await portico.request(method, path, **options) for _ in range(3)]

    for response in responses:
        check_answer(kind, response)
    assert watch.summary() == {"queries": [], "connections": 0, "sync_to_async": 0, "executor_jobs": 0}


async def test_a_mix_of_warmed_up_requests_from_several_keys_runs_no_query(
    prepared: IssuedKey, teammate: IssuedKey, monkeypatch: pytest.MonkeyPatch
) -> None:
    # `teammate` is created after `prepared` but before start-up, so the snapshot holds both keys.
    async with started_portico() as portico:
        for kind, build in REQUESTS.items():
            method, path, options = build(prepared.plaintext)
            check_answer(kind, await portico.request(method, path, **options))

        with watching(monkeypatch) as watch:
            for key in (prepared.plaintext, teammate.plaintext):
                for kind, build in REQUESTS.items():
                    method, path, options = build(key)
                    check_answer(kind, await portico.request(method, path, **options))

    assert watch.summary() == {"queries": [], "connections": 0, "sync_to_async": 0, "executor_jobs": 0}


@pytest.fixture
def limited(prepared: IssuedKey, house_route: ModelRoute) -> IssuedKey:
    api_key = prepared.api_key
    RateLimit.objects.create(api_key=api_key, requests_per_minute=1000, tokens_per_minute=10**6, max_concurrent=10)
    RateLimit.objects.create(tenant=api_key.tenant, requests_per_minute=1000)
    Budget.objects.create(api_key=api_key, amount=Decimal(100))
    Price.objects.create(route=house_route.model, input_per_million=Decimal(1), output_per_million=Decimal(2))
    return prepared


@pytest.mark.parametrize("kind", list(REQUESTS))
async def test_a_key_with_limits_and_a_budget_runs_no_query_either(
    limited: IssuedKey, monkeypatch: pytest.MonkeyPatch, kind: str
) -> None:
    # Limits, budgets and prices come from the snapshot; the limiter is in memory (or Redis), never the database.
    method, path, options = REQUESTS[kind](limited.plaintext)
    async with started_portico() as portico:
        check_answer(kind, await portico.request(method, path, **options))

        with watching(monkeypatch) as watch:
            responses = [await portico.request(method, path, **options) for _ in range(3)]

    for response in responses:
        check_answer(kind, response)
        if kind != "models":
            assert response.headers["x-ratelimit-limit-requests"] == "1000"
    assert watch.summary() == {"queries": [], "connections": 0, "sync_to_async": 0, "executor_jobs": 0}


async def test_the_watch_sees_the_queries_and_hop_of_a_snapshot_reload(
    prepared: IssuedKey, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with started_portico():
        with watching(monkeypatch) as watch:
            await store.reload()

    assert watch.sync_to_async_calls == 1
    assert watch.executor_jobs == 1
    assert watch.connections >= 1  # the worker thread opens (and closes) its own connection
    threads = {thread for thread, _ in watch.queries}
    assert threading.current_thread().name not in threads  # counted although they ran in another thread
    assert any('"tenants_apikey"' in sql for _, sql in watch.queries)
    assert any('"providers_modelroute"' in sql for _, sql in watch.queries)


async def test_the_watch_sees_the_snapshot_load_of_a_cold_first_request(
    prepared: IssuedKey, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Under a server that sends no lifespan events, the first /v1/ request starts Portico and loads the snapshot.
    method, path, options = models_request(prepared.plaintext)
    try:
        async with client_of_portico() as portico:
            with watching(monkeypatch) as watch:
                check_answer("models", await portico.request(method, path, **options))
    finally:
        await application.shutdown()

    assert watch.queries
    assert watch.sync_to_async_calls >= 1
