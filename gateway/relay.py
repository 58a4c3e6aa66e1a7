"""Forwarding a request to its provider and relaying the answer, whole or streamed.

Upstream trouble becomes the error tree's UpstreamError family: before the
first byte as an HTTP error answer, after it as an SSE error frame. Nothing an
upstream sends reaches the client before the provider's redactor has seen it:
errors, stream events and whole answers alike. Every
call is admitted against its limits first and finished (settled, recorded
in the ledger) exactly once, whichever way it ends.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import time
from collections.abc import AsyncGenerator, Callable, Iterator
from typing import Any

import httpx
import orjson
from django.http import HttpResponse

from billing.facade import BillingSnapshot
from billing.metering import usd
from gateway.accounting import Call, admit, counted_usage, finish
from gateway.errors import InvalidRequest, PorticoError, UpstreamError, UpstreamTimeout, UpstreamUnreachable
from gateway.sse import DONE, EventSplitter, EventStream, LineSplitter, frame
from gateway.uploads import Upload
from providers.adapters import bridge
from providers.adapters.base import Operation, StreamTranslator, Target, UnsupportedParameter, UpstreamRequest
from providers.adapters.embeddings import encode_embeddings
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
    failure = provider.adapter.failure(response.status_code, payload, response.headers, redactor=provider.redactor)
    if route.upstream_model in failure.message and route.upstream_model != route.public_id:
        # An upstream's message names its own model ("model 'llama3.2' not found"); the client knows the public one.
        failure = dataclasses.replace(failure, message=failure.message.replace(route.upstream_model, route.public_id))
    return UpstreamError.from_failure(failure)


def target_of(route: RouteInfo) -> Target:
    return Target(route.provider, route.upstream_model, route.public_id, route.max_output_tokens)


def _bridged(call: Call) -> bool:
    """Legacy completions go to chat when the provider has no /completions of its own."""
    if call.operation != "completions":
        return False
    provider = call.route.provider
    return "completions" not in provider.adapter.operations or not provider.serves_completions


def _build(call: Call, target: Target) -> tuple[Operation, UpstreamRequest]:
    adapter = call.route.provider.adapter
    try:
        if _bridged(call):
            return "chat", adapter.request("chat", target, bridge.chat_body(call.body))
        return call.operation, adapter.request(call.operation, target, dict(call.body))
    except UnsupportedParameter as exc:
        raise InvalidRequest(exc.message, param=exc.param, code="unsupported_parameter") from None


@contextlib.contextmanager
def accounted(call: Call, billing: BillingSnapshot) -> Iterator[None]:
    """Finish a call that fails or is abandoned before its answer is made; the answer finishes it otherwise."""
    try:
        yield
    except PorticoError as exc:
        call.fail(exc)
        finish(call, billing)
        raise
    except asyncio.CancelledError:
        # The client left before the answer began: its concurrency slot and reservations are released all the same.
        call.disconnected = True
        finish(call, billing)
        raise


async def serve(call: Call, billing: BillingSnapshot) -> HttpResponse | EventStream:
    """Admit, forward and account for a JSON request; errors are recorded, then raised for the error handler."""
    with accounted(call, billing):
        headers = await admit(call, billing)
        target = target_of(call.route)
        operation, request = _build(call, target)
        response = await _forward(call, billing, target, operation, request)
    for name, value in headers.items():
        response[name] = value
    return response


async def send(call: Call, request: UpstreamRequest) -> UpstreamResponse:
    """Send and return once the answer's headers are in; an error answer is raised as an UpstreamError."""
    provider = call.route.provider
    try:
        response = await upstreams.get(provider).send(request)
    except httpx.TransportError as exc:
        raise _transport_error(exc, provider.name) from exc
    if response.status_code >= 400:
        raise await _failure(call.route, response)
    return response


async def read_whole(call: Call, response: UpstreamResponse) -> bytes:
    """The whole answer, any secret it quotes redacted (one substring search per secret when it quotes none)."""
    try:
        return call.route.provider.redactor.bytes(await response.aread())
    except httpx.TransportError as exc:
        raise _transport_error(exc, call.route.provider.name) from exc
    finally:
        await response.aclose()


async def _forward(
    call: Call, billing: BillingSnapshot, target: Target, operation: Operation, request: UpstreamRequest
) -> HttpResponse | EventStream:
    adapter = call.route.provider.adapter
    response = await send(call, request)
    if call.streamed:
        include_usage = bool((call.body.get("stream_options") or {}).get("include_usage"))
        translator: Any = adapter.stream_translator(
            operation, target, include_usage=include_usage, redactor=call.route.provider.redactor
        )
        if _bridged(call):
            translator = bridge.CompletionStream(translator)
        events = _relay_stream(call, billing, response, translator, adapter.stream_format)

        async def release() -> None:
            if not call.finished:
                call.disconnected = True  # the answer was dropped before its stream began
            await response.aclose()
            finish(call, billing)

        return EventStream(events, release=release)
    payload = await read_whole(call, response)
    content = adapter.response(operation, target, payload)
    if _bridged(call):
        content = bridge.completion_from_chat(content)
    return answer(call, billing, content)


async def serve_upload(call: Call, billing: BillingSnapshot, upload: Upload) -> HttpResponse:
    """Admit, stream the upload to the provider, account for the answer (JSON, or text/srt/vtt as sent)."""
    with accounted(call, billing):
        headers = await admit(call, billing)
        target = target_of(call.route)
        adapter = call.route.provider.adapter
        request = adapter.upload_request(
            call.operation, target, upload.body({"model": target.upstream_model}), upload.content_type
        )
        try:
            response = await send(call, request)
            payload = await read_whole(call, response)
        except UpstreamError:
            # Reading the client's body failed while it was being sent (too large, malformed, client gone).
            if upload.error is not None:
                raise upload.error from None
            raise
        content_type = response.headers.get("content-type", "application/json")
        result = answer(call, billing, payload, content_type=content_type)
    for name, value in headers.items():
        result[name] = value
    return result


def answer(
    call: Call, billing: BillingSnapshot, content: bytes, *, content_type: str = "application/json"
) -> HttpResponse:
    """A whole answer: usage noted, the call finished, its cost in `x-portico-cost`."""
    body = orjson.loads(content) if content[:1] == b"{" and "json" in content_type else None
    if isinstance(body, dict):
        call.usage = body.get("usage")
        if call.operation == "embeddings" and call.body.get("encoding_format") == "base64":
            # Some upstreams only give floats; the client asked for OpenAI's base64, so it gets it.
            body = encode_embeddings(body, "base64")
            content = orjson.dumps(body)
    cost = finish(call, billing)
    response = HttpResponse(content, content_type=content_type)
    response["x-portico-cost"] = usd(cost)
    return response


async def _relay_stream(
    call: Call,
    billing: BillingSnapshot,
    response: UpstreamResponse,
    translator: StreamTranslator,
    stream_format: str,
) -> AsyncGenerator[bytes]:
    """Relay events as they arrive. Cancellation (the client left) closes the upstream too."""
    splitter: EventSplitter | LineSplitter = EventSplitter() if stream_format == "sse" else LineSplitter()
    provider = call.route.provider.name
    outputs = call.outputs
    try:
        async for chunk in response.aiter_raw():
            out = _translate(splitter.feed(chunk), translator, outputs.append)
            if out:
                if call.first_token is None:
                    call.first_token = time.monotonic()
                yield out
        if isinstance(splitter, LineSplitter):
            tail = _translate(splitter.flush(), translator, outputs.append)
            if tail:
                yield tail
        if translator.failed:
            # The upstream's own error event has been relayed; the stream ends with it.
            call.fail(UpstreamError(f"The upstream provider '{provider}' failed mid-stream."))
        elif not translator.done:
            raise UpstreamUnreachable(f"The upstream provider '{provider}' ended the stream before it was complete.")
        else:
            if translator.usage is None and (call.body.get("stream_options") or {}).get("include_usage"):
                yield frame(_counted_usage_chunk(call))
            # Finished (limits settled) before the client can see the end and send its next request.
            if translator.usage is not None:
                call.usage = translator.usage
            finish(call, billing)
            yield DONE
    except httpx.TransportError as exc:
        logger.warning("stream from %s broke: %s", provider, exc.__class__.__name__)
        error = _transport_error(exc, provider)
        call.fail(error)
        yield error.to_sse()
    except ValueError:
        logger.warning("stream from %s sent an event that could not be read", provider)
        error = UpstreamError(f"The upstream provider '{provider}' sent a malformed stream.")
        call.fail(error)
        yield error.to_sse()
    except PorticoError as exc:
        logger.warning("stream from %s failed: %s", provider, exc.message)
        call.fail(exc)
        yield exc.to_sse()
    except (GeneratorExit, asyncio.CancelledError):
        if not translator.done:
            call.disconnected = True
        raise
    finally:
        if translator.usage is not None:
            call.usage = translator.usage
        await response.aclose()
        finish(call, billing)


def _counted_usage_chunk(call: Call) -> bytes:
    """The usage chunk the client asked for, from Portico's own count, when the upstream could not give one."""
    last = orjson.loads(call.outputs[-1]) if call.outputs else {}
    usage = counted_usage(call)
    return orjson.dumps(
        {
            "id": last.get("id"),
            "object": last.get("object") or "chat.completion.chunk",
            "created": last.get("created"),
            "model": call.route.public_id,
            "choices": [],
            "usage": {
                "prompt_tokens": usage.prompt_tokens,
                "completion_tokens": usage.completion_tokens,
                "total_tokens": usage.total,
            },
        }
    )


def _translate(events: list[bytes], translator: StreamTranslator, keep: Callable[[bytes], None]) -> bytes:
    out = []
    for data in events:
        for piece in translator.feed(data):
            keep(piece)
            out.append(frame(piece))
    return b"".join(out)
