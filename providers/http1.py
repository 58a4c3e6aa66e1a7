"""Portico's own HTTP/1.1 client for upstreams: httptools' parser over asyncio's transports, with a keep-alive pool.

aiohttp's client spends most of its CPU per call on what a relay does not use
(per-request timeout contexts, tracing hooks, payload and cookie machinery):
about 160 µs per call against about 50 µs here, 32 calls at a time against the
harness's fast upstream (bench/upstream_clients.py). This client does only what
upstream LLM APIs need:

* HTTP/1.1 over TCP or TLS (the system's trust store), keep-alive, at most
  `max_connections` connections per provider, the longest-idle closed after
  `KEEPALIVE` seconds;
* bodies sized by Content-Length, chunked, or ended by the close; uploads that
  arrive as an async iterable are sent chunked;
* nothing a relay must not do: no redirects, no cookies, no proxies, no
  decompression (answers are relayed as sent; the adapters ask for identity).

Timeouts are the provider's: `connect` bounds waiting for a free connection
plus the TCP and TLS handshake, `read` each wait for bytes, `total` the whole
exchange up to the body's end. Errors are httpx's, the one vocabulary the relay
handles: a refused connection is a ConnectError (a 502), never a timeout.

The parser is httptools (llhttp), the one uvicorn already serves with.
"""

from __future__ import annotations

import asyncio
import base64
import functools
import ssl
from collections import deque
from collections.abc import AsyncIterable, AsyncIterator, Mapping
from typing import Any, cast
from urllib.parse import unquote, urlsplit

import httptools
import httpx
from multidict import CIMultiDict, CIMultiDictProxy

from providers.adapters.base import UpstreamRequest
from providers.facade import ProviderInfo

KEEPALIVE = 30.0  # seconds an idle connection is kept; below the 60 s or more most servers allow
# An answer buffered past this while its reader lags stops the socket being read, until the reader catches up.
HIGH_WATER = 1 << 20
# Headers the client writes itself from the request; a caller's copy would contradict them.
_FRAMING = frozenset({"host", "content-length", "transfer-encoding", "connection"})
_BODY_METHODS = frozenset({"POST", "PUT", "PATCH"})
_DEFAULT_PORTS = {"http": 80, "https": 443}

Key = tuple[str, str, int]  # scheme, host, port: what a connection can be reused for


@functools.cache
def _tls() -> ssl.SSLContext:
    return ssl.create_default_context()


class _Target:
    """A URL split once into what a request needs: where to connect, the request target, the Host header."""

    __slots__ = ("authorization", "host_header", "key", "path")

    def __init__(self, url: str) -> None:
        parts = urlsplit(url)
        scheme = parts.scheme.lower()
        if scheme not in _DEFAULT_PORTS:
            raise httpx.UnsupportedProtocol(f"an upstream URL must be http or https, not {parts.scheme!r}")
        host = parts.hostname
        if not host:
            raise httpx.UnsupportedProtocol(f"the upstream URL {url!r} names no host")
        try:
            port = parts.port or _DEFAULT_PORTS[scheme]
        except ValueError as exc:
            raise httpx.UnsupportedProtocol(f"the upstream URL {url!r} has a bad port") from exc
        self.key: Key = (scheme, host, port)
        self.path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        bracketed = f"[{host}]" if ":" in host else host
        self.host_header = bracketed if port == _DEFAULT_PORTS[scheme] else f"{bracketed}:{port}"
        self.authorization = ""
        if parts.username is not None:  # credentials in the URL, as some self-hosted servers are set up
            pair = f"{unquote(parts.username)}:{unquote(parts.password or '')}".encode()
            self.authorization = "Basic " + base64.b64encode(pair).decode("ascii")


def _head(method: str, target: _Target, headers: dict[str, str], framing: str) -> bytes:
    if not _FRAMING.isdisjoint(map(str.lower, headers)):
        headers = {name: value for name, value in headers.items() if name.lower() not in _FRAMING}
    block = "".join([f"{name}: {value}\r\n" for name, value in headers.items()])
    # Each header line ends in the one CR LF written here: any other is a line break inside a name or a value.
    if block.count("\n") != len(headers) or block.count("\r") != len(headers):
        raise httpx.LocalProtocolError("an upstream header's name or value holds a line break")
    if target.authorization and "authorization" not in map(str.lower, headers):
        block += f"Authorization: {target.authorization}\r\n"
    try:
        return f"{method} {target.path} HTTP/1.1\r\nHost: {target.host_header}\r\n{block}{framing}".encode("latin-1")
    except UnicodeEncodeError:
        raise httpx.LocalProtocolError("an upstream header holds a character HTTP/1.1 cannot carry") from None


class _Connection(asyncio.Protocol):
    """One keep-alive connection: feeds what arrives to the parser, and wakes whoever waits on it."""

    def __init__(self, pool: _Pool, key: Key) -> None:
        self.pool = pool
        self.key = key
        self.loop = asyncio.get_running_loop()
        self.transport: asyncio.Transport | None = None
        self.closed = False
        self.in_use = True  # made for a request; False while it waits in the pool
        self.idle_since = 0.0
        self.waiter: asyncio.Future[None] | None = None
        self.write_paused = False
        self._drained: asyncio.Future[None] | None = None
        self.reset()

    def reset(self) -> None:
        """Ready for the next exchange."""
        self.parser = httptools.HttpResponseParser(self)
        self.status = 0
        self.header_pairs: list[tuple[str, str]] = []
        self.headers_done = False
        self.informational = False
        self.complete = False
        self.keep_alive = False
        self.received = False
        self.error: Exception | None = None
        self.chunks: list[bytes] = []
        self.buffered = 0
        self.reading_paused = False

    # --- asyncio.Protocol ---

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's are not asyncio.Transport subclasses

    def data_received(self, data: bytes) -> None:
        if not self.in_use:  # bytes nobody asked for would be read as the next request's answer
            self._fail(httpx.RemoteProtocolError("the upstream sent bytes on an idle connection"))
            return
        self.received = True
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            self._fail(httpx.RemoteProtocolError("the upstream switched protocols"))
        except httptools.HttpParserError as exc:
            self._fail(httpx.RemoteProtocolError(f"the upstream's answer is not valid HTTP/1.1: {exc}"))
        self._wake()

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        if self.headers_done and not self.complete and self._ends_at_close():
            self.complete = True  # neither sized nor chunked: the close is the body's end
        elif not self.complete and self.error is None:
            self.error = httpx.RemoteProtocolError("the upstream closed the connection")
        if self._drained is not None and not self._drained.done():
            self._drained.set_result(None)
        self.pool.lost(self)
        self._wake()

    def pause_writing(self) -> None:
        self.write_paused = True

    def resume_writing(self) -> None:
        self.write_paused = False
        if self._drained is not None and not self._drained.done():
            self._drained.set_result(None)

    # --- httptools callbacks ---

    def on_header(self, name: bytes, value: bytes) -> None:
        self.header_pairs.append((name.decode("latin-1"), value.decode("latin-1")))

    def on_headers_complete(self) -> None:
        status = self.parser.get_status_code()
        if 100 <= status < 200:  # a 100 Continue or 103 Early Hints precedes the answer itself
            self.informational = True
            self.header_pairs = []
            return
        self.status = status
        self.headers_done = True

    def on_body(self, body: bytes) -> None:
        self.chunks.append(body)
        self.buffered += len(body)
        if self.buffered > HIGH_WATER and not self.reading_paused and self.transport is not None:
            self.reading_paused = True
            self.transport.pause_reading()

    def on_message_complete(self) -> None:
        if self.informational:
            self.informational = False
            return
        self.complete = True
        self.keep_alive = self.parser.should_keep_alive()

    # --- used by the upstream and its answers ---

    def _ends_at_close(self) -> bool:
        names = {name.lower() for name, _ in self.header_pairs}
        return "content-length" not in names and "transfer-encoding" not in names

    def _fail(self, error: Exception) -> None:
        if self.error is None:
            self.error = error
        if self.transport is not None:
            self.transport.close()

    def _wake(self) -> None:
        waiter = self.waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def take(self) -> bytes:
        """What has arrived of the body since the last take."""
        data = self.chunks[0] if len(self.chunks) == 1 else b"".join(self.chunks)
        self.chunks = []
        self.buffered = 0
        if self.reading_paused and self.transport is not None:
            self.reading_paused = False
            self.transport.resume_reading()
        return data

    async def wait(self, read_timeout: float, deadline: float) -> None:
        """Until something arrives, the connection ends, or a timeout passes (httpx.ReadTimeout)."""
        waiter = self.waiter = self.loop.create_future()
        at = self.loop.time() + read_timeout
        handle = self.loop.call_at(min(at, deadline), _expire, waiter, at > deadline)
        try:
            await waiter
        except httpx.ReadTimeout as exc:
            self._fail(exc)  # what arrives after a timeout can no longer be placed
            raise
        finally:
            handle.cancel()
            self.waiter = None

    async def drain(self, within: float) -> None:
        """Until the socket's send buffer has room again (an upload faster than the upstream reads it)."""
        if not self.write_paused or self.closed:
            return
        self._drained = self.loop.create_future()
        try:
            async with asyncio.timeout(within):
                await self._drained
        except TimeoutError:
            error = httpx.WriteTimeout("the upstream stopped reading the request")
            self._fail(error)
            raise error from None
        finally:
            self._drained = None


def _expire(waiter: asyncio.Future[None], total: bool) -> None:
    if not waiter.done():
        what = "within the total timeout" if total else "within the read timeout"
        waiter.set_exception(httpx.ReadTimeout(f"the upstream did not answer {what}"))


class _Pool:
    """A provider's connections: idle ones by where they lead, and a cap on how many are open at all."""

    def __init__(self, *, limit: int, connect_timeout: float) -> None:
        self.limit = limit
        self.connect_timeout = connect_timeout
        self.open = 0
        self.idle: dict[Key, deque[_Connection]] = {}
        self._slot_waiters: deque[asyncio.Future[None]] = deque()
        self._prune_handle: asyncio.TimerHandle | None = None
        self.closed = False

    def take_idle(self, key: Key) -> _Connection | None:
        """A kept-alive connection to `key`, if one is idle and fit for use."""
        idle = self.idle.get(key)
        while idle:
            connection = idle.pop()
            if not connection.closed and connection.loop.time() - connection.idle_since < KEEPALIVE:
                connection.in_use = True
                return connection
            self._close(connection)
        return None

    async def acquire(self, key: Key, deadline: float, *, fresh: bool = False) -> tuple[_Connection, bool]:
        """A connection to `key` (a new one if `fresh`) and whether it was used before.

        Waits for a free slot up to the connect timeout.
        """
        loop = asyncio.get_running_loop()
        give_up = min(loop.time() + self.connect_timeout, deadline)
        while True:
            if not fresh and (connection := self.take_idle(key)) is not None:
                return connection, True
            if self.open < self.limit or self._evict_idle():
                break
            await self._wait_for_slot(give_up)
        self.open += 1
        try:
            connection = await self._connect(key, give_up)
        except BaseException:
            self.open -= 1
            self._hand_on_slot()
            raise
        return connection, False

    async def _connect(self, key: Key, give_up: float) -> _Connection:
        scheme, host, port = key
        tls = _tls() if scheme == "https" else None
        loop = asyncio.get_running_loop()
        try:
            async with asyncio.timeout_at(give_up):
                _, connection = await loop.create_connection(
                    lambda: _Connection(self, key), host, port, ssl=tls, server_hostname=host if tls else None
                )
        except TimeoutError:
            raise httpx.ConnectTimeout(f"no connection to {host}:{port} within the connect timeout") from None
        except (OSError, ssl.SSLError) as exc:  # refused, unreachable, unknown host, a certificate refused
            raise httpx.ConnectError(f"cannot connect to {host}:{port}: {exc}") from exc
        return connection

    async def _wait_for_slot(self, give_up: float) -> None:
        waiter = asyncio.get_running_loop().create_future()
        self._slot_waiters.append(waiter)
        try:
            async with asyncio.timeout_at(give_up):
                await waiter
        except TimeoutError:
            raise httpx.PoolTimeout("every connection to the upstream stayed busy past the connect timeout") from None
        finally:
            if waiter in self._slot_waiters:
                self._slot_waiters.remove(waiter)

    def _hand_on_slot(self) -> None:
        while self._slot_waiters:
            waiter = self._slot_waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)
                return

    def _evict_idle(self) -> bool:
        """Close the longest-idle connection to somewhere else, to make room; whether there was one."""
        oldest: _Connection | None = None
        for idle in self.idle.values():
            if idle and (oldest is None or idle[0].idle_since < oldest.idle_since):
                oldest = idle[0]
        if oldest is None:
            return False
        self.idle[oldest.key].popleft()
        self._close(oldest)
        return True

    def release(self, connection: _Connection, reusable: bool) -> None:
        if reusable and not connection.closed and not self.closed:
            connection.reset()
            connection.in_use = False
            connection.idle_since = connection.loop.time()
            self.idle.setdefault(connection.key, deque()).append(connection)
            if self._slot_waiters:
                self._hand_on_slot()  # a waiter for another host may evict it; one for this host takes it
            elif self._prune_handle is None:
                self._prune_handle = connection.loop.call_later(KEEPALIVE, self._prune)
            return
        self._close(connection)

    def lost(self, connection: _Connection) -> None:
        """The peer closed a connection; one that sat idle leaves the pool at once."""
        idle = self.idle.get(connection.key)
        if idle and connection in idle:
            idle.remove(connection)
            self._close(connection)

    def _close(self, connection: _Connection) -> None:
        if connection.transport is not None and not connection.transport.is_closing():
            connection.transport.close()
        connection.transport = None
        connection.pool = _DETACHED  # closed once: a late connection_lost must not count it again
        self.open -= 1
        self._hand_on_slot()

    def _prune(self) -> None:
        self._prune_handle = None
        loop = asyncio.get_running_loop()
        for idle in self.idle.values():
            while idle and loop.time() - idle[0].idle_since >= KEEPALIVE:
                self._close(idle.popleft())
        if any(self.idle.values()):
            self._prune_handle = loop.call_later(KEEPALIVE, self._prune)

    def close(self) -> None:
        self.closed = True
        if self._prune_handle is not None:
            self._prune_handle.cancel()
            self._prune_handle = None
        for idle in self.idle.values():
            while idle:
                self._close(idle.popleft())


class _Detached:
    """Where a closed connection reports its end: nowhere."""

    def lost(self, connection: _Connection) -> None:
        pass


_DETACHED: Any = _Detached()


class Http1Response:
    """The few parts of an answer the relay uses, named as on httpx.Response."""

    __slots__ = ("_connection", "_deadline", "_pool", "_read_timeout", "headers", "status_code")

    def __init__(self, connection: _Connection, pool: _Pool, read_timeout: float, deadline: float) -> None:
        self._connection: _Connection | None = connection
        self._pool = pool
        self._read_timeout = read_timeout
        self._deadline = deadline
        self.status_code = connection.status
        self.headers: Mapping[str, str] = CIMultiDictProxy(CIMultiDict(connection.header_pairs))

    def _open(self) -> _Connection:
        if self._connection is None:
            raise httpx.StreamClosed()
        return self._connection

    async def aread(self) -> bytes:
        connection = self._open()
        while not connection.complete:
            if connection.error is not None:
                raise connection.error
            await connection.wait(self._read_timeout, self._deadline)
        return connection.take()

    async def aiter_raw(self) -> AsyncIterator[bytes]:
        connection = self._open()
        while True:
            if connection.chunks:
                yield connection.take()
            elif connection.complete:
                return
            elif connection.error is not None:
                raise connection.error
            else:
                await connection.wait(self._read_timeout, self._deadline)

    async def aclose(self) -> None:
        # An answer read to its end returns its connection to the pool; one abandoned
        # midway (client gone, error) closes it, so the upstream stops generating.
        connection, self._connection = self._connection, None
        if connection is not None:
            self._pool.release(connection, connection.complete and connection.keep_alive)


class Http1Upstream:
    """A provider's pool of HTTP/1.1 connections, its timeouts (total included) and parsed URLs."""

    def __init__(self, provider: ProviderInfo, *, max_connections: int) -> None:
        self.version = provider.version
        self.total_timeout = provider.total_timeout
        self.read_timeout = provider.read_timeout
        self._pool = _Pool(limit=max_connections, connect_timeout=provider.connect_timeout)
        # A provider has few distinct URLs; splitting one per request would be wasted work.
        self._target = functools.lru_cache(maxsize=256)(_Target)

    async def send(self, request: UpstreamRequest) -> Http1Response:
        """Send and return once the headers are in; the caller reads (or streams) and closes the body."""
        target = self._target(request.url)
        deadline = asyncio.get_running_loop().time() + self.total_timeout
        content = request.content
        connection = self._pool.take_idle(target.key)  # the common case, without a coroutine
        reused = connection is not None
        if connection is None:
            connection, reused = await self._pool.acquire(target.key, deadline)
        try:
            await self._exchange(connection, request.method, target, request.headers, content, deadline)
        except httpx.RemoteProtocolError:
            self._pool.release(connection, False)
            # A kept-alive connection the upstream closed as it was reused: nothing of this request was
            # answered (or read), so it goes once more on a new connection, as browsers do.
            if not (reused and not connection.received and isinstance(content, bytes)):
                raise
            connection, _ = await self._pool.acquire(target.key, deadline, fresh=True)
            try:
                await self._exchange(connection, request.method, target, request.headers, content, deadline)
            except BaseException:
                self._pool.release(connection, False)
                raise
        except BaseException:
            self._pool.release(connection, False)
            raise
        return Http1Response(connection, self._pool, self.read_timeout, deadline)

    async def _exchange(
        self,
        connection: _Connection,
        method: str,
        target: _Target,
        headers: dict[str, str],
        content: bytes | AsyncIterable[bytes],
        deadline: float,
    ) -> None:
        transport = connection.transport
        if transport is None or connection.closed:
            raise httpx.RemoteProtocolError("the upstream closed the connection")
        if isinstance(content, bytes):
            sized = f"Content-Length: {len(content)}\r\n\r\n" if content or method in _BODY_METHODS else "\r\n"
            transport.write(_head(method, target, headers, sized) + content)
        else:
            transport.write(_head(method, target, headers, "Transfer-Encoding: chunked\r\n\r\n"))
            async for chunk in content:
                if connection.closed:
                    break  # the upstream answered early, or left: what it said is read below
                if chunk:
                    transport.write(b"%x\r\n%b\r\n" % (len(chunk), chunk))
                    await connection.drain(self.read_timeout)
            if not connection.closed:
                transport.write(b"0\r\n\r\n")
        while not connection.headers_done:
            if connection.error is not None:
                raise connection.error
            await connection.wait(self.read_timeout, deadline)

    async def aclose(self) -> None:
        self._pool.close()
