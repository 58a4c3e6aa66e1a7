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
"""

from __future__ import annotations

import asyncio

from django.http import HttpResponse

from gateway import routing
from gateway.accounting import Call, CallSession
from gateway.errors import InternalError, PorticoError
from gateway.extensions import Extensions
from gateway.fastpath import ClientGone
from gateway.relay import Whole, answer, attempt_upload
from gateway.routing_outcome import Trail, headers_of
from gateway.snapshot import Snapshot
from gateway.uploads import Upload
from gateway.validation import refuse_stream
from providers.facade import RouteInfo

_NO_WISHES = Extensions()


async def serve_upload(call: Call, snapshot: Snapshot, upload: Upload) -> HttpResponse:
    """Admit the call once, receive the rest of its upload, and answer from the first deployment that does."""
    session = CallSession(call, snapshot.billing)
    limit_headers = await session.admit()
    try:
        await upload.receive()
        # `stream` may come after the file, so it is read once the whole body is in; the SDKs send it as text.
        refuse_stream(upload.fields.get("stream", "").strip().lower() == "true")
        trail, seconds, send = Trail(), call.model.timeout, _sender(upload)
        if seconds is None:
            result, _ = await routing._run(call, snapshot, _NO_WISHES, trail, send)
        else:
            result, _ = await routing._run_within(call, snapshot, _NO_WISHES, trail, seconds, send)
        if not isinstance(result, Whole):  # an upload's answer is never a stream
            raise InternalError("The server had an error while processing your request.")
    except PorticoError as exc:
        exc.headers.update(headers_of(call))
        session.fail(exc)
        raise
    except (ClientGone, asyncio.CancelledError):
        session.abandon()
        raise
    return answer(session, result, {**limit_headers, **headers_of(call)})


def _sender(upload: Upload) -> routing.Send:
    """The loop's attempt for an upload: the spooled body, sent whole to one deployment."""

    async def send(call: Call, route: RouteInfo, **_: object) -> Whole:
        return await attempt_upload(call, route, upload)

    return send
