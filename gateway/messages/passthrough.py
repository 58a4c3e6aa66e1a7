"""Anthropic-kind deployments: the Messages request sent as it came, the answer relayed as it came.

Only the model is renamed, both ways: the deployment's upstream model going out,
the public id coming back (in the message, or the stream's `message_start`). The
provider's credential, version and extra headers go out as for a translated call
(providers.adapters.anthropic.headers_for); the client's `anthropic-version` is
kept unless the provider names its own, and its `anthropic-beta` flags join any
the provider sends. The usage Anthropic reports becomes OpenAI's usage object, by
the outbound adapter's own reading, which the limits and the ledger settle with.

An attempt keeps the relay's rules (gateway.relay): an error answer is raised as
an UpstreamError, a stream is handed back only once its first event is in, the
first byte must come within `first_byte`, and nothing reaches the client before
the provider's redactor has seen it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import httpx
import orjson
from django.conf import settings

from gateway.accounting import Call
from gateway.errors import UpstreamError, UpstreamTimeout, UpstreamUnreachable
from gateway.recovery import NEVER, StallWatch, stall_error
from gateway.relay import Opened, Whole, cool_down_of, read_whole, send, translate, transport_error
from providers.adapters.anthropic import headers_for
from providers.adapters.anthropic.responses import openai_usage
from providers.adapters.base import UpstreamRequest
from providers.adapters.framing import EventSplitter
from providers.facade import RouteInfo
from providers.http import UpstreamResponse
from providers.redaction import Redactor

# Nearly every event is a delta: recognised by its first bytes, it is relayed without a parse.
_DELTA = b'{"type":"content_block_delta"'


@dataclass(frozen=True, slots=True)
class Outbound:
    """What a pass-through request sends: the client's body and its Anthropic headers."""

    body: dict[str, Any]
    version: str = ""
    beta: str = ""


def upstream_request(route: RouteInfo, outbound: Outbound, path: str = "/messages") -> UpstreamRequest:
    provider = route.provider
    headers = headers_for(provider)
    if outbound.version and not provider.api_version:
        headers["anthropic-version"] = outbound.version
    if outbound.beta:
        # The provider's extra headers may name flags too, in any case of the header's name.
        named = [name for name in headers if name.lower() == "anthropic-beta"]
        flags = [headers.pop(name) for name in named] + [outbound.beta]
        headers["anthropic-beta"] = ",".join(flags)
    body = {**outbound.body, "model": route.upstream_model}
    return UpstreamRequest("POST", f"{provider.base_url}{path}", headers, orjson.dumps(body))


class AnthropicEvents:
    """The pass-through's stream translator: events relayed as sent, but the model renamed and usage noted."""

    __slots__ = ("_anthropic_usage", "done", "failed", "public_model", "redactor", "usage")

    def __init__(self, public_model: str, redactor: Redactor) -> None:
        self.public_model = public_model
        self.redactor = redactor
        self.done = False
        self.failed = False
        self.usage: dict[str, Any] | None = None
        self._anthropic_usage: dict[str, Any] = {}

    def feed(self, event: bytes) -> Iterable[bytes]:
        # Text and tool input may quote a secret as errors can: redacted before anything else.
        event = self.redactor.bytes(event)
        if event.startswith(_DELTA):
            return (event,)
        data = orjson.loads(event)
        kind = data.get("type") if isinstance(data, dict) else None
        if kind == "message_start":
            message = data.get("message") or {}
            message["model"] = self.public_model
            self._count(message.get("usage"))
            return (orjson.dumps(data),)
        if kind == "message_delta":
            self._count(data.get("usage"))
        elif kind == "message_stop":
            self.done = True
        elif kind == "error":
            self.failed = True
            return (orjson.dumps(self.redactor.deep(data)),)
        return (event,)

    def _count(self, usage: Any) -> None:
        if isinstance(usage, dict):
            # message_delta's counts are totals so far: they replace message_start's.
            self._anthropic_usage.update((key, value) for key, value in usage.items() if value is not None)
        self.usage = openai_usage(self._anthropic_usage)


async def attempt(
    call: Call, route: RouteInfo, outbound: Outbound, *, first_byte: float | None = None, stall: float | None = None
) -> Whole | Opened:
    """Send the request as it came to `route`: its whole answer (usage noted on the call), or its opened stream."""
    request = upstream_request(route, outbound)
    if call.streamed:
        stall = stall or settings.PORTICO_STREAM_STALL_TIMEOUT or None
    if first_byte is None:
        begun = await _begin(call, route, request, stall)
    else:
        try:
            async with asyncio.timeout(first_byte):
                begun = await _begin(call, route, request, stall)
        except TimeoutError:
            raise UpstreamTimeout(
                f"The upstream provider '{route.provider.name}' sent nothing within {first_byte:g} s."
            ) from None
    if isinstance(begun, Opened):
        return begun
    rest = cool_down_of(begun.status_code, begun.headers)
    payload = await read_whole(route, begun)
    try:
        message = orjson.loads(payload)
        message["model"] = route.public_id
        call.usage = openai_usage(message.get("usage") or {})
    except (orjson.JSONDecodeError, TypeError):
        raise UpstreamError(f"The upstream provider '{route.provider.name}' sent a malformed answer.") from None
    return Whole(orjson.dumps(message), "application/json", rest)


async def _begin(
    call: Call, route: RouteInfo, request: UpstreamRequest, stall: float | None
) -> UpstreamResponse | Opened:
    response = await send(route, request)
    if call.streamed:
        return await _open(call, route, response, stall)
    return response


async def _open(call: Call, route: RouteInfo, response: UpstreamResponse, stall: float | None) -> Opened:
    """Read the stream up to its first event; a stream that breaks before it is this attempt's failure."""
    translator = AnthropicEvents(route.public_id, route.provider.redactor)
    splitter = EventSplitter()
    chunks = response.aiter_raw()
    provider = route.provider.name
    watch = StallWatch(stall)
    opened = False
    try:
        watch.since = watch.clock()
        async for chunk in chunks:
            watch.since = NEVER
            out = translate(splitter.feed(chunk), translator, call.outputs.append)
            if out or translator.done or translator.failed:
                opened = True
                return Opened(response, chunks, translator, splitter, out, cool_down_of(200, response.headers), stall)
            watch.since = watch.clock()
    except httpx.TransportError as exc:
        raise transport_error(exc, provider) from exc
    except ValueError:
        raise UpstreamError(f"The upstream provider '{provider}' sent a malformed stream.") from None
    except asyncio.CancelledError:
        if watch.stalled():
            raise stall_error(provider, stall) from None
        raise
    finally:
        watch.close()
        if not opened:
            await response.aclose()
    raise UpstreamUnreachable(f"The upstream provider '{provider}' ended the stream before it began.")
