"""The default upstream connection: aiohttp's pool, called directly.

Measured on our 2-core machines (bench/README.md), httpx's own pool falls far
behind aiohttp's under concurrency, and even httpx over an aiohttp transport
spends a large share of each request converting requests and responses
between the two libraries. This module calls aiohttp directly and keeps
httpx's exception tree as the one vocabulary the relay handles, mapping
aiohttp's errors precisely (a refused connection is a ConnectError — a 502 —
never a timeout).
"""

from __future__ import annotations

import functools
from collections.abc import AsyncIterator, Iterator, Mapping
from contextlib import contextmanager

import aiohttp
import httpx
from yarl import URL

from providers.adapters.base import UpstreamRequest
from providers.facade import ProviderInfo


@contextmanager
def mapped_errors() -> Iterator[None]:
    try:
        yield
    except aiohttp.ConnectionTimeoutError as exc:
        raise httpx.ConnectTimeout(str(exc)) from exc
    except (TimeoutError, aiohttp.ServerTimeoutError) as exc:
        raise httpx.ReadTimeout(str(exc) or "timed out waiting for the upstream") from exc
    except aiohttp.ClientConnectorError as exc:
        raise httpx.ConnectError(str(exc)) from exc
    except (aiohttp.ServerDisconnectedError, aiohttp.ClientPayloadError) as exc:
        raise httpx.RemoteProtocolError(str(exc) or "the upstream closed the connection") from exc
    except aiohttp.ClientError as exc:
        raise httpx.ReadError(str(exc) or exc.__class__.__name__) from exc


class AiohttpResponse:
    """The few parts of an answer the relay uses, named as on httpx.Response."""

    __slots__ = ("_response", "headers", "status_code")

    def __init__(self, response: aiohttp.ClientResponse) -> None:
        self._response = response
        self.status_code: int = response.status
        self.headers: Mapping[str, str] = response.headers

    async def aread(self) -> bytes:
        with mapped_errors():
            return await self._response.read()

    async def aiter_raw(self) -> AsyncIterator[bytes]:
        with mapped_errors():
            async for chunk in self._response.content.iter_any():
                yield chunk

    async def aclose(self) -> None:
        # An answer read to its end returns its connection to the pool; one abandoned
        # midway (client gone, error) closes it, so the upstream stops generating.
        if self._response.content.is_eof():
            self._response.release()
        else:
            self._response.close()


class AiohttpUpstream:
    """A provider's aiohttp pool, its timeouts (total included) and parsed URLs."""

    def __init__(self, provider: ProviderInfo, *, max_connections: int) -> None:
        self.version = provider.version
        self.total_timeout = provider.total_timeout
        self._max_connections = max_connections
        self._timeout = aiohttp.ClientTimeout(
            total=provider.total_timeout,
            sock_connect=provider.connect_timeout,
            sock_read=provider.read_timeout,
            connect=provider.connect_timeout,
        )
        self._session: aiohttp.ClientSession | None = None
        # A provider has few distinct URLs; parsing one per request would be wasted work.
        self._url = functools.lru_cache(maxsize=256)(URL)

    def _open_session(self) -> aiohttp.ClientSession:
        # Made lazily: an aiohttp session must be created inside the running event loop.
        connector = aiohttp.TCPConnector(limit=self._max_connections, keepalive_timeout=30.0)
        return aiohttp.ClientSession(
            connector=connector,
            auto_decompress=False,
            skip_auto_headers=("User-Agent",),
            # One tenant's upstream cookies must never ride along on another tenant's request.
            cookie_jar=aiohttp.DummyCookieJar(),
        )

    async def send(self, request: UpstreamRequest) -> AiohttpResponse:
        """Send and return once the headers are in; the caller reads (or streams) and closes the body."""
        if self._session is None:
            self._session = self._open_session()
        with mapped_errors():
            response = await self._session.request(
                request.method,
                self._url(request.url),
                headers=request.headers,
                data=request.content or None,
                allow_redirects=False,
                timeout=self._timeout,
            )
        return AiohttpResponse(response)

    async def aclose(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None
