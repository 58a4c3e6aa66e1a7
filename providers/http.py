"""The one place that builds outbound HTTP clients (ruff's banned-api enforces it).

One pooled, keep-alive client per provider, shared by every request of this
process. A provider whose settings change gets a new client; the old one is
closed once requests still using it are done.
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

# Old clients linger this long after being replaced, for requests still streaming through them.
_RETIRE_AFTER = 900.0


def _transport(provider: ProviderInfo) -> httpx.AsyncBaseTransport:
    own = provider.adapter.transport()
    if own is not None:
        return own
    if settings.PORTICO_HTTP_TRANSPORT == "aiohttp":
        return AiohttpTransport(max_connections=settings.PORTICO_UPSTREAM_MAX_CONNECTIONS)
    limit = settings.PORTICO_UPSTREAM_MAX_CONNECTIONS
    return httpx.AsyncHTTPTransport(limits=httpx.Limits(max_connections=limit, max_keepalive_connections=limit))


def _timeout(provider: ProviderInfo) -> httpx.Timeout:
    return httpx.Timeout(
        connect=provider.connect_timeout,
        read=provider.read_timeout,
        write=provider.read_timeout,
        pool=provider.connect_timeout,
    )


def new_client(provider: ProviderInfo) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=_transport(provider), timeout=_timeout(provider))


class UpstreamClients:
    """Pooled clients by provider id, rebuilt when a provider's settings change."""

    def __init__(self) -> None:
        self._clients: dict[int, tuple[float, httpx.AsyncClient]] = {}
        self._retiring: set[asyncio.Task[None]] = set()

    def get(self, provider: ProviderInfo) -> httpx.AsyncClient:
        entry = self._clients.get(provider.id)
        if entry is not None and entry[0] == provider.version:
            return entry[1]
        client = new_client(provider)
        self._clients[provider.id] = (provider.version, client)
        if entry is not None:
            self._retire(entry[1])
        return client

    def _retire(self, client: httpx.AsyncClient) -> None:
        async def close_later() -> None:
            await asyncio.sleep(_RETIRE_AFTER)
            await client.aclose()

        task = asyncio.get_running_loop().create_task(close_later())
        self._retiring.add(task)
        task.add_done_callback(self._retiring.discard)

    async def aclose(self) -> None:
        for task in list(self._retiring):
            task.cancel()
        for _, client in self._clients.values():
            await client.aclose()
        self._clients.clear()


def build(client: httpx.AsyncClient, request: UpstreamRequest) -> httpx.Request:
    return client.build_request(request.method, request.url, headers=request.headers, content=request.content)


@dataclass(frozen=True)
class ProbeResult:
    ok: bool
    summary: str
    model_ids: tuple[str, ...] = ()


async def probe_models(provider: ProviderInfo) -> ProbeResult:
    """Call the provider's models endpoint once, for the admin's "test connection"."""
    request = provider.adapter.models_request(provider)
    async with new_client(provider) as client:
        try:
            response = await client.send(build(client, request))
        except httpx.TimeoutException:
            return ProbeResult(
                False, f"timed out after {provider.connect_timeout:g}s connect / {provider.read_timeout:g}s read"
            )
        except httpx.TransportError as exc:
            return ProbeResult(False, f"could not reach {request.url}: {exc.__class__.__name__}")
    if response.status_code >= 400:
        failure = provider.adapter.failure(
            response.status_code, response.content, response.headers, secret=provider.credential
        )
        return ProbeResult(False, f"HTTP {response.status_code}: {failure.message}")
    try:
        payload: Any = orjson.loads(response.content)
        ids = tuple(str(item["id"]) for item in payload.get("data", []))
    except (orjson.JSONDecodeError, AttributeError, KeyError, TypeError):
        return ProbeResult(False, "the models endpoint answered with something that is not an OpenAI model list")
    return ProbeResult(True, f"OK: {len(ids)} model(s)", ids)
