"""Outbound HTTP: this module, providers/http1.py and providers/transport.py are the only ones that open connections
(ruff's banned-api enforces it). Besides the upstreams of the hot path, `fetch_document` reads one
document synchronously, bounded in size and time, for background work (model-list sources), and
`post_body` sends one (alert webhooks).

Each provider gets one pooled, keep-alive `Upstream`, shared by every request
of this process, with the provider's connect, read and total timeouts:

* `Http1Upstream` (providers/http1.py), the default: Portico's own HTTP/1.1
  client on httptools' parser, the least CPU per request measured (bench/README.md);
* `AiohttpUpstream` (providers/transport.py), PORTICO_HTTP_TRANSPORT=aiohttp:
  aiohttp's pool, called directly;
* `HttpxUpstream`: an httpx transport — httpx's own pool when
  PORTICO_HTTP_TRANSPORT=httpx, or the in-process transport of a kind that
  answers without a network (the mock).

All raise httpx's exceptions, the one vocabulary the relay handles. None
keeps cookies: one tenant's upstream cookies must never reach another's
request. A provider whose settings change gets a new upstream; the old one is
closed once requests still streaming through it are done.
"""

from __future__ import annotations

import asyncio
import functools
import time
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field
from typing import Protocol

import httpx
from django.conf import settings

from providers.adapters.base import UpstreamRequest
from providers.facade import ProviderInfo
from providers.http1 import Http1Upstream
from providers.transport import AiohttpUpstream

# Replaced upstreams linger this much longer than their total timeout, for streams still flowing through them.
_RETIRE_MARGIN = 30.0


class UpstreamResponse(Protocol):
    status_code: int
    headers: Mapping[str, str]

    async def aread(self) -> bytes: ...

    def aiter_raw(self) -> AsyncIterator[bytes]: ...

    async def aclose(self) -> None: ...


class Upstream(Protocol):
    version: float
    total_timeout: float

    async def send(self, request: UpstreamRequest) -> UpstreamResponse: ...

    async def aclose(self) -> None: ...


class _DeadlineResponse:
    """An httpx answer held to the provider's total timeout while its body is read."""

    __slots__ = ("_deadline", "_response", "headers", "status_code")

    def __init__(self, response: httpx.Response, deadline: float) -> None:
        self._response = response
        self._deadline = deadline
        self.status_code = response.status_code
        self.headers: Mapping[str, str] = response.headers

    async def aread(self) -> bytes:
        try:
            async with asyncio.timeout_at(self._deadline):
                return await self._response.aread()
        except TimeoutError:
            raise httpx.ReadTimeout("the upstream did not finish within the total timeout") from None

    async def aiter_raw(self) -> AsyncIterator[bytes]:
        loop = asyncio.get_running_loop()
        async for chunk in self._response.aiter_raw():
            if loop.time() > self._deadline:
                raise httpx.ReadTimeout("the upstream did not finish within the total timeout")
            yield chunk

    async def aclose(self) -> None:
        await self._response.aclose()


class HttpxUpstream:
    """A provider's httpx transport, used without httpx.AsyncClient (no cookie jar, no redirects)."""

    def __init__(self, provider: ProviderInfo, transport: httpx.AsyncBaseTransport) -> None:
        self.version = provider.version
        self.transport = transport
        self.total_timeout = provider.total_timeout
        self.timeouts = {
            "connect": provider.connect_timeout,
            "read": provider.read_timeout,
            "write": provider.read_timeout,
            "pool": provider.connect_timeout,
        }
        # Parsing is the costliest part of building an httpx request; a provider has few distinct URLs.
        self._url = functools.lru_cache(maxsize=256)(httpx.URL)

    async def send(self, request: UpstreamRequest) -> UpstreamResponse:
        outbound = httpx.Request(
            request.method,
            self._url(request.url),
            headers=request.headers,
            content=request.content,
            extensions={"timeout": self.timeouts},
        )
        deadline = asyncio.get_running_loop().time() + self.total_timeout
        try:
            async with asyncio.timeout_at(deadline):
                response = await self.transport.handle_async_request(outbound)
        except TimeoutError:
            raise httpx.ReadTimeout("the upstream did not answer within the total timeout") from None
        response.request = outbound
        return _DeadlineResponse(response, deadline)

    async def aclose(self) -> None:
        await self.transport.aclose()


def open_upstream(provider: ProviderInfo) -> Upstream:
    own = provider.adapter.transport()
    if own is not None:
        return HttpxUpstream(provider, own)
    limit = settings.PORTICO_UPSTREAM_MAX_CONNECTIONS
    if settings.PORTICO_HTTP_TRANSPORT == "http1":
        return Http1Upstream(provider, max_connections=limit)
    if settings.PORTICO_HTTP_TRANSPORT == "aiohttp":
        return AiohttpUpstream(provider, max_connections=limit)
    limits = httpx.Limits(max_connections=limit, max_keepalive_connections=limit)
    return HttpxUpstream(provider, httpx.AsyncHTTPTransport(limits=limits))


class Upstreams:
    """Upstreams by provider id, rebuilt when a provider's settings change."""

    def __init__(self) -> None:
        self._upstreams: dict[int, Upstream] = {}
        # Replaced upstreams and the tasks that will close them once their streams are done.
        self._retired: dict[asyncio.Task[None], Upstream] = {}

    def get(self, provider: ProviderInfo) -> Upstream:
        upstream = self._upstreams.get(provider.id)
        if upstream is not None and upstream.version == provider.version:
            return upstream
        if upstream is not None:
            self._retire(upstream)
        upstream = self._upstreams[provider.id] = open_upstream(provider)
        return upstream

    def retain(self, provider_ids: set[int]) -> None:
        """Retire the upstreams of providers no longer served (deleted or deactivated)."""
        for provider_id in set(self._upstreams) - provider_ids:
            self._retire(self._upstreams.pop(provider_id))

    def _retire(self, upstream: Upstream) -> None:
        async def close_later() -> None:
            await asyncio.sleep(upstream.total_timeout + _RETIRE_MARGIN)
            await upstream.aclose()

        task = asyncio.get_running_loop().create_task(close_later())
        self._retired[task] = upstream
        task.add_done_callback(lambda done: self._retired.pop(done, None))

    async def aclose(self) -> None:
        # Cancelling a close task that never started would skip its close: close each upstream here.
        retired, self._retired = self._retired, {}
        for task, upstream in retired.items():
            task.cancel()
            await upstream.aclose()
        for upstream in self._upstreams.values():
            await upstream.aclose()
        self._upstreams.clear()


@dataclass(frozen=True)
class ProbeResult:
    ok: bool
    summary: str
    model_ids: tuple[str, ...] = ()
    # Portico's own name for a failure ("timeout", "unreachable", "http_503", "not_a_model_list"), never the
    # upstream's text: what health checks hand the breakers.
    reason: str = ""


async def probe_models(provider: ProviderInfo) -> ProbeResult:
    """Call the provider's models endpoint once: the admin's "test connection", discovery and health checks."""
    request = provider.adapter.models_request(provider)
    upstream = open_upstream(provider)
    try:
        response = await upstream.send(request)
        try:
            payload = await response.aread()
        finally:
            await response.aclose()
    except httpx.TimeoutException:
        return ProbeResult(
            False,
            f"timed out after {provider.connect_timeout:g}s connect / {provider.read_timeout:g}s read",
            reason="timeout",
        )
    except httpx.TransportError as exc:
        return ProbeResult(False, f"could not reach {request.url}: {exc.__class__.__name__}", reason="unreachable")
    finally:
        await upstream.aclose()
    if response.status_code >= 400:
        failure = provider.adapter.failure(response.status_code, payload, response.headers, redactor=provider.redactor)
        return ProbeResult(
            False, f"HTTP {response.status_code}: {failure.message}", reason=f"http_{response.status_code}"
        )
    try:
        ids = tuple(provider.adapter.model_ids(payload))
    except ValueError:
        return ProbeResult(
            False, "the models endpoint answered with something that is not a model list", reason="not_a_model_list"
        )
    return ProbeResult(True, f"OK: {len(ids)} model(s)", ids)


class DocumentTooLarge(Exception):
    """A fetched document is past its size bound; nothing of it is kept."""


@dataclass(frozen=True)
class Document:
    status_code: int
    content: bytes = field(repr=False)


def fetch_document(url: str, *, headers: Mapping[str, str], timeout: float, max_bytes: int) -> Document:
    """GET one document, synchronously (a task, an admin action), held to `timeout` seconds in all and
    `max_bytes` of body. No redirects are followed and no proxy is taken from the environment, as for
    upstream calls. Raises httpx.TimeoutException, httpx.TransportError or DocumentTooLarge."""
    deadline = time.monotonic() + timeout
    with httpx.Client(timeout=timeout, follow_redirects=False, trust_env=False) as client:
        with client.stream("GET", url, headers=dict(headers)) as response:
            declared = response.headers.get("content-length", "")
            if declared.isdigit() and int(declared) > max_bytes:
                raise DocumentTooLarge(f"the answer is over the bound of {max_bytes} bytes (it declares {declared})")
            chunks: list[bytes] = []
            size = 0
            for chunk in response.iter_bytes():
                size += len(chunk)
                if size > max_bytes:
                    raise DocumentTooLarge(f"the answer is over the bound of {max_bytes} bytes")
                if time.monotonic() > deadline:
                    raise httpx.ReadTimeout(f"the answer took over {timeout:g} s")
                chunks.append(chunk)
    return Document(response.status_code, b"".join(chunks))


def post_body(url: str, *, content: bytes, headers: Mapping[str, str], timeout: float) -> int:
    """POST one body, synchronously (a task), and return the answer's status without reading its body.
    `timeout` bounds connecting, sending and each read; no redirects are followed and no proxy is taken
    from the environment, as for upstream calls. Raises httpx.TimeoutException or httpx.TransportError."""
    with httpx.Client(timeout=timeout, follow_redirects=False, trust_env=False) as client:
        with client.stream("POST", url, content=content, headers=dict(headers)) as response:
            return response.status_code
