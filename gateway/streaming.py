"""A stream from its first event to its end: relayed, watched for stalls, and carried on if it breaks.

gateway.relay opens a stream on one deployment up to its first event;
`relay_stream` takes it from there. Trouble after the first byte (a dropped
connection, the upstream's own error event, a malformed event, an upstream
silent for the stall timeout) ends the stream with an error frame, unless the
model has mid-stream recovery: then `resume` (gateway.routing_resume) opens the stream
on another deployment with what was relayed as an assistant prefix, and the
client reads on as if nothing happened (gateway.recovery).

Watching for stalls adds to each event a clock read and two attribute
stores, never a timer of its own (see gateway.recovery.StallWatch); a stream
that does not break pays nothing else for recovery.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncGenerator, Awaitable, Callable

import httpx
import orjson

from gateway.accounting import Call, CallSession, counted_usage
from gateway.errors import PorticoError, UpstreamError, UpstreamUnreachable
from gateway.recovery import NEVER, Carry, Continuation, StallWatch, held_error, stall_error
from gateway.relay import Opened, Report, translate, transport_error
from gateway.sse import DONE, frame
from providers.adapters.base import StreamTranslator

logger = logging.getLogger(__name__)

# Mid-stream recovery: given why the stream broke and how to carry it on, another deployment's stream
# (opened up to its first event) and how to report that attempt's end; None if there is none to try.
Resume = Callable[[PorticoError, Continuation], Awaitable[tuple[Opened, Report] | None]]


async def relay_stream(
    session: CallSession, opened: Opened, report: Report, resume: Resume | None = None
) -> AsyncGenerator[bytes]:
    """Relay the stream from its first event on; cancellation (the client left) closes the upstream too.

    One loop over every deployment the stream runs on, with the relaying inline,
    hence a function longer than most: a nested generator would cost every event.
    """
    call, outputs = session.call, session.call.outputs
    segment, end, carry = opened, report, Carry()
    watch = StallWatch(opened.stall)
    clock, never, ok, why = watch.clock, NEVER, False, ""
    try:
        if opened.first:
            call.first_token = time.monotonic()
        while True:  # once per deployment: the first, then each that carries the stream on
            translator, splitter, provider = segment.translator, segment.splitter, call.route.provider.name
            error, held = None, b""
            try:
                # The event that opened the stream, which may hold the upstream's error already.
                out, held = held_error(segment.first) if translator.failed and resume else (segment.first, b"")
                if out:
                    yield out
                if not held:
                    watch.since = clock()
                    async for chunk in segment.chunks:
                        watch.since = never
                        out = translate(splitter.feed(chunk), translator, outputs.append)
                        if resume is not None and translator.failed:
                            out, held = held_error(out)  # another deployment may yet take the error's place
                        if out:
                            yield out
                        if held:
                            break
                        watch.since = clock()
                    watch.since = never
                    if not held and (tail := translate(splitter.flush(), translator, outputs.append)):
                        yield tail
                error = _ending(translator, provider)
            except httpx.TransportError as exc:
                error = transport_error(exc, provider)
            except ValueError:
                error = UpstreamError(f"The upstream provider '{provider}' sent a malformed stream.")
            except PorticoError as exc:
                error = exc
            except asyncio.CancelledError:
                if not watch.stalled():
                    raise
                error = stall_error(provider, segment.stall)
            if error is None:
                break
            logger.warning("stream from %s failed: %s", provider, error.classification)
            why = "upstream_error_event" if translator.failed else error.classification
            end(False, why)
            end = _reported
            carried_on = await _carry_on(call, error, resume, carry) if resume is not None else None
            if carried_on is None:
                call.fail(error)
                if last := (held if translator.failed else error.to_sse()):
                    yield last
                return
            await segment.aclose()
            segment, end = carried_on
            watch.restart(segment.stall)
        ok = True
        yield _finish(session, segment.translator)
    except (GeneratorExit, asyncio.CancelledError):
        ok = True  # the client left: nothing the deployment did wrong
        if not segment.translator.done:
            call.disconnected = True
        raise
    finally:
        watch.close()
        if segment.translator.usage is not None:
            call.usage = segment.translator.usage
        await segment.aclose()
        end(ok, why)
        session.close()


def _ending(translator: StreamTranslator, provider: str) -> PorticoError | None:
    """How a stream that ran out ended: None if complete, else the failure it was."""
    if translator.failed:
        # The upstream's own error event has been relayed (or is held back for a continuation).
        return UpstreamError(f"The upstream provider '{provider}' failed mid-stream.")
    if not translator.done:
        return UpstreamUnreachable(f"The upstream provider '{provider}' ended the stream before it was complete.")
    return None


async def _carry_on(call: Call, error: PorticoError, resume: Resume, carry: Carry) -> tuple[Opened, Report] | None:
    """Another deployment's stream to carry on with, if what was relayed can be carried on and one answers."""
    continuation = carry.continuation(call)
    if continuation is None:
        return None  # a tool call, a finish, several choices: a continuation could not join it seamlessly
    return await resume(error, continuation)


def _reported(ok: bool, why: str) -> None:
    """The report of an attempt whose end was already reported."""


def _finish(session: CallSession, translator: StreamTranslator) -> bytes:
    """The end of a complete stream: the usage chunk if the client asked and the upstream gave none, and [DONE].

    The call is finished (limits settled) before the client can see the end and send its next request.
    """
    call = session.call
    tail = b""
    if translator.usage is None and (call.body.get("stream_options") or {}).get("include_usage"):
        tail = frame(_counted_usage_chunk(call))
    if translator.usage is not None:
        call.usage = translator.usage
    session.close()
    return tail + DONE


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
