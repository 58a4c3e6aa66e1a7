"""Forwarding a request to its provider and relaying the answer, whole or streamed.

Upstream trouble becomes the error tree's UpstreamError family: before the
first byte as an HTTP error answer, after it as an SSE error frame.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncGenerator
from typing import Any

import httpx
from django.http import HttpResponse

from gateway.errors import PorticoError, UpstreamError, UpstreamTimeout, UpstreamUnreachable
from gateway.sse import DONE, EventSplitter, EventStream, frame
from providers.adapters.base import StreamTranslator
from providers.facade import RouteInfo
from providers.http import UpstreamResponse, Upstreams

logger = logging.getLogger(__name__)
upstreams = Upstreams()


def _transport_error(exc: httpx.TransportError, provider: str) -> UpstreamError:
    if isinstance(exc, httpx.TimeoutException):
        return UpstreamTimeout(f"The upstream provider '{provider}' did not answer in time.")
    return UpstreamUnreachable(f"The upstream provider '{provider}' could not be reached or dropped the connection.")


async def _failure(route: RouteInfo, response: UpstreamResponse) -> UpstreamError:
    try:
        payload = await response.aread()
    finally:
        await response.aclose()
    provider = route.provider
    return UpstreamError.from_failure(
        provider.adapter.failure(response.status_code, payload, response.headers, secret=provider.credential)
    )


async def chat(route: RouteInfo, body: dict[str, Any]) -> HttpResponse | EventStream:
    """Relay a chat completion. The provider's total timeout is enforced by its upstream, streams included."""
    provider = route.provider
    adapter = provider.adapter
    request = adapter.chat_request(provider, route.upstream_model, body)
    try:
        response = await upstreams.get(provider).send(request)
        if response.status_code >= 400:
            raise await _failure(route, response)
        if body.get("stream"):
            translator = adapter.stream_translator(route.public_id, route.upstream_model, secret=provider.credential)
            return EventStream(_relay_stream(response, translator, provider.name), release=response.aclose)
        try:
            payload = await response.aread()
        finally:
            await response.aclose()
    except httpx.TransportError as exc:
        raise _transport_error(exc, provider.name) from exc
    content = adapter.chat_response(payload, route.public_id, route.upstream_model)
    return HttpResponse(content, content_type="application/json")


async def _relay_stream(
    response: UpstreamResponse, translator: StreamTranslator, provider: str
) -> AsyncGenerator[bytes]:
    """Relay events as they arrive. Cancellation (the client left) closes the upstream too."""
    splitter = EventSplitter()
    finished = False
    try:
        async for chunk in response.aiter_raw():
            out: list[bytes] = []
            for data in splitter.feed(chunk):
                if data == b"[DONE]":
                    finished = True
                    out.append(DONE)
                else:
                    out.extend(frame(piece) for piece in translator.feed(data))
            if out:
                yield b"".join(out)
        if not finished:
            raise UpstreamUnreachable(f"The upstream provider '{provider}' ended the stream before it was complete.")
    except httpx.TransportError as exc:
        logger.warning("stream from %s broke: %s", provider, exc.__class__.__name__)
        yield _transport_error(exc, provider).to_sse()
    except PorticoError as exc:
        logger.warning("stream from %s failed: %s", provider, exc.message)
        yield exc.to_sse()
    finally:
        await response.aclose()
