"""Deployments whose server has OpenAI's /v1/responses of its own: the request is sent there as is.

Only `openai`-kind providers qualify, and only those declared to serve it
(the option `serves_responses`, see providers/adapters/openai/options.py and docs/responses.md): the
request goes to `{base_url}/responses` with the deployment's upstream model, and
the answer or stream comes back with the public model id in its place and the
provider's secrets redacted, like every other upstream answer. Its usage is
read in chat's words, which is what the ledger and the limits record.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from typing import Any

import httpx
import orjson
from django.conf import settings

from gateway.accounting import Call
from gateway.errors import UpstreamError, UpstreamTimeout, UpstreamUnreachable
from gateway.relay import Opened, Whole, cool_down_of, read_whole, send, translate, transport_error
from gateway.responses.answers import usage_for_chat
from providers.adapters.base import UpstreamRequest
from providers.adapters.framing import EventSplitter
from providers.adapters.openai import error_event, headers_for
from providers.adapters.wire import model_rewriter, rewrite_model
from providers.facade import ProviderInfo, RouteInfo
from providers.redaction import NO_SECRETS, Redactor

_FINAL = (b"response.completed", b"response.incomplete")


def serves_responses(provider: ProviderInfo) -> bool:
    if provider.kind != "openai":
        return False
    return bool(provider.options.get("serves_responses"))


def upstream_request(route: RouteInfo, body: dict[str, Any]) -> UpstreamRequest:
    provider = route.provider
    payload = orjson.dumps({**body, "model": route.upstream_model})
    return UpstreamRequest("POST", f"{provider.base_url}/responses", headers_for(provider), payload)


class ResponsesPassThrough:
    """A Responses stream relayed as is: the model renamed, secrets redacted, its end and usage noted."""

    __slots__ = ("done", "failed", "redactor", "rewrite", "usage")

    def __init__(self, public_model: str, redactor: Redactor = NO_SECRETS) -> None:
        self.rewrite = model_rewriter(public_model)
        self.redactor = redactor
        self.done = False
        self.failed = False
        self.usage: dict[str, Any] | None = None

    def feed(self, event: bytes) -> Iterable[bytes]:
        if event == b"[DONE]":
            return ()
        event = self.redactor.bytes(event)
        parsed = orjson.loads(event)  # not JSON: orjson.JSONDecodeError, a ValueError, which ends the stream
        kind = parsed.get("type") if isinstance(parsed, dict) else None
        if not isinstance(kind, str):
            raise ValueError("not a Responses stream event")
        if kind in ("error", "response.failed"):
            self.failed = True
            return (error_event(event, self.redactor),)
        if kind.encode() in _FINAL:
            self.done = True
            response = parsed.get("response")
            self.usage = usage_for_chat(response.get("usage") if isinstance(response, dict) else None)
        return (self.rewrite(event),)


async def attempt(
    call: Call, route: RouteInfo, body: dict[str, Any], *, first_byte: float | None, stall: float | None
) -> Whole | Opened:
    """The request on `route`'s own /responses: the whole answer, or the stream once its first event is in."""
    request = upstream_request(route, body)
    try:
        async with asyncio.timeout(first_byte):
            response = await send(route, request)
            if call.streamed:
                return await _open(route, response, call, stall or settings.PORTICO_STREAM_STALL_TIMEOUT or None)
    except TimeoutError:
        raise UpstreamTimeout(
            f"The upstream provider '{route.provider.name}' sent nothing within {first_byte:g} s."
        ) from None
    rest = cool_down_of(response.status_code, response.headers)
    return Whole(rewrite_model(await read_whole(route, response), route.public_id), "application/json", rest)


async def _open(route: RouteInfo, response: Any, call: Call, stall: float | None) -> Opened:
    translator = ResponsesPassThrough(route.public_id, route.provider.redactor)
    splitter, chunks, provider = EventSplitter(), response.aiter_raw(), route.provider.name
    try:
        async for chunk in chunks:
            out = translate(splitter.feed(chunk), translator, call.outputs.append)
            if out or translator.done or translator.failed:
                return Opened(response, chunks, translator, splitter, out, cool_down_of(200, response.headers), stall)
    except httpx.TransportError as exc:
        await response.aclose()
        raise transport_error(exc, provider) from exc
    except ValueError:
        await response.aclose()
        raise UpstreamError(f"The upstream provider '{provider}' sent a malformed stream.") from None
    except BaseException:
        await response.aclose()
        raise
    await response.aclose()
    raise UpstreamUnreachable(f"The upstream provider '{provider}' ended the stream before it began.")
