"""The one place that builds outbound HTTP connections (ruff's banned-api enforces it).

One pooled, keep-alive transport per provider, shared by every request of this
process. Requests go straight to the transport rather than through
httpx.AsyncClient: the client's cookie jar would carry one tenant's upstream
cookies into another tenant's requests, and its redirect, auth and cookie
machinery costs more per request than the rest of the relay (measured with
cProfile). A provider whose settings change gets a new transport; the old one
is closed once requests still streaming through it are done.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any

import httpx
import orjson
from django.conf import settings

from providers.adapters.base import UpstreamRequest
from providers.facade import ProviderInfo
from providers.transport import AiohttpTransport

# Replaced transports linger this long, for streams still flowing through them.
_RETIRE_AFTER = 900.0
_URL_CACHE_SIZE = 256


def _transport(provider: ProviderInfo) -> httpx.AsyncBaseTransport:
    own = provider.adapter.transport()
    if own is not None:
        return own
    limit = settings.PORTICO_UPSTREAM_MAX_CONNECTIONS
    if settings.PORTICO_HTTP_TRANSPORT == "aiohttp":
        return AiohttpTransport(max_connections=limit)
    return httpx.AsyncHTTPTransport(limits=httpx.Limits(max_connections=limit, max_keepalive_connections=limit))


class Upstream:
    """A provider's connection pool and timeouts."""

    def __init__(self, provider: ProviderInfo) -> None:
        self.version = provider.version
        self.transport = _transport(provider)
        self.timeouts = {
            "connect": provider.connect_timeout,
            "read": provider.read_timeout,
            "write": provider.read_timeout,
            "pool": provider.connect_timeout,
        }
        self._urls: dict[str, httpx.URL] = {}

    def _url(self, url: str) -> httpx.URL:
        # Parsing a URL is the costliest part of building an httpx request; a provider has few distinct ones.
        parsed = self._urls.get(url)
        if parsed is None:
            parsed = httpx.URL(url)
            if len(self._urls) < _URL_CACHE_SIZE:
                self._urls[url] = parsed
        return parsed

    async def send(self, request: UpstreamRequest) -> httpx.Response:
        """Send and return once the headers are in; the caller reads (or streams) and closes the body."""
        outbound = httpx.Request(
            request.method,
            self._url(request.url),
            headers=request.headers,
            content=request.content,
            extensions={"timeout": self.timeouts},
        )
        response = await self.transport.handle_async_request(outbound)
        response.request = outbound
        return response

    async def aclose(self) -> None:
        await self.transport.aclose()


class Upstreams:
    """Upstreams by provider id, rebuilt when a provider's settings change."""

    def __init__(self) -> None:
        self._upstreams: dict[int, Upstream] = {}
        self._retiring: set[asyncio.Task[None]] = set()

    def get(self, provider: ProviderInfo) -> Upstream:
        upstream = self._upstreams.get(provider.id)
        if upstream is not None and upstream.version == provider.version:
            return upstream
        if upstream is not None:
            self._retire(upstream)
        upstream = self._upstreams[provider.id] = Upstream(provider)
        return upstream

    def _retire(self, upstream: Upstream) -> None:
        async def close_later() -> None:
            await asyncio.sleep(_RETIRE_AFTER)
            await upstream.aclose()

        task = asyncio.get_running_loop().create_task(close_later())
        self._retiring.add(task)
        task.add_done_callback(self._retiring.discard)

    async def aclose(self) -> None:
        for task in list(self._retiring):
            task.cancel()
        for upstream in self._upstreams.values():
            await upstream.aclose()
        self._upstreams.clear()


@dataclass(frozen=True)
class ProbeResult:
    ok: bool
    summary: str
    model_ids: tuple[str, ...] = ()


async def probe_models(provider: ProviderInfo) -> ProbeResult:
    """Call the provider's models endpoint once, for the admin's "test connection"."""
    request = provider.adapter.models_request(provider)
    upstream = Upstream(provider)
    try:
        response = await upstream.send(request)
        payload = await response.aread()
    except httpx.TimeoutException:
        return ProbeResult(
            False, f"timed out after {provider.connect_timeout:g}s connect / {provider.read_timeout:g}s read"
        )
    except httpx.TransportError as exc:
        return ProbeResult(False, f"could not reach {request.url}: {exc.__class__.__name__}")
    finally:
        await upstream.aclose()
    if response.status_code >= 400:
        failure = provider.adapter.failure(response.status_code, payload, response.headers, secret=provider.credential)
        return ProbeResult(False, f"HTTP {response.status_code}: {failure.message}")
    try:
        body: Any = orjson.loads(payload)
        ids = tuple(str(item["id"]) for item in body.get("data", []))
    except (orjson.JSONDecodeError, AttributeError, KeyError, TypeError):
        return ProbeResult(False, "the models endpoint answered with something that is not an OpenAI model list")
    return ProbeResult(True, f"OK: {len(ids)} model(s)", ids)
