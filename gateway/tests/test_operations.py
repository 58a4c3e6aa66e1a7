"""Which Ninja operations the fast path runs directly, and that running one answers as Ninja would.

The whole OpenAI surface is served through `operations.run` in every other
test of the fast path and the integration suite; these pin what it is chosen
for and its two error paths, authentication and a failing view.
"""

from __future__ import annotations

import io
from typing import Any

import orjson
import pytest
from django.core.handlers.asgi import ASGIRequest
from django.urls import get_resolver

from gateway import operations

SCOPE = {"type": "http", "http_version": "1.1", "scheme": "http", "server": ("127.0.0.1", 8000), "query_string": b""}


def operation_for(path: str, method: str) -> Any:
    return operations.direct(get_resolver().resolve(path).func, method)


def request(path: str, headers: list[tuple[bytes, bytes]]) -> ASGIRequest:
    scope = {**SCOPE, "method": "POST", "path": path, "headers": headers}
    return ASGIRequest(scope, io.BytesIO(b"{}"))


def test_views_that_take_the_request_alone_are_run_directly() -> None:
    for path in ("/v1/chat/completions", "/v1/embeddings", "/v1/completions", "/v1/moderations"):
        operation = operation_for(path, "POST")
        assert operation is not None, path
        assert "POST" in operation.methods


def test_a_method_the_url_does_not_serve_is_left_to_ninja() -> None:
    # Ninja answers it with its 405, which the fast path turns into OpenAI's error shape.
    assert operation_for("/v1/chat/completions", "GET") is None


def test_a_view_with_path_parameters_is_left_to_ninja() -> None:
    assert operation_for("/v1/models/some-model", "GET") is None


def test_a_view_that_is_not_ninjas_is_not_run_directly() -> None:
    async def plain_view(request: Any) -> None:
        return None

    assert operations.direct(plain_view, "POST") is None


@pytest.mark.django_db
async def test_a_request_without_a_key_gets_openais_401_before_the_view_runs() -> None:
    operation = operation_for("/v1/chat/completions", "POST")
    response = await operations.run(operation, request("/v1/chat/completions", []))
    assert response.status_code == 401
    error = orjson.loads(response.content)["error"]
    assert "didn't provide an API key" in error["message"]


@pytest.mark.django_db
async def test_an_exception_in_the_view_becomes_the_apis_answer(monkeypatch: pytest.MonkeyPatch) -> None:
    operation = operation_for("/v1/chat/completions", "POST")

    async def granted(request: Any) -> object:
        return object()

    async def failing(request: Any) -> None:
        raise RuntimeError("a bug in a view")

    monkeypatch.setattr(operation, "auth_callbacks", [granted])
    monkeypatch.setattr(operation, "view_func", failing)
    response = await operations.run(operation, request("/v1/chat/completions", []))
    assert response.status_code == 500
    body = orjson.loads(response.content)
    assert body["error"]["type"] == "server_error"
    assert "a bug in a view" not in response.content.decode()  # no internals reach the client
