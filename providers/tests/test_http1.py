"""Portico's HTTP/1.1 client where it differs from aiohttp's: its pool, framing and TLS.

The behaviour both clients share (timeouts, drops, streaming, reuse) is in
test_transport.py. Here the upstreams are raw asyncio servers on 127.0.0.1 that
write exactly the bytes a case needs, or an aiohttp server over TLS.
"""

from __future__ import annotations

import asyncio
import dataclasses
import datetime
import ipaddress
import ssl
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import aclosing
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
from aiohttp import web
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from providers import http1
from providers.adapters.base import UpstreamRequest
from providers.http1 import Http1Upstream
from providers.tests.test_transport import PROVIDER

Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


@dataclasses.dataclass
class RawServer:
    url: str
    connections: int = 0
    server: asyncio.Server | None = None  # a test may stop it accepting


async def read_request(reader: asyncio.StreamReader) -> bytes:
    """One request's head and Content-Length body; b"" once the client has closed."""
    try:
        head = await reader.readuntil(b"\r\n\r\n")
    except asyncio.IncompleteReadError:
        return b""
    length = 0
    for line in head.split(b"\r\n"):
        if line.lower().startswith(b"content-length:"):
            length = int(line.split(b":", 1)[1])
    return head + (await reader.readexactly(length) if length else b"")


@pytest.fixture
async def raw_server() -> AsyncIterator[Callable[[Handler], Awaitable[RawServer]]]:
    servers: list[asyncio.Server] = []

    async def start(handler: Handler) -> RawServer:
        seen = RawServer("")

        async def counted(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            seen.connections += 1
            try:
                await handler(reader, writer)
            finally:
                writer.close()

        server = await asyncio.start_server(counted, "127.0.0.1", 0)
        servers.append(server)
        seen.url = f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}"
        seen.server = server
        return seen

    yield start
    for server in servers:
        server.close()
        await server.wait_closed()


def upstream(limit: int = 4, **changes: Any) -> Http1Upstream:
    return Http1Upstream(dataclasses.replace(PROVIDER, **changes), max_connections=limit)


async def read(response: Any) -> bytes:
    try:
        return bytes(await response.aread())
    finally:
        await response.aclose()


async def test_a_kept_alive_connection_the_upstream_closed_is_retried_once_on_a_new_one(
    raw_server: Callable[[Handler], Awaitable[RawServer]],
) -> None:
    async def answer_once(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
        await writer.drain()
        await read_request(reader)  # a second request on this connection: closed without a byte

    server = await raw_server(answer_once)
    async with aclosing(upstream()) as client:
        assert await read(await client.send(UpstreamRequest("POST", server.url, {}, b"{}"))) == b"ok"
        assert await read(await client.send(UpstreamRequest("POST", server.url, {}, b"{}"))) == b"ok"

    assert server.connections == 2


async def test_a_retry_that_cannot_connect_leaves_no_connection_counted(
    raw_server: Callable[[Handler], Awaitable[RawServer]],
) -> None:
    served = asyncio.Event()

    async def answer_once(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
        await writer.drain()
        served.set()
        await read_request(reader)

    server = await raw_server(answer_once)
    async with aclosing(upstream()) as client:
        assert await read(await client.send(UpstreamRequest("POST", server.url, {}, b"{}"))) == b"ok"
        await served.wait()
        assert server.server is not None
        server.server.close()  # no new connections from here: the retry is refused
        with pytest.raises(httpx.ConnectError):
            await client.send(UpstreamRequest("POST", server.url, {}, b"{}"))
        assert client._pool.open == 0


async def test_bytes_sent_on_an_idle_connection_are_never_read_as_the_next_answer(
    raw_server: Callable[[Handler], Awaitable[RawServer]],
) -> None:
    async def stray(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if await read_request(reader) == b"":
            return
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nfirst")
        await writer.drain()
        await asyncio.sleep(0.05)
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nstray")  # an answer to nothing
        await writer.drain()
        await read_request(reader)

    server = await raw_server(stray)
    async with aclosing(upstream()) as client:
        assert await read(await client.send(UpstreamRequest("GET", server.url, {}))) == b"first"
        await asyncio.sleep(0.2)
        assert await read(await client.send(UpstreamRequest("GET", server.url, {}))) == b"first"

    assert server.connections == 2


async def test_a_new_connection_closed_unanswered_is_an_error_not_a_retry(
    raw_server: Callable[[Handler], Awaitable[RawServer]],
) -> None:
    async def hang_up(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)

    server = await raw_server(hang_up)
    async with aclosing(upstream()) as client:
        with pytest.raises(httpx.RemoteProtocolError):
            await client.send(UpstreamRequest("POST", server.url, {}, b"{}"))

    assert server.connections == 1


async def test_a_body_ended_by_the_close_is_read_whole_and_its_connection_not_reused(
    raw_server: Callable[[Handler], Awaitable[RawServer]],
) -> None:
    async def unsized(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n\r\nhello, ")
        await writer.drain()
        writer.write(b"world")

    server = await raw_server(unsized)
    async with aclosing(upstream()) as client:
        assert await read(await client.send(UpstreamRequest("GET", server.url, {}))) == b"hello, world"
        assert await read(await client.send(UpstreamRequest("GET", server.url, {}))) == b"hello, world"

    assert server.connections == 2


async def test_an_informational_answer_before_the_answer_is_skipped(
    raw_server: Callable[[Handler], Awaitable[RawServer]],
) -> None:
    async def early_hints(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 201 Created\r\nX-Id: 7\r\nContent-Length: 2\r\n\r\nok")
        await writer.drain()

    server = await raw_server(early_hints)
    async with aclosing(upstream()) as client:
        response = await client.send(UpstreamRequest("POST", server.url, {}, b"{}"))
        assert (response.status_code, response.headers["x-id"]) == (201, "7")
        assert await read(response) == b"ok"


async def test_an_answer_that_is_not_http_is_a_protocol_error(
    raw_server: Callable[[Handler], Awaitable[RawServer]],
) -> None:
    async def garbage(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(b"SSH-2.0-OpenSSH_9.6\r\n")
        await writer.drain()
        await reader.read()

    server = await raw_server(garbage)
    async with aclosing(upstream()) as client:
        with pytest.raises(httpx.RemoteProtocolError):
            await client.send(UpstreamRequest("GET", server.url, {}))


@pytest.mark.parametrize(
    "headers",
    [
        {"Authorization": "Bearer x\r\nX-Evil: 1"},
        {"Authorization": "Bearer x\nX-Evil: 1"},
        {"X-Evil: 1\r\nX-Name": "v"},
        {"X-Evil": "1", "X-Key": "caf\u00e9 \u2603"},
    ],
    ids=["crlf-in-value", "lf-in-value", "crlf-in-name", "not-latin-1"],
)
async def test_a_header_http_cannot_carry_is_refused_before_anything_is_sent(
    raw_server: Callable[[Handler], Awaitable[RawServer]], headers: dict[str, str]
) -> None:
    received: list[bytes] = []

    async def record(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        received.append(await reader.read())

    server = await raw_server(record)
    async with aclosing(upstream()) as client:
        with pytest.raises(httpx.LocalProtocolError):
            await client.send(UpstreamRequest("GET", server.url, headers))

    await asyncio.sleep(0.05)
    assert b"X-Evil" not in b"".join(received)


async def test_an_upload_that_arrives_in_parts_is_sent_chunked() -> None:
    seen: dict[str, Any] = {}

    async def echo(request: web.Request) -> web.Response:
        seen["body"] = await request.read()
        seen["encoding"] = request.headers.get("Transfer-Encoding")
        return web.Response(text="ok")

    async def parts() -> AsyncIterator[bytes]:
        for part in (b"--boundary\r\n", b"", b"x" * 200_000, b"\r\n--boundary--\r\n"):
            yield part
            await asyncio.sleep(0)

    async with aiohttp_server(echo) as url, aclosing(upstream()) as client:
        assert await read(await client.send(UpstreamRequest("POST", f"{url}/echo", {}, parts()))) == b"ok"

    assert seen["encoding"] == "chunked"
    assert seen["body"] == b"--boundary\r\n" + b"x" * 200_000 + b"\r\n--boundary--\r\n"


async def test_a_large_answer_arrives_intact_while_its_reader_lags() -> None:
    body = bytes(range(256)) * (12 * 1024)  # 3 MiB: past the high-water mark, so reading pauses and resumes

    async def big(request: web.Request) -> web.Response:
        return web.Response(body=body)

    async with aiohttp_server(big) as url, aclosing(upstream()) as client:
        response = await client.send(UpstreamRequest("GET", f"{url}/big", {}))
        parts = []
        try:
            async for part in response.aiter_raw():
                parts.append(part)
                await asyncio.sleep(0.01)
        finally:
            await response.aclose()

    assert b"".join(parts) == body


async def test_credentials_in_the_url_are_sent_as_basic_auth() -> None:
    async def echo(request: web.Request) -> web.Response:
        return web.json_response({"authorization": request.headers.get("Authorization"), "host": request.host})

    async with aiohttp_server(echo) as url, aclosing(upstream()) as client:
        with_credentials = url.replace("http://", "http://ollama:s%40cret@")
        echoed = orjson.loads(await read(await client.send(UpstreamRequest("GET", f"{with_credentials}/echo", {}))))

    assert echoed["authorization"] == "Basic b2xsYW1hOnNAY3JldA=="  # ollama:s@cret
    assert echoed["host"] == url.removeprefix("http://")


async def test_a_full_pool_waits_for_a_connection_then_gives_up_at_the_connect_timeout() -> None:
    release = asyncio.Event()

    async def held(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse()
        await response.prepare(request)
        await response.write(b"first")
        await release.wait()
        return response

    async def echo(request: web.Request) -> web.Response:
        return web.Response(text="ok")

    async with aiohttp_server(held, echo) as url, aclosing(upstream(limit=1, connect_timeout=0.2)) as client:
        busy = await client.send(UpstreamRequest("GET", f"{url}/held", {}))
        with pytest.raises(httpx.PoolTimeout):
            await client.send(UpstreamRequest("GET", f"{url}/echo", {}))

        waiting = asyncio.ensure_future(client.send(UpstreamRequest("GET", f"{url}/echo", {})))
        await asyncio.sleep(0.05)
        assert not waiting.done()
        await busy.aclose()  # half read: its connection is closed, and its slot passes to the waiting request
        assert await read(await waiting) == b"ok"
        release.set()


async def test_idle_connections_are_closed_after_the_keepalive(
    raw_server: Callable[[Handler], Awaitable[RawServer]], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(http1, "KEEPALIVE", 0.1)
    closed = asyncio.Event()

    async def answer_then_watch(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
        await writer.drain()
        if await reader.read() == b"":  # the client closed its end
            closed.set()

    server = await raw_server(answer_then_watch)
    async with aclosing(upstream()) as client:
        assert await read(await client.send(UpstreamRequest("GET", server.url, {}))) == b"ok"
        assert client._pool.open == 1
        async with asyncio.timeout(2):
            await closed.wait()
        assert client._pool.open == 0


async def test_it_speaks_tls_and_checks_the_certificate(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    certificate, key = self_signed(tmp_path)
    serving = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    serving.load_cert_chain(certificate, key)

    async def echo(request: web.Request) -> web.Response:
        return web.json_response({"scheme": request.scheme, "body": (await request.read()).decode()})

    async with aiohttp_server(echo, tls=serving) as url:
        https = url.replace("http://127.0.0.1", "https://localhost")
        async with aclosing(upstream()) as client:  # the system's trust store: this certificate is unknown
            with pytest.raises(httpx.ConnectError, match="certificate"):
                await client.send(UpstreamRequest("POST", f"{https}/echo", {}, b"{}"))

        trusting = ssl.create_default_context(cafile=str(certificate))
        monkeypatch.setattr(http1, "_tls", lambda: trusting)
        async with aclosing(upstream()) as client:
            first = orjson.loads(await read(await client.send(UpstreamRequest("POST", f"{https}/echo", {}, b"{}"))))
            second = orjson.loads(await read(await client.send(UpstreamRequest("POST", f"{https}/echo", {}, b"[]"))))
            assert client._pool.open == 1  # one TLS connection, kept alive

    assert (first, second) == ({"scheme": "https", "body": "{}"}, {"scheme": "https", "body": "[]"})


def self_signed(directory: Path) -> tuple[Path, Path]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = datetime.datetime.now(datetime.UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(hours=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    certificate_path, key_path = directory / "upstream.pem", directory / "upstream.key"
    certificate_path.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    return certificate_path, key_path


class aiohttp_server:  # noqa: N801 - used as a context manager, read like one
    """An aiohttp app on a loopback port routing /<handler name> to each handler; yields its base URL."""

    def __init__(self, *handlers: Callable[[web.Request], Awaitable[web.StreamResponse]], tls: Any = None) -> None:
        self.app = web.Application()
        for handler in handlers:
            self.app.router.add_route("*", f"/{handler.__name__}", handler)
        self.tls = tls
        self.runner = web.AppRunner(self.app, access_log=None)

    async def __aenter__(self) -> str:
        await self.runner.setup()
        site = web.TCPSite(self.runner, "127.0.0.1", 0, ssl_context=self.tls)
        await site.start()
        port = self.runner.addresses[0][1]
        return f"http://127.0.0.1:{port}"

    async def __aexit__(self, *exc: object) -> None:
        await self.runner.cleanup()
