"""One attempt of a call on one deployment: a whole answer, or a stream opened up to its first event.

gateway.routing decides which deployments to try and in what order; this
module sends the request to one of them and hands back either `Whole` (the
answer read to its end) or `Opened` (a stream whose first translated event is
already in hand), or raises the error tree's UpstreamError family. Because a
stream is only handed back once its first event has arrived, anything that
goes wrong before the client has seen a byte can still be tried elsewhere.

After the first byte gateway.streaming carries the stream to its end. An
upstream silent for longer than the stall timeout, before the first event or
after it, has failed (gateway.recovery). Nothing an upstream sends reaches the
client before the provider's redactor has seen it: errors, stream events and
whole answers alike. No attempt finishes the call: its session (gateway.accounting) does.
"""

from __future__ import annotations

import asyncio
import dataclasses
import math
import re
from collections.abc import AsyncIterator, Callable, Mapping
from typing import Any

import httpx
import orjson
from django.conf import settings
from django.http import HttpResponse, HttpResponseBase

from billing.metering import usd
from gateway.accounting import Call, CallSession, counted_usage
from gateway.errors import InvalidRequest, UpstreamError, UpstreamTimeout, UpstreamUnreachable
from gateway.observability.clock import current as current_clock
from gateway.observability.tracing import state as tracing
from gateway.observability.tracing import traced_send
from gateway.recovery import NEVER, Continuation, Resumed, StallWatch, stall_error
from gateway.sse import frame
from gateway.uploads import Upload
from providers.adapters import bridge, wire
from providers.adapters.answers import whole_answer
from providers.adapters.base import Operation, StreamTranslator, Target, UnsupportedParameter, UpstreamRequest
from providers.adapters.embeddings import encode_embeddings
from providers.adapters.failures import FailedAnswer
from providers.adapters.framing import Splitter
from providers.facade import RouteInfo
from providers.http import UpstreamResponse, Upstreams

upstreams = Upstreams()

# How an attempt's end is reported (to the deployment stats and breakers): ok, and Portico's name for what failed.
Report = Callable[[bool, str], None]


@dataclasses.dataclass(slots=True)
class Whole:
    """A whole answer, read to its end and redacted."""

    content: bytes
    content_type: str
    cool_down: float = 0.0  # seconds the deployment's rate-limit headers say it is spent for
    body: dict[str, Any] | None = None  # `content` parsed, where the attempt already did (read once, not twice)


@dataclasses.dataclass(slots=True)
class Opened:
    """A stream whose first translated event (`first`, framed) has arrived; the rest is still upstream."""

    response: UpstreamResponse
    chunks: AsyncIterator[bytes]
    translator: StreamTranslator
    splitter: Splitter
    first: bytes
    cool_down: float = 0.0
    stall: float | None = None  # seconds of upstream silence that end the stream; None: never

    async def aclose(self) -> None:
        await self.response.aclose()


def transport_error(exc: httpx.TransportError, provider: str) -> UpstreamError:
    if isinstance(exc, httpx.TimeoutException):
        return UpstreamTimeout(f"The upstream provider '{provider}' did not answer in time.")
    return UpstreamUnreachable(f"The upstream provider '{provider}' could not be reached or dropped the connection.")


_DURATION = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h)")
_UNIT = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}


def _seconds(value: str | None) -> float:
    """OpenAI's reset durations ("1s", "6m0s", "20ms") or plain seconds; 0 for what cannot be read."""
    if not value:
        return 0.0
    try:
        seconds = float(value)
    except ValueError:
        seconds = sum(float(number) * _UNIT[unit] for number, unit in _DURATION.findall(value))
    return seconds if math.isfinite(seconds) and seconds > 0 else 0.0


def cool_down_of(status: int, headers: Mapping[str, str]) -> float:
    """How long a deployment asked to be left alone: Retry-After on a 429, or the reset of a spent request quota."""
    rest = 0.0
    if status == 429:
        ms = _seconds(headers.get("retry-after-ms"))
        rest = ms / 1000 if ms else _seconds(headers.get("retry-after"))
    if headers.get("x-ratelimit-remaining-requests") == "0":
        rest = max(rest, _seconds(headers.get("x-ratelimit-reset-requests")))
    return rest


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
    error = UpstreamError.from_failure(failure)
    # Some kinds say when to come back in the body (Gemini's RetryInfo): the adapter put it in the failure's headers.
    error.cool_down = max(
        cool_down_of(response.status_code, response.headers), cool_down_of(response.status_code, failure.headers)
    )
    return error


def target_of(route: RouteInfo) -> Target:
    return Target(route.provider, route.upstream_model, route.public_id, route.max_output_tokens)


def _bridged(call: Call, route: RouteInfo) -> bool:
    """Legacy completions go to chat when the provider has no /completions of its own."""
    if call.operation != "completions":
        return False
    provider = route.provider
    return "completions" not in provider.adapter.operations or not provider.serves_completions


def _build(call: Call, route: RouteInfo, target: Target, body: dict[str, Any]) -> tuple[Operation, UpstreamRequest]:
    adapter = route.provider.adapter
    try:
        if _bridged(call, route):
            return "chat", adapter.request("chat", target, bridge.chat_body(body))
        return call.operation, adapter.request(call.operation, target, dict(body))
    except UnsupportedParameter as exc:
        raise InvalidRequest(exc.message, param=exc.param, code="unsupported_parameter") from None


async def attempt(
    call: Call,
    route: RouteInfo,
    *,
    first_byte: float | None = None,
    stall: float | None = None,
    continuation: Continuation | None = None,
) -> Whole | Opened:
    """Send the call to `route`: its whole answer, or its stream once the first event is in.

    The first byte must come within `first_byte` seconds (None: the provider's own timeouts). A stream ends
    when its upstream is silent for `stall` seconds (None: PORTICO_STREAM_STALL_TIMEOUT); a `continuation`
    carries on a stream that broke on another deployment.
    """
    target = target_of(route)
    body = call.body if continuation is None else continuation.body
    operation, request = _build(call, route, target, body)
    if call.streamed:
        stall = stall or settings.PORTICO_STREAM_STALL_TIMEOUT or None
    # Up to the whole answer, or a stream's first event, the time is the upstream's, not Portico's.
    clock = current_clock()
    if clock is not None:
        clock.wait_begins()
    try:
        if first_byte is None:  # no timer to arm, and one coroutine less: the common case
            sent = await send(route, request)
            if call.streamed:
                return await open_stream(call, route, target, operation, sent, stall=stall, continuation=continuation)
            response: UpstreamResponse | Opened = sent
        else:
            try:
                async with asyncio.timeout(first_byte):
                    response = await _begin(call, route, target, operation, request, stall, continuation)
            except TimeoutError:
                raise UpstreamTimeout(
                    f"The upstream provider '{route.provider.name}' sent nothing within {first_byte:g} s."
                ) from None
        if isinstance(response, Opened):
            return response
        rest = cool_down_of(response.status_code, response.headers)
        payload = await read_whole(route, response)
    finally:
        if clock is not None:
            clock.wait_ends()
    call.upstream_id = wire.upstream_id(route.provider.adapter, payload)
    try:
        content, parsed = route.provider.adapter.answer(operation, target, payload)
        if _bridged(call, route):
            content, parsed = bridge.completion_from_chat(content), None
        if parsed is None:
            parsed = whole_answer(operation, content)
    except FailedAnswer as exc:
        raise UpstreamError.from_failure(exc.failure) from None
    except ValueError:
        # Not the answer asked for (see the adapters' `response`): the upstream's fault, which another may make good.
        raise UpstreamError(f"The upstream provider '{route.provider.name}' sent a malformed answer.") from None
    return Whole(content, "application/json", rest, parsed)


async def _begin(
    call: Call,
    route: RouteInfo,
    target: Target,
    operation: Operation,
    request: UpstreamRequest,
    stall: float | None,
    continuation: Continuation | None,
) -> UpstreamResponse | Opened:
    """Up to the first byte: the answer's headers, or a stream's first event."""
    response = await send(route, request)
    if call.streamed:
        return await open_stream(call, route, target, operation, response, stall=stall, continuation=continuation)
    return response


async def attempt_upload(call: Call, route: RouteInfo, upload: Upload, *, stall: float | None = None) -> Whole | Opened:
    """Stream the upload to `route`; the answer as JSON, or text/srt/vtt as sent, or for a streamed call its
    events opened up to the first (a break before it is this attempt's failure)."""
    target = target_of(route)
    request = route.provider.adapter.upload_request(
        call.operation, target, upload.body({"model": target.upstream_model}), upload.content_type
    )
    clock = current_clock()
    if clock is not None:
        clock.wait_begins()  # the upload is read from the client as it is sent: neither is Portico's time
    try:
        response = await send(route, request)
        if call.streamed:
            stall = stall or settings.PORTICO_STREAM_STALL_TIMEOUT or None
            return await open_stream(call, route, target, call.operation, response, stall=stall, continuation=None)
        payload = await read_whole(route, response)
    except UpstreamError:
        # Reading the client's body failed while it was being sent (too large, malformed, client gone).
        if upload.error is not None:
            raise upload.error from None
        raise
    finally:
        if clock is not None:
            clock.wait_ends()
    return Whole(payload, response.headers.get("content-type", "application/json"))


async def send(route: RouteInfo, request: UpstreamRequest) -> UpstreamResponse:
    """Send and return once the answer's headers are in; an error answer is raised as an UpstreamError."""
    provider = route.provider
    try:
        upstream = upstreams.get(provider).send
        # Tracing off (the default) costs a flag read, not a coroutine more per attempt.
        response = await (traced_send(upstream, route, request) if tracing.enabled else upstream(request))
    except httpx.TransportError as exc:
        raise transport_error(exc, provider.name) from exc
    if response.status_code >= 400:
        raise await _failure(route, response)
    return response


async def read_whole(route: RouteInfo, response: UpstreamResponse) -> bytes:
    """The whole answer, any secret it quotes redacted (one substring search per secret when it quotes none)."""
    try:
        return route.provider.redactor.bytes(await response.aread())
    except httpx.TransportError as exc:
        raise transport_error(exc, route.provider.name) from exc
    finally:
        await response.aclose()


async def open_stream(
    call: Call,
    route: RouteInfo,
    target: Target,
    operation: Operation,
    response: UpstreamResponse,
    *,
    stall: float | None,
    continuation: Continuation | None,
) -> Opened:
    """Read the stream up to its first translated event; a stream that breaks before it is this attempt's failure."""
    adapter = route.provider.adapter
    include_usage = bool((call.body.get("stream_options") or {}).get("include_usage"))
    translator: Any = adapter.stream_translator(
        operation, target, include_usage=include_usage, redactor=route.provider.redactor
    )
    if _bridged(call, route):
        translator = bridge.CompletionStream(translator)
    if continuation is not None:
        translator = Resumed(translator, continuation)
    splitter = adapter.splitter()
    chunks = response.aiter_raw()
    provider = route.provider.name
    watch = StallWatch(stall)
    clock = watch.clock
    try:
        watch.since = clock()
        async for chunk in chunks:
            watch.since = NEVER
            out = translate(splitter.feed(chunk), translator, call.outputs.append)
            if out or translator.done or translator.failed:
                call.upstream_id = getattr(translator, "upstream_id", "")
                return Opened(response, chunks, translator, splitter, out, cool_down_of(200, response.headers), stall)
            watch.since = clock()
    except httpx.TransportError as exc:
        await response.aclose()
        raise transport_error(exc, provider) from exc
    except ValueError:
        await response.aclose()
        raise UpstreamError(f"The upstream provider '{provider}' sent a malformed stream.") from None
    except asyncio.CancelledError:
        stalled = watch.stalled()
        await response.aclose()
        if stalled:
            raise stall_error(provider, stall) from None
        raise
    except BaseException:
        await response.aclose()
        raise
    finally:
        watch.close()
    try:
        tail = translate(splitter.flush(), translator, call.outputs.append)
    except ValueError:
        await response.aclose()
        raise UpstreamError(f"The upstream provider '{provider}' sent a malformed stream.") from None
    if tail:
        return Opened(response, chunks, translator, splitter, tail, stall=stall)
    await response.aclose()
    raise UpstreamUnreachable(f"The upstream provider '{provider}' ended the stream before it began.")


def answer(session: CallSession, whole: Whole, headers: Mapping[str, str]) -> HttpResponse:
    """A whole answer: usage noted, the call finished, its cost in `x-portico-cost`."""
    call, content, content_type = session.call, whole.content, whole.content_type
    body = whole.body
    if body is None and content[:1] == b"{" and "json" in content_type:
        body = orjson.loads(content)
    told = {"x-portico-upstream-id": call.upstream_id} if call.upstream_id else {}
    if isinstance(body, dict):
        call.usage = body.get("usage")
        if call.operation == "embeddings" and call.body.get("encoding_format") == "base64":
            # Some upstreams only give floats; the client asked for OpenAI's base64, so it gets it.
            body = encode_embeddings(body, "base64")
            content = orjson.dumps(body)
        if call.operation in wire.COUNTED_OPERATIONS:
            content = _usage_told(call, body, content, told)
    cost = session.close()
    response = HttpResponse(content, content_type=content_type)
    put_headers(response, headers)
    put_headers(response, {"x-portico-cost": usd(cost), **told})
    return response


def _usage_told(call: Call, body: dict[str, Any], content: bytes, told: dict[str, str]) -> bytes:
    """The answer with its usage as the client gets it; what else there is to tell goes in `told` (headers).

    A report that cannot be right (none, no prompt tokens, no completion tokens for an answer with
    content) is replaced by Portico's own count of the answer (`call.outputs`), which billing records
    too, flagged as counted. Cache creation has no field in OpenAI's usage: it goes in a header, and
    the call keeps the upstream's report for the ledger.
    """
    usage = call.usage
    if not wire.usage_is_plausible(usage, wrote_output=wire.wrote_output(content)):
        call.outputs.append(content)
        counted = counted_usage(call)
        body["usage"] = wire.usage_object(call.operation, counted.prompt_tokens, counted.completion_tokens)
        told["x-portico-usage"] = "counted"
    elif (creation := wire.cache_creation(usage)) is not None:
        body["usage"] = wire.client_usage(usage)
        told["x-portico-cache-creation-tokens"] = str(creation)
    else:
        return content
    return orjson.dumps(body)


def put_headers(response: HttpResponseBase, headers: Mapping[str, str]) -> None:
    """Set headers Portico wrote itself: printable ASCII names and values, by construction.

    Stored the way Django's `response[name] = value` stores them, without its
    per-header charset and newline checks (about a microsecond each, and every
    answer carries five or more of these). A value a client chose
    (`x-request-id`) is not Portico's own: it goes through `response[...]`.
    """
    store = response.headers._store
    for name, value in headers.items():
        store[name.lower()] = (name, value)


def translate(events: list[bytes], translator: StreamTranslator, keep: Callable[[bytes], None]) -> bytes:
    out = []
    for data in events:
        for piece in translator.feed(data):
            keep(piece)
            out.append(frame(piece))
    return b"".join(out)
