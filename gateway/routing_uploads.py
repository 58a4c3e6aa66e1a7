"""Uploads (audio transcriptions) through the routing loop: received whole, then sent to each deployment in turn.

The view reads a multipart upload up to its `model` field (gateway.uploads) to
find the public model. Once the call is admitted, the rest of the client's body
is received into the upload's spool (RAM up to 1 MiB, then a temporary file in
the system's temporary directory; never more than PORTICO_MAX_UPLOAD_BYTES, or
the client gets the same 413 as before) before any deployment is tried. Then
the loop of gateway.routing runs as for a JSON call, by the same rules (the
model's retry classes, breakers, caps, Retry-After rests, fallbacks, the
model's `timeout` as the deadline), and each attempt re-sends the upload from
the spool. The view closes the upload, and with it the temporary file, on
every exit.

Unlike a JSON call's, an upload's attempts have no first-byte timeout: a
transcription's first byte comes only once the upstream has heard the whole
file. Nor are ensembles or the routing extensions of a JSON body offered.

`stream=true` is served where every deployment's provider kind streams
transcriptions (gateway.intake.check, as for a JSON call): each attempt is then
opened up to its first event, as a chat stream's is, so a deployment that fails
before it is one the loop moves on from, and the events are relayed to the end
by gateway.streaming. Elsewhere it gets OpenAI's 400.
"""

from __future__ import annotations

import asyncio

from django.http import HttpResponse

from gateway import routing
from gateway.accounting import Call, CallSession
from gateway.errors import InternalError, PorticoError
from gateway.extensions import Extensions
from gateway.fastpath import ClientGone
from gateway.intake import check
from gateway.relay import Opened, Whole, answer, attempt_upload
from gateway.routing_outcome import Trail, headers_of
from gateway.snapshot import Snapshot
from gateway.sse import EventStream
from gateway.uploads import Upload
from providers.facade import RouteInfo

_NO_WISHES = Extensions()


async def serve_upload(call: Call, snapshot: Snapshot, upload: Upload) -> HttpResponse | EventStream:
    """Admit the call once, receive the rest of its upload, and answer from the first deployment that does."""
    session = CallSession(call, snapshot.billing)
    limit_headers = await session.admit()
    try:
        await upload.receive()
        # `stream` may come after the file, so it is read once the whole body is in; the SDKs send it as text.
        call.streamed = upload.fields.get("stream", "").strip().lower() == "true"
        # As a JSON call's: what its model must do, and what a fallback must do to be tried (routing's `capable`).
        call.body["stream"] = call.streamed
        check(call.model, call.operation, call.body)
        trail, seconds, sender = Trail(), call.model.timeout, _sender(upload)
        if seconds is None:
            result, tried = await routing._run(call, snapshot, _NO_WISHES, trail, sender)
        else:
            result, tried = await routing._run_within(call, snapshot, _NO_WISHES, trail, seconds, sender)
        if isinstance(result, Opened) != call.streamed:  # a stream exactly when one was asked for
            raise InternalError("The server had an error while processing your request.")
    except PorticoError as exc:
        exc.headers.update(headers_of(call))
        session.fail(exc)
        raise
    except (ClientGone, asyncio.CancelledError):
        session.abandon()
        raise
    headers = {**limit_headers, **headers_of(call)}
    if isinstance(result, Opened):
        return routing._stream(session, result, tried, headers)
    return answer(session, result, headers)


def _sender(upload: Upload) -> routing.Send:
    """The loop's attempt for an upload: the spooled body, sent whole to one deployment."""

    async def attempt(call: Call, route: RouteInfo, *, stall: float | None = None, **_: object) -> Whole | Opened:
        return await attempt_upload(call, route, upload, stall=stall)

    return attempt
