"""Pieces of the relay that need no server: how an upstream's error answer reaches the client."""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator, Mapping

import orjson

from gateway.relay import _failure
from providers.facade import RouteInfo
from providers.tests.factories import make_provider_info


class ErrorAnswer:
    def __init__(self, status: int, body: dict[str, object]) -> None:
        self.status_code = status
        self.headers: Mapping[str, str] = {}
        self._body = orjson.dumps(body)
        self.closed = False

    async def aread(self) -> bytes:
        return self._body

    async def aiter_raw(self) -> AsyncIterator[bytes]:
        yield self._body

    async def aclose(self) -> None:
        self.closed = True


ROUTE = RouteInfo(
    id=1,
    public_id="house-llama",
    provider=dataclasses.replace(make_provider_info(), kind="ollama"),
    upstream_model="llama3.2:3b",
    owned_by="portico",
    created=0,
    context_window=None,
    max_output_tokens=None,
    capabilities=frozenset({"chat"}),
)


async def test_an_upstream_error_names_the_public_model_not_the_providers() -> None:
    answer = ErrorAnswer(404, {"error": 'model "llama3.2:3b" not found, try pulling it first'})

    error = await _failure(ROUTE, answer)

    assert error.message == 'model "house-llama" not found, try pulling it first'
    assert (error.status, error.code) == (404, "model_not_found")
    assert answer.closed
