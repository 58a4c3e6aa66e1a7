"""An httpx transport backed by aiohttp's connection pool.

Measured on our 2-core machines, httpx's own pool falls far behind aiohttp's
under concurrency (bench/README.md). The `httpx-aiohttp` package does the same
job but maps a refused connection to ConnectTimeout, which would turn a 502
into a 504 for our clients; this module maps aiohttp's errors onto httpx's
exception tree precisely, so the relay sees one set of exceptions whichever
transport is configured.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager

import aiohttp
import httpx


@contextmanager
def _mapped_errors() -> Iterator[None]:
    try:
        yield
    except aiohttp.ConnectionTimeoutError as exc:
        raise httpx.ConnectTimeout(str(exc)) from exc
    except (TimeoutError, aiohttp.ServerTimeoutError) as exc:
        raise httpx.ReadTimeout(str(exc) or "timed out reading from the upstream") from exc
    except aiohttp.ClientConnectorError as exc:
        raise httpx.ConnectError(str(exc)) from exc
    except (aiohttp.ServerDisconnectedError, aiohttp.ClientPayloadError) as exc:
        raise httpx.RemoteProtocolError(str(exc) or "the upstream closed the connection") from exc
    except aiohttp.ClientError as exc:
        raise httpx.ReadError(str(exc) or exc.__class__.__name__) from exc


class _ResponseStream(httpx.AsyncByteStream):
    def __init__(self, response: aiohttp.ClientResponse) -> None:
        self._response = response

    async def __aiter__(self) -> AsyncIterator[bytes]:
        with _mapped_errors():
            async for chunk in self._response.content.iter_any():
                yield chunk

    async def aclose(self) -> None:
        # A response read to its end goes back to the pool; one abandoned midway
        # (client gone, error) must close its connection so the upstream stops.
        if self._response.content.is_eof():
            self._response.release()
        else:
            self._response.close()


class AiohttpTransport(httpx.AsyncBaseTransport):
    def __init__(self, *, max_connections: int, keepalive_expiry: float = 30.0) -> None:
        self._max_connections = max_connections
        self._keepalive_expiry = keepalive_expiry
        self._session: aiohttp.ClientSession | None = None

    def _open_session(self) -> aiohttp.ClientSession:
        # Made lazily: an aiohttp session must be created inside the running event loop.
        connector = aiohttp.TCPConnector(limit=self._max_connections, keepalive_timeout=self._keepalive_expiry)
        return aiohttp.ClientSession(connector=connector, auto_decompress=False, skip_auto_headers=("User-Agent",))

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        if self._session is None:
            self._session = self._open_session()
        timeout = request.extensions.get("timeout", {})
        content = await request.aread()
        with _mapped_errors():
            response = await self._session.request(
                request.method,
                str(request.url),
                headers=[(k, v) for k, v in request.headers.multi_items() if k.lower() != "content-length"],
                data=content or None,
                allow_redirects=False,
                timeout=aiohttp.ClientTimeout(
                    total=None,
                    sock_connect=timeout.get("connect"),
                    sock_read=timeout.get("read"),
                    connect=timeout.get("pool"),
                ),
            )
        return httpx.Response(
            status_code=response.status,
            headers=response.raw_headers,
            stream=_ResponseStream(response),
            request=request,
            extensions={"http_version": b"HTTP/1.1"},
        )

    async def aclose(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None
