"""The ASGI entry point, driven in-process: /v1/ on the fast path, everything else through Django.

`gateway.asgi.application` is called as an ASGI app (through httpx.ASGITransport,
or with a hand-written scope where the client's behaviour matters). The snapshot
loads in a worker thread with its own connection, so rows are committed
(`transaction=True`) and created before the app starts.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from typing import Any

import httpx
import orjson
import pytest
from django.core.signals import request_started
from pytest_django import Settings

from gateway.asgi import Portico, application
from gateway.snapshot import store
from providers.adapters.framing import EventSplitter
from providers.models import ModelRoute
from providers.tests.factories import make_route
from tenants.services import tenant_set_models
from tenants.tests.factories import IssuedKey

pytestmark = pytest.mark.django_db(transaction=True)

PERSONAS = ["owner", "teammate", "outsider"]
CHAT = {"model": "house-echo", "messages": [{"role": "user", "content": "hello fast path"}]}
REQUEST_ID = re.compile(r"req_[0-9a-f]{32}")


def run_in_process(settings: Settings, monkeypatch: pytest.MonkeyPatch) -> None:
    """Prepare the process-wide app for a test in this test's event loop."""
    # No background reload or flush may run during a test: what a test sees is its requests alone.
    settings.REDIS_URL = ""
    settings.PORTICO_SNAPSHOT_TTL = 3600.0
    settings.PORTICO_LAST_USED_FLUSH = 3600.0
    settings.PORTICO_LEDGER_FLUSH = 3600.0  # the ledger is written by its own thread, checked apart
    # The store outlives each test's event loop; every test starts from an empty one.
    monkeypatch.setattr(store, "current", None)
    monkeypatch.setattr(store, "_lock", None)
    monkeypatch.setattr(store, "_stale", asyncio.Event())


@asynccontextmanager
async def client_of_portico() -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=application)
    async with httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1") as client:
        yield client


@asynccontextmanager
async def started_portico() -> AsyncIterator[httpx.AsyncClient]:
    """Portico as a server runs it: lifespan start-up (snapshot loaded), requests, shutdown."""
    await application.startup()
    try:
        async with client_of_portico() as client:
            yield client
    finally:
        await application.shutdown()


@pytest.fixture
def house_route(mock_route: ModelRoute) -> ModelRoute:
    """A public id that differs from the upstream name, so rewriting shows."""
    return make_route(provider=mock_route.provider, public_id="house-echo", upstream_model="mock-echo")


@pytest.fixture
def personas(
    owner: IssuedKey, teammate: IssuedKey, outsider: IssuedKey, house_route: ModelRoute
) -> dict[str, IssuedKey]:
    # The outsider's tenant may use house-echo only; owner and teammate may use every model.
    tenant_set_models(tenant=outsider.api_key.tenant, model_ids=[house_route.model_id])
    return {"owner": owner, "teammate": teammate, "outsider": outsider}


@pytest.fixture
async def portico(
    personas: dict[str, IssuedKey], settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[httpx.AsyncClient]:
    run_in_process(settings, monkeypatch)
    async with started_portico() as client:
        yield client


def bearer(issued: IssuedKey) -> dict[str, str]:
    return {"Authorization": f"Bearer {issued.plaintext}"}


def error_of(response: httpx.Response) -> dict[str, Any]:
    assert response.headers["content-type"] == "application/json"
    body = response.json()
    assert set(body) == {"error"}
    assert set(body["error"]) == {"message", "type", "param", "code"}
    return body["error"]


@pytest.fixture
def started_signals() -> Iterator[list[object]]:
    """Every `request_started` Django sends: the fast path must send none."""
    seen: list[object] = []

    def receiver(sender: object, **kwargs: Any) -> None:
        seen.append(sender)

    request_started.connect(receiver, weak=False, dispatch_uid="test-fastpath-started")
    try:
        yield seen
    finally:
        request_started.disconnect(dispatch_uid="test-fastpath-started")


# --- models and auth ----------------------------------------------------------


@pytest.mark.parametrize(
    ("persona", "listed"),
    [("owner", ["house-echo", "mock-echo"]), ("teammate", ["house-echo", "mock-echo"]), ("outsider", ["house-echo"])],
)
async def test_each_persona_lists_the_models_it_may_use(
    portico: httpx.AsyncClient, personas: dict[str, IssuedKey], persona: str, listed: list[str]
) -> None:
    response = await portico.get("/v1/models", headers=bearer(personas[persona]))

    assert response.status_code == 200
    body = response.json()
    assert body["object"] == "list"
    assert [model["id"] for model in body["data"]] == listed
    assert {field: body["data"][0][field] for field in ("id", "object", "created", "owned_by")} == {
        "id": "house-echo",
        "object": "model",
        "created": body["data"][0]["created"],
        "owned_by": "portico",
    }


async def test_the_outsider_cannot_see_a_model_outside_its_allowlist(
    portico: httpx.AsyncClient, personas: dict[str, IssuedKey]
) -> None:
    listed = await portico.get("/v1/models/mock-echo", headers=bearer(personas["outsider"]))
    chat = await portico.post(
        "/v1/chat/completions", json={**CHAT, "model": "mock-echo"}, headers=bearer(personas["outsider"])
    )

    for response in (listed, chat):
        assert response.status_code == 404
        assert error_of(response)["code"] == "model_not_found"
    assert (await portico.get("/v1/models/mock-echo", headers=bearer(personas["owner"]))).status_code == 200


async def test_the_key_may_come_in_an_api_key_header(portico: httpx.AsyncClient, owner: IssuedKey) -> None:
    response = await portico.get("/v1/models", headers={"api-key": owner.plaintext})

    assert response.status_code == 200


async def test_a_request_without_a_key_gets_openais_401(portico: httpx.AsyncClient) -> None:
    response = await portico.get("/v1/models")

    assert response.status_code == 401
    error = error_of(response)
    assert error.pop("message").startswith("You didn't provide an API key.")  # OpenAI's opening words
    assert error == {"type": "invalid_request_error", "param": None, "code": "invalid_api_key"}


async def test_a_wrong_key_gets_401_without_being_echoed(portico: httpx.AsyncClient, owner: IssuedKey) -> None:
    wrong = owner.plaintext[:-1] + ("B" if owner.plaintext.endswith("A") else "A")

    response = await portico.post("/v1/chat/completions", json=CHAT, headers={"Authorization": f"Bearer {wrong}"})

    assert response.status_code == 401
    assert error_of(response)["code"] == "invalid_api_key"
    assert wrong not in response.text
    assert wrong[11:] not in response.text


async def test_an_unknown_model_is_openais_404(portico: httpx.AsyncClient, owner: IssuedKey) -> None:
    response = await portico.get("/v1/models/gpt-9", headers=bearer(owner))

    assert response.status_code == 404
    assert error_of(response) == {
        "message": "The model `gpt-9` does not exist or you do not have access to it.",
        "type": "invalid_request_error",
        "param": "model",
        "code": "model_not_found",
    }


# --- errors the fast path answers itself ---------------------------------------


async def test_an_unknown_v1_path_is_openais_404(portico: httpx.AsyncClient, owner: IssuedKey) -> None:
    response = await portico.get("/v1/nothing-here", headers=bearer(owner))

    assert response.status_code == 404
    assert error_of(response) == {
        "message": "Invalid URL (GET /v1/nothing-here)",
        "type": "invalid_request_error",
        "param": None,
        "code": None,
    }


async def test_a_wrong_method_is_openais_405(portico: httpx.AsyncClient, owner: IssuedKey) -> None:
    response = await portico.get("/v1/chat/completions", headers=bearer(owner))

    assert response.status_code == 405
    error = error_of(response)
    assert (error["type"], error["code"]) == ("invalid_request_error", "method_not_allowed")
    assert "GET" in error["message"]
    assert response.headers["allow"] == "POST"


async def test_malformed_json_is_a_400(portico: httpx.AsyncClient, owner: IssuedKey) -> None:
    response = await portico.post(
        "/v1/chat/completions",
        content=b'{"model": "house-echo", "messages": [',
        headers={**bearer(owner), "Content-Type": "application/json"},
    )

    assert response.status_code == 400
    error = error_of(response)
    assert (error["type"], error["code"]) == ("invalid_request_error", "invalid_json")
    assert "could not parse the JSON body" in error["message"]


async def test_a_json_body_that_is_not_an_object_is_a_400(portico: httpx.AsyncClient, owner: IssuedKey) -> None:
    response = await portico.post("/v1/chat/completions", json=[CHAT], headers=bearer(owner))

    assert response.status_code == 400
    assert error_of(response)["code"] == "invalid_json"


@pytest.mark.parametrize("content_type", ["text/plain", "application/x-www-form-urlencoded", None])
async def test_a_body_that_is_not_declared_json_is_a_400(
    portico: httpx.AsyncClient, owner: IssuedKey, content_type: str | None
) -> None:
    headers = bearer(owner) | ({"Content-Type": content_type} if content_type else {})

    response = await portico.post("/v1/chat/completions", content=orjson.dumps(CHAT), headers=headers)

    assert response.status_code == 400
    error = error_of(response)
    assert error["code"] == "invalid_content_type"
    assert "application/json" in error["message"]


async def test_a_json_content_type_with_parameters_is_accepted(portico: httpx.AsyncClient, owner: IssuedKey) -> None:
    headers = bearer(owner) | {"Content-Type": "Application/JSON; charset=utf-8"}

    response = await portico.post("/v1/chat/completions", content=orjson.dumps(CHAT), headers=headers)

    assert response.status_code == 200


async def test_a_body_over_the_limit_is_a_413(
    portico: httpx.AsyncClient, owner: IssuedKey, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The limit is read once when the app is built; override the built instance's.
    monkeypatch.setattr(application.fast, "max_body", 1024)
    body = {**CHAT, "padding": "x" * 2048}

    response = await portico.post("/v1/chat/completions", json=body, headers=bearer(owner))

    assert response.status_code == 413
    error = error_of(response)
    assert (error["type"], error["code"]) == ("invalid_request_error", "request_too_large")
    assert "1024" in error["message"]
    assert REQUEST_ID.fullmatch(response.headers["x-request-id"])


async def test_a_body_at_the_limit_is_served(
    portico: httpx.AsyncClient, owner: IssuedKey, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(application.fast, "max_body", 1024)
    body = orjson.dumps({**CHAT, "padding": ""})
    body = orjson.dumps({**CHAT, "padding": "x" * (1024 - len(body))})
    assert len(body) == 1024

    response = await portico.post(
        "/v1/chat/completions", content=body, headers={**bearer(owner), "Content-Type": "application/json"}
    )

    assert response.status_code == 200


async def test_a_large_body_within_portico_s_limit_is_served(portico: httpx.AsyncClient, owner: IssuedKey) -> None:
    # 3 MB is under PORTICO_MAX_BODY_BYTES (20 MB) but over Django's DATA_UPLOAD_MAX_MEMORY_SIZE (2.5 MB):
    # a base64 image makes bodies like this every day. Portico's limit is the one that applies.
    body = {**CHAT, "padding": "x" * 3_000_000}

    response = await portico.post("/v1/chat/completions", json=body, headers=bearer(owner))

    assert response.status_code == 200, response.text


# --- request ids ------------------------------------------------------------------


async def test_each_answer_gets_a_new_request_id(portico: httpx.AsyncClient, owner: IssuedKey) -> None:
    first = await portico.get("/v1/models", headers=bearer(owner))
    second = await portico.get("/v1/models", headers=bearer(owner))

    assert REQUEST_ID.fullmatch(first.headers["x-request-id"])
    assert REQUEST_ID.fullmatch(second.headers["x-request-id"])
    assert first.headers["x-request-id"] != second.headers["x-request-id"]


async def test_the_clients_request_id_is_echoed(portico: httpx.AsyncClient, owner: IssuedKey) -> None:
    response = await portico.get("/v1/models", headers={**bearer(owner), "X-Request-Id": "client-trace-42"})

    assert response.headers["x-request-id"] == "client-trace-42"


@pytest.mark.parametrize(
    ("method", "path", "with_key"),
    [("GET", "/v1/models", False), ("GET", "/v1/nothing-here", True), ("GET", "/v1/chat/completions", True)],
    ids=["401", "404", "405"],
)
async def test_error_answers_carry_the_request_id_too(
    portico: httpx.AsyncClient, owner: IssuedKey, method: str, path: str, with_key: bool
) -> None:
    headers = {"X-Request-Id": "client-trace-43"} | (bearer(owner) if with_key else {})

    response = await portico.request(method, path, headers=headers)

    assert response.status_code >= 400
    assert response.headers["x-request-id"] == "client-trace-43"


async def test_an_oversized_request_id_is_replaced(portico: httpx.AsyncClient, owner: IssuedKey) -> None:
    response = await portico.get("/v1/models", headers={**bearer(owner), "X-Request-Id": "x" * 201})

    assert REQUEST_ID.fullmatch(response.headers["x-request-id"])


# --- chat -------------------------------------------------------------------------


@pytest.mark.parametrize("persona", PERSONAS)
async def test_a_chat_completion_is_relayed_under_the_public_model(
    portico: httpx.AsyncClient, personas: dict[str, IssuedKey], persona: str
) -> None:
    response = await portico.post("/v1/chat/completions", json=CHAT, headers=bearer(personas[persona]))

    assert response.status_code == 200
    body = response.json()
    assert body["model"] == "house-echo"
    assert body["choices"][0]["message"]["content"] == "hello fast path"
    assert body["usage"] == {"prompt_tokens": 3, "completion_tokens": 3, "total_tokens": 6}


async def test_a_streamed_chat_completion_arrives_as_server_sent_events(
    portico: httpx.AsyncClient, owner: IssuedKey
) -> None:
    body = {**CHAT, "stream": True, "stream_options": {"include_usage": True}}

    response = await portico.post("/v1/chat/completions", json=body, headers=bearer(owner))

    assert response.status_code == 200
    assert response.headers["content-type"] == "text/event-stream; charset=utf-8"
    assert response.headers["cache-control"] == "no-cache"
    assert REQUEST_ID.fullmatch(response.headers["x-request-id"])
    splitter = EventSplitter()
    events = splitter.feed(response.content)
    assert splitter.pending == b""
    assert events[-1] == b"[DONE]"
    chunks = [orjson.loads(event) for event in events[:-1]]
    assert {chunk["model"] for chunk in chunks} == {"house-echo"}
    assert "".join(c["choices"][0]["delta"].get("content", "") for c in chunks if c["choices"]) == "hello fast path"
    assert chunks[-1]["usage"]["total_tokens"] == 6


async def test_a_validation_error_names_the_param(portico: httpx.AsyncClient, owner: IssuedKey) -> None:
    response = await portico.post("/v1/chat/completions", json={**CHAT, "temperature": 5}, headers=bearer(owner))

    assert response.status_code == 400
    error = error_of(response)
    assert (error["param"], error["code"]) == ("temperature", "decimal_above_max_value")


# --- the split between the fast path and Django ------------------------------------


async def test_a_v1_request_sends_no_django_request_signals(
    portico: httpx.AsyncClient, owner: IssuedKey, started_signals: list[object]
) -> None:
    response = await portico.get("/v1/models", headers=bearer(owner))

    assert response.status_code == 200
    assert started_signals == []


async def test_a_path_outside_v1_goes_through_djangos_own_handler(
    portico: httpx.AsyncClient, started_signals: list[object]
) -> None:
    response = await portico.get("/admin/login/")

    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/html")
    assert "x-request-id" not in response.headers  # the fast path was not involved
    assert len(started_signals) == 1  # Django's handler ran, with its usual bookkeeping


async def test_the_api_docs_under_v1_go_through_django(
    portico: httpx.AsyncClient, started_signals: list[object]
) -> None:
    # A sync view under /v1/ is handed to Django rather than served without its bookkeeping.
    response = await portico.get("/v1/openapi.json")

    assert response.status_code == 200
    assert "/v1/chat/completions" in response.json()["paths"]
    assert len(started_signals) == 1


async def test_with_the_fast_path_off_v1_is_served_by_djangos_handler(
    portico: httpx.AsyncClient, owner: IssuedKey, started_signals: list[object], settings: Settings
) -> None:
    # PORTICO_FAST_PATH=false exists to measure the fast path against Django's handler: both must answer alike.
    settings.PORTICO_FAST_PATH = False
    app = Portico()
    try:
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://127.0.0.1") as client:
            response = await client.get("/v1/models", headers=bearer(owner))
    finally:
        await app.shutdown()

    assert response.status_code == 200
    assert "house-echo" in [model["id"] for model in response.json()["data"]]
    assert len(started_signals) == 1


async def test_with_the_fast_path_off_an_oversized_body_is_still_a_413(
    portico: httpx.AsyncClient, owner: IssuedKey, settings: Settings
) -> None:
    settings.PORTICO_FAST_PATH = False
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 1024  # Django's own cap, which its handler enforces
    app = Portico()
    body = orjson.dumps({**CHAT, "messages": [{"role": "user", "content": "x" * 2048}]})
    try:
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://127.0.0.1") as client:
            response = await client.post(
                "/v1/chat/completions", content=body, headers={**bearer(owner), "Content-Type": "application/json"}
            )
    finally:
        await app.shutdown()

    assert response.status_code == 413
    assert response.json()["error"]["code"] == "request_too_large"


# --- clients that leave -----------------------------------------------------------


def http_scope(method: str, path: str, headers: list[tuple[bytes, bytes]]) -> dict[str, Any]:
    return {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": method,
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "root_path": "",
        "query_string": b"",
        "headers": [(b"host", b"127.0.0.1"), *headers],
        "client": ("127.0.0.1", 50000),
        "server": ("127.0.0.1", 8000),
    }


async def test_a_client_that_leaves_before_its_body_arrives_gets_nothing(
    portico: httpx.AsyncClient, owner: IssuedKey
) -> None:
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return {"type": "http.disconnect"}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    headers = [(b"authorization", f"Bearer {owner.plaintext}".encode()), (b"content-type", b"application/json")]
    await application(http_scope("POST", "/v1/chat/completions", headers), receive, send)

    assert sent == []


async def test_a_client_that_leaves_mid_stream_stops_the_relay_and_closes_the_upstream(
    portico: httpx.AsyncClient, owner: IssuedKey, monkeypatch: pytest.MonkeyPatch
) -> None:
    upstream_closed = asyncio.Event()
    close = httpx.Response.aclose

    async def spy_close(self: httpx.Response) -> None:
        upstream_closed.set()
        await close(self)

    monkeypatch.setattr(httpx.Response, "aclose", spy_close)
    started, left = asyncio.Event(), asyncio.Event()
    requests = iter([{"type": "http.request", "body": orjson.dumps({**CHAT, "stream": True}), "more_body": False}])

    async def receive() -> dict[str, Any]:
        message = next(requests, None)
        if message is not None:
            return message
        await started.wait()
        return {"type": "http.disconnect"}

    async def send(message: dict[str, Any]) -> None:
        if message["type"] == "http.response.start":
            started.set()
            return
        try:
            await asyncio.Event().wait()  # a client that stopped reading, then left
        except asyncio.CancelledError:
            left.set()
            raise

    headers = [(b"authorization", f"Bearer {owner.plaintext}".encode()), (b"content-type", b"application/json")]
    async with asyncio.timeout(5):
        await application(http_scope("POST", "/v1/chat/completions", headers), receive, send)
        assert left.is_set()  # the relay was cancelled, not left writing to nobody
        await upstream_closed.wait()


async def test_a_wrong_method_on_the_upload_endpoint_is_openais_405(
    portico: httpx.AsyncClient, owner: IssuedKey
) -> None:
    response = await portico.get("/v1/audio/transcriptions", headers=bearer(owner))

    assert response.status_code == 405
    assert response.json()["error"]["code"] == "method_not_allowed"
    assert "POST" in response.headers["allow"]


def test_request_ids_are_128_random_bits_each_across_refills_of_the_pool() -> None:
    from gateway.fastpath import new_request_id

    ids = [new_request_id() for _ in range(2_000)]  # about eight refills of 256 ids

    assert len(set(ids)) == len(ids)
    assert all(re.fullmatch(r"req_[0-9a-f]{32}", request_id) for request_id in ids)
