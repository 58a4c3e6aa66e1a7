"""The outbound HTTP module: pooled upstreams per provider version, requests as built, and the connection probe.

Fake upstreams here are `httpx.MockTransport`s, handed to `HttpxUpstream` directly
or out through the adapter's own `transport()` hook, the same one the mock provider uses.
"""

from __future__ import annotations

import asyncio
import dataclasses
import socket
from collections.abc import AsyncIterator, Callable

import httpx
import orjson
import pytest
from pytest_django import Settings

from providers.adapters.base import UpstreamRequest
from providers.adapters.mock import MOCK_BASE_URL
from providers.adapters.openai import OpenAIAdapter
from providers.http import HttpxUpstream, Upstreams, open_upstream, probe_models
from providers.http1 import Http1Upstream
from providers.tests.factories import UPSTREAM_CREDENTIAL, make_provider_info
from providers.transport import AiohttpUpstream

CREDENTIAL = UPSTREAM_CREDENTIAL

OPENAI = make_provider_info()
MOCK = dataclasses.replace(OPENAI, id=2, name="mock", kind="mock", base_url=MOCK_BASE_URL, credential="")

Handler = Callable[[httpx.Request], httpx.Response]


class RecordingTransport(httpx.MockTransport):
    def __init__(self, handler: Handler) -> None:
        super().__init__(handler)
        self.requests: list[httpx.Request] = []
        self.closed = False

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        return await super().handle_async_request(request)

    async def aclose(self) -> None:
        self.closed = True


@pytest.fixture
def fake_openai(monkeypatch: pytest.MonkeyPatch) -> Callable[[Handler], list[RecordingTransport]]:
    """Make every openai-kind upstream answer with `handler`; returns the transports made so far."""

    def install(handler: Handler) -> list[RecordingTransport]:
        made: list[RecordingTransport] = []

        def transport(self: OpenAIAdapter) -> RecordingTransport:
            made.append(RecordingTransport(handler))
            return made[-1]

        monkeypatch.setattr(OpenAIAdapter, "transport", transport)
        return made

    return install


@pytest.fixture
async def upstreams() -> AsyncIterator[Upstreams]:
    pool = Upstreams()
    try:
        yield pool
    finally:
        await pool.aclose()


def model_list(request: httpx.Request) -> httpx.Response:
    return httpx.Response(200, json={"object": "list", "data": [{"id": "gpt-4o"}, {"id": "gpt-4o-mini"}]})


def refused_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


async def test_it_hands_out_the_same_upstream_for_the_same_provider_version(upstreams: Upstreams) -> None:
    first = upstreams.get(OPENAI)

    assert upstreams.get(OPENAI) is first
    assert upstreams.get(dataclasses.replace(OPENAI, name="renamed but same version")) is first


async def test_each_provider_gets_its_own_upstream(upstreams: Upstreams) -> None:
    assert upstreams.get(OPENAI) is not upstreams.get(MOCK)


async def test_a_new_provider_version_gets_a_new_upstream(
    upstreams: Upstreams, fake_openai: Callable[[Handler], list[RecordingTransport]]
) -> None:
    fake_openai(model_list)
    first = upstreams.get(OPENAI)
    changed = dataclasses.replace(OPENAI, version=2.0, read_timeout=9.0)

    second = upstreams.get(changed)

    assert second is not first
    assert isinstance(second, HttpxUpstream)
    assert second.timeouts["read"] == 9.0
    assert upstreams.get(changed) is second


async def test_a_replaced_upstream_stays_open_for_streams_still_using_it(
    upstreams: Upstreams, fake_openai: Callable[[Handler], list[RecordingTransport]]
) -> None:
    made = fake_openai(model_list)
    upstreams.get(OPENAI)

    upstreams.get(dataclasses.replace(OPENAI, version=2.0))

    assert [transport.closed for transport in made] == [False, False]


async def test_a_provider_no_longer_served_has_its_upstream_closed_after_its_streams_could_end(
    upstreams: Upstreams, fake_openai: Callable[[Handler], list[RecordingTransport]], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("providers.http._RETIRE_MARGIN", 0.0)
    made = fake_openai(model_list)
    kept = upstreams.get(OPENAI)
    upstreams.get(dataclasses.replace(OPENAI, id=3, total_timeout=0.05))

    upstreams.retain({OPENAI.id})
    await asyncio.sleep(0.2)

    assert [transport.closed for transport in made] == [False, True]
    assert upstreams.get(OPENAI) is kept


async def test_closing_closes_every_upstream(fake_openai: Callable[[Handler], list[RecordingTransport]]) -> None:
    made = fake_openai(model_list)
    pool = Upstreams()
    pool.get(OPENAI)
    pool.get(dataclasses.replace(OPENAI, id=3))

    await pool.aclose()

    assert [transport.closed for transport in made] == [True, True]


async def test_closing_also_closes_upstreams_retired_earlier(
    fake_openai: Callable[[Handler], list[RecordingTransport]],
) -> None:
    # At shutdown a replaced upstream's pool must be closed too, not abandoned with its sockets.
    made = fake_openai(model_list)
    pool = Upstreams()
    pool.get(OPENAI)
    pool.get(dataclasses.replace(OPENAI, version=2.0))

    await pool.aclose()

    assert [transport.closed for transport in made] == [True, True]


async def test_the_upstream_uses_the_providers_timeouts() -> None:
    transport = RecordingTransport(model_list)
    upstream = HttpxUpstream(OPENAI, transport)

    await (await upstream.send(OPENAI.adapter.models_request(OPENAI))).aread()

    assert upstream.timeouts == {"connect": 1.0, "read": 2.0, "write": 2.0, "pool": 1.0}
    assert transport.requests[0].extensions["timeout"] == upstream.timeouts


async def test_it_sends_the_request_as_the_adapter_built_it() -> None:
    transport = RecordingTransport(lambda request: httpx.Response(200, json={"ok": True}, headers={"x-answer": "2"}))
    upstream = HttpxUpstream(OPENAI, transport)
    outbound = UpstreamRequest("POST", f"{OPENAI.base_url}/chat/completions", {"x-test": "1"}, b'{"model":"m"}')

    response = await upstream.send(outbound)

    (sent,) = transport.requests
    assert (sent.method, str(sent.url), sent.headers["x-test"]) == ("POST", outbound.url, "1")
    assert sent.content == b'{"model":"m"}'
    assert (response.status_code, response.headers["x-answer"]) == (200, "2")
    assert orjson.loads(await response.aread()) == {"ok": True}


async def test_an_answer_that_does_not_start_within_the_total_timeout_is_a_read_timeout() -> None:
    async def slow_headers(request: httpx.Request) -> httpx.Response:
        await asyncio.sleep(1.0)  # an upstream slower than the 0.3 s total, not a wait for a window
        return httpx.Response(200)

    upstream = HttpxUpstream(dataclasses.replace(OPENAI, total_timeout=0.3), httpx.MockTransport(slow_headers))

    with pytest.raises(httpx.ReadTimeout):
        await upstream.send(OPENAI.adapter.models_request(OPENAI))


async def test_a_body_still_arriving_after_the_total_timeout_is_a_read_timeout() -> None:
    async def trickle() -> AsyncIterator[bytes]:
        # Each gap is far inside the read timeout; only the total (0.3 s) can stop the 1 s body.
        for _ in range(40):
            await asyncio.sleep(0.025)
            yield b": keep-alive\n\n"

    upstream = HttpxUpstream(
        dataclasses.replace(OPENAI, total_timeout=0.3),
        httpx.MockTransport(lambda request: httpx.Response(200, content=trickle())),
    )
    response = await upstream.send(OPENAI.adapter.models_request(OPENAI))

    try:
        with pytest.raises(httpx.ReadTimeout):
            async for _ in response.aiter_raw():
                pass
    finally:
        await response.aclose()


@pytest.mark.parametrize(
    ("kind", "setting", "expected", "transport"),
    [
        ("openai", "http1", Http1Upstream, None),
        ("openai", "aiohttp", AiohttpUpstream, None),
        ("openai", "httpx", HttpxUpstream, httpx.AsyncHTTPTransport),
        ("mock", "aiohttp", HttpxUpstream, httpx.MockTransport),
        ("mock", "httpx", HttpxUpstream, httpx.MockTransport),
        ("mock", "http1", HttpxUpstream, httpx.MockTransport),
    ],
)
async def test_it_picks_the_upstream_by_kind_and_setting(
    settings: Settings, kind: str, setting: str, expected: type, transport: type | None
) -> None:
    settings.PORTICO_HTTP_TRANSPORT = setting
    upstream = open_upstream(dataclasses.replace(OPENAI, kind=kind))

    try:
        assert type(upstream) is expected
        assert type(getattr(upstream, "transport", None)) is (transport or type(None))
    finally:
        await upstream.aclose()


async def test_probing_the_mock_provider_lists_its_models() -> None:
    result = await probe_models(MOCK)

    assert result.ok
    assert result.model_ids == ("mock-echo",)
    assert result.summary == "OK: 1 model(s)"


@pytest.mark.parametrize("transport", ["http1", "aiohttp", "httpx"])
async def test_probing_a_refused_port_is_not_ok(settings: Settings, transport: str) -> None:
    settings.PORTICO_HTTP_TRANSPORT = transport
    port = refused_port()

    result = await probe_models(dataclasses.replace(OPENAI, base_url=f"http://127.0.0.1:{port}/v1"))

    assert not result.ok
    assert result.summary == f"could not reach http://127.0.0.1:{port}/v1/models: ConnectError"
    assert result.model_ids == ()


async def test_probing_sends_the_credential_and_extra_headers_to_the_models_url(
    fake_openai: Callable[[Handler], list[RecordingTransport]],
) -> None:
    made = fake_openai(model_list)

    result = await probe_models(OPENAI)

    assert (result.ok, result.model_ids) == (True, ("gpt-4o", "gpt-4o-mini"))
    (sent,) = made[0].requests
    assert (sent.method, str(sent.url)) == ("GET", "http://upstream.test/v1/models")
    assert sent.headers["authorization"] == f"Bearer {CREDENTIAL}"
    assert sent.headers["openai-organization"] == "org-portico"
    assert made[0].closed


async def test_probing_with_a_refused_credential_says_so_without_quoting_it(
    fake_openai: Callable[[Handler], list[RecordingTransport]],
) -> None:
    fake_openai(
        lambda request: httpx.Response(
            401, json={"error": {"message": f"Incorrect API key provided: {CREDENTIAL}", "code": "invalid_api_key"}}
        )
    )

    result = await probe_models(OPENAI)

    assert not result.ok
    assert result.summary.startswith("HTTP 401: ")
    assert CREDENTIAL not in result.summary


async def test_probing_an_answer_that_is_not_a_model_list_is_not_ok(
    fake_openai: Callable[[Handler], list[RecordingTransport]],
) -> None:
    fake_openai(lambda request: httpx.Response(200, text="<html>welcome to nginx</html>"))

    result = await probe_models(OPENAI)

    assert not result.ok
    assert "not a model list" in result.summary


async def test_probing_an_upstream_that_times_out_says_which_limits_applied(
    fake_openai: Callable[[Handler], list[RecordingTransport]],
) -> None:
    def hang(request: httpx.Request) -> httpx.Response:
        raise httpx.ReadTimeout("timed out", request=request)

    fake_openai(hang)

    result = await probe_models(OPENAI)

    assert not result.ok
    assert result.summary == "timed out after 1s connect / 2s read"
