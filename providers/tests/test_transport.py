"""Both upstream clients (providers/http1.py, providers/transport.py) against a real aiohttp server on 127.0.0.1,
run in the test's own event loop.

The server holds its answers on events the test controls, so "the upstream has
not sent the rest yet" and "the upstream saw the client leave" are facts the
test observes, not timings it hopes for.
"""

from __future__ import annotations

import asyncio
import dataclasses
import socket
from collections.abc import AsyncIterator
from contextlib import aclosing
from typing import Any

import httpx
import orjson
import pytest
from aiohttp import web

from providers.adapters.base import UpstreamRequest
from providers.http import Upstream, UpstreamResponse
from providers.http1 import Http1Upstream
from providers.tests.factories import make_provider_info
from providers.transport import AiohttpUpstream

# Long enough never to fire on a healthy loopback answer, short enough to keep the suite quick.
SHORT_READ = 0.2
SHORT_TOTAL = 0.5
TRICKLE_EVERY = 0.05  # well inside SHORT_READ, so only the total timeout can end a trickle

PROVIDER = make_provider_info(
    name="loopback",
    base_url="http://127.0.0.1/v1",
    credential="",
    connect_timeout=5.0,
    read_timeout=SHORT_READ,
    total_timeout=5.0,
    extra_headers={},
)


class FakeUpstream:
    """Handlers whose progress the test releases step by step."""

    def __init__(self) -> None:
        self.url = ""
        self.port = 0
        self.proceed = asyncio.Event()  # lets /stream send its second part
        self.release = asyncio.Event()  # set at teardown: every held handler may finish
        self.gone = asyncio.Event()  # a client left while /stream was held
        self.peers: list[int] = []  # the client port of each request, to see connection reuse

    def _seen(self, request: web.Request) -> None:
        self.peers.append(request.transport.get_extra_info("peername")[1])  # type: ignore[union-attr]

    async def echo(self, request: web.Request) -> web.Response:
        self._seen(request)
        payload = {
            "method": request.method,
            "path": request.path_qs,
            "body": (await request.read()).decode(),
            "headers": {name.lower(): value for name, value in request.headers.items()},
        }
        return web.json_response(payload)

    async def limited(self, request: web.Request) -> web.Response:
        body = {"error": {"message": "Slow down.", "type": "requests", "param": None, "code": "rate_limit_exceeded"}}
        return web.json_response(body, status=429, headers={"Retry-After": "7"})

    async def set_cookie(self, request: web.Request) -> web.Response:
        response = web.json_response({"ok": True})
        response.set_cookie("session", "tenant-a", path="/")
        return response

    async def stream(self, request: web.Request) -> web.StreamResponse:
        self._seen(request)
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await response.prepare(request)
        await response.write(b"data: first\n\n")
        try:
            await self.proceed.wait()
        except asyncio.CancelledError:
            self.gone.set()
            raise
        await response.write(b"data: second\n\n")
        await response.write_eof()
        return response

    async def trickle(self, request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await response.prepare(request)
        while not self.release.is_set():
            await response.write(b": keep-alive\n\n")
            await asyncio.sleep(TRICKLE_EVERY)
        return response

    async def hang_before_headers(self, request: web.Request) -> web.Response:
        await self.release.wait()
        return web.Response(text="too late")

    async def hang_mid_body(self, request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse()
        await response.prepare(request)
        await response.write(b"partial")
        await self.release.wait()
        return response

    async def drop_mid_body(self, request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(headers={"Content-Length": "100"})
        await response.prepare(request)
        await response.write(b"ten bytes.")
        request.transport.close()  # type: ignore[union-attr]
        await self.release.wait()
        return response

    async def drop_mid_chunk(self, request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse()
        response.enable_chunked_encoding()
        await response.prepare(request)
        await response.write(b"data: first\n\n")
        request.transport.close()  # type: ignore[union-attr]
        await self.release.wait()
        return response


@pytest.fixture
async def server() -> AsyncIterator[FakeUpstream]:
    fake = FakeUpstream()
    app = web.Application()
    app.router.add_route("*", "/echo", fake.echo)
    app.router.add_get("/limited", fake.limited)
    app.router.add_get("/set-cookie", fake.set_cookie)
    app.router.add_get("/stream", fake.stream)
    app.router.add_get("/trickle", fake.trickle)
    app.router.add_get("/hang-before-headers", fake.hang_before_headers)
    app.router.add_get("/hang-mid-body", fake.hang_mid_body)
    app.router.add_get("/drop-mid-body", fake.drop_mid_body)
    app.router.add_get("/drop-mid-chunk", fake.drop_mid_chunk)
    # Cancelling a handler when its client disconnects is how the server notices the client left.
    runner = web.AppRunner(app, handler_cancellation=True, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    fake.port = runner.addresses[0][1]
    fake.url = f"http://127.0.0.1:{fake.port}"
    try:
        yield fake
    finally:
        fake.release.set()
        await runner.cleanup()


CLIENTS: dict[str, Any] = {"http1": Http1Upstream, "aiohttp": AiohttpUpstream}


@pytest.fixture(params=sorted(CLIENTS))
def client(request: pytest.FixtureRequest) -> str:
    return str(request.param)


def loopback(client: str, **changes: Any) -> Upstream:
    upstream: Upstream = CLIENTS[client](dataclasses.replace(PROVIDER, **changes), max_connections=4)
    return upstream


@pytest.fixture
async def upstream(client: str) -> AsyncIterator[Upstream]:
    async with aclosing(loopback(client)) as opened:
        yield opened


def get(url: str) -> UpstreamRequest:
    return UpstreamRequest("GET", url, {})


async def read(response: UpstreamResponse) -> bytes:
    try:
        return await response.aread()
    finally:
        await response.aclose()


def refused_port() -> int:
    """A loopback port nobody listens on: bound once to pick it, then released."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


async def test_it_sends_the_request_and_returns_the_answer(server: FakeUpstream, upstream: Upstream) -> None:
    headers = {"Content-Type": "application/json", "X-Portico-Test": "yes"}

    response = await upstream.send(UpstreamRequest("POST", f"{server.url}/echo?x=1", headers, b'{"model":"m"}'))

    assert response.status_code == 200
    assert response.headers["content-type"].startswith("application/json")
    echoed = orjson.loads(await read(response))
    assert (echoed["method"], echoed["path"], echoed["body"]) == ("POST", "/echo?x=1", '{"model":"m"}')
    assert echoed["headers"]["x-portico-test"] == "yes"
    assert echoed["headers"]["content-length"] == "13"


async def test_it_passes_an_error_answer_and_its_headers_through(server: FakeUpstream, upstream: Upstream) -> None:
    response = await upstream.send(get(f"{server.url}/limited"))

    assert response.status_code == 429
    assert response.headers["Retry-After"] == "7"
    assert orjson.loads(await read(response))["error"]["code"] == "rate_limit_exceeded"


async def test_it_reuses_a_connection_once_an_answer_is_read(server: FakeUpstream, upstream: Upstream) -> None:
    await read(await upstream.send(get(f"{server.url}/echo")))
    await read(await upstream.send(get(f"{server.url}/echo")))

    assert len(server.peers) == 2
    assert server.peers[0] == server.peers[1]


async def test_it_sends_no_cookie_the_upstream_set_earlier(server: FakeUpstream, upstream: Upstream) -> None:
    # By name, not IP: aiohttp's default jar ignores cookies from IP hosts, which would hide a shared jar.
    base = f"http://localhost:{server.port}"
    first = await upstream.send(get(f"{base}/set-cookie"))
    await read(first)
    assert "session=tenant-a" in first.headers["Set-Cookie"]

    echoed = orjson.loads(await read(await upstream.send(get(f"{base}/echo"))))

    assert "cookie" not in echoed["headers"]


async def test_it_hands_out_a_stream_as_it_arrives(server: FakeUpstream, upstream: Upstream) -> None:
    response = await upstream.send(get(f"{server.url}/stream"))
    try:
        chunks = response.aiter_raw()
        first = await anext(chunks)
        # The server is still holding its second part: what we got was not buffered up to the end.
        assert first == b"data: first\n\n"
        assert not server.proceed.is_set()
        server.proceed.set()
        rest = b"".join([chunk async for chunk in chunks])
    finally:
        await response.aclose()

    assert rest == b"data: second\n\n"


async def test_closing_a_half_read_answer_closes_its_connection(server: FakeUpstream, upstream: Upstream) -> None:
    response = await upstream.send(get(f"{server.url}/stream"))
    chunks = response.aiter_raw()
    assert await anext(chunks) == b"data: first\n\n"

    await chunks.aclose()  # type: ignore[attr-defined]
    await response.aclose()

    async with asyncio.timeout(5):
        await server.gone.wait()  # the server saw the client leave mid-answer
    await read(await upstream.send(get(f"{server.url}/echo")))
    assert server.peers[-1] != server.peers[0]  # and the next request needed a new connection


async def test_a_refused_connection_is_a_connect_error(upstream: Upstream) -> None:
    with pytest.raises(httpx.ConnectError):
        await upstream.send(get(f"http://127.0.0.1:{refused_port()}/v1/models"))


async def test_an_upstream_that_never_answers_is_a_read_timeout(server: FakeUpstream, upstream: Upstream) -> None:
    with pytest.raises(httpx.ReadTimeout):
        await upstream.send(get(f"{server.url}/hang-before-headers"))


async def test_an_upstream_that_stalls_mid_body_is_a_read_timeout(server: FakeUpstream, upstream: Upstream) -> None:
    response = await upstream.send(get(f"{server.url}/hang-mid-body"))
    try:
        assert response.status_code == 200
        chunks = response.aiter_raw()
        assert await anext(chunks) == b"partial"
        with pytest.raises(httpx.ReadTimeout):
            await anext(chunks)
    finally:
        await response.aclose()


async def test_an_upstream_that_trickles_past_the_total_timeout_is_a_read_timeout(
    server: FakeUpstream, client: str
) -> None:
    loop = asyncio.get_running_loop()
    started = loop.time()
    async with aclosing(loopback(client, total_timeout=SHORT_TOTAL)) as upstream:
        response = await upstream.send(get(f"{server.url}/trickle"))
        try:
            # The guard only turns a missing total timeout into a failure instead of a hang.
            async with asyncio.timeout(5):
                with pytest.raises(httpx.ReadTimeout):
                    async for _ in response.aiter_raw():
                        pass
        finally:
            await response.aclose()

    # Bytes kept arriving inside the read timeout: only the total can have ended it.
    assert loop.time() - started >= SHORT_TOTAL - 0.05


@pytest.mark.parametrize("path", ["/drop-mid-body", "/drop-mid-chunk"], ids=["content-length", "chunked"])
async def test_an_upstream_that_drops_mid_body_is_a_transport_error(
    server: FakeUpstream, upstream: Upstream, path: str
) -> None:
    response = await upstream.send(get(f"{server.url}{path}"))
    try:
        assert response.status_code == 200
        with pytest.raises(httpx.TransportError) as caught:
            async for _ in response.aiter_raw():
                pass
    finally:
        await response.aclose()

    assert isinstance(caught.value, httpx.RemoteProtocolError | httpx.ReadError)
    assert not isinstance(caught.value, httpx.TimeoutException)  # a drop must be a 502, not a 504
