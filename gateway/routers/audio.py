"""POST /v1/audio/transcriptions: the multipart upload is received, then sent to the model's deployments in turn.

The answer comes whole, or, with `stream=true`, as OpenAI's `transcript.text.*` events (gateway.routing_uploads).
"""

from __future__ import annotations

from collections.abc import AsyncIterator

from django.conf import settings
from django.http import HttpRequest, HttpResponse
from ninja import Router

from gateway.intake import find_model, grant_of, new_call, require_operation
from gateway.routers.openapi import TRANSCRIPTION_REQUEST, documented
from gateway.routing_uploads import serve_upload
from gateway.snapshot import store
from gateway.sse import EventStream
from gateway.uploads import read_upload, receive_chunks

router = Router(tags=["audio"])


async def _whole(body: bytes) -> AsyncIterator[bytes]:
    yield body


@router.post(
    "/audio/transcriptions",
    summary="Transcribe audio",
    url_name="audio-transcriptions",
    openapi_extra=documented(TRANSCRIPTION_REQUEST, media_type="multipart/form-data"),
)
async def create_transcription(request: HttpRequest) -> HttpResponse | EventStream:
    receive = getattr(request, "asgi_receive", None)
    # The fast path hands over the unread body; Django's own handler (PORTICO_FAST_PATH=false) has read it already.
    chunks = receive_chunks(receive) if receive is not None else _whole(request.body)
    content_type = request.META.get("CONTENT_TYPE", "")
    upload = await read_upload(chunks, content_type, limit=settings.PORTICO_MAX_UPLOAD_BYTES)
    try:
        snapshot = await store.get()
        model = find_model(snapshot, grant_of(request), upload.fields["model"])
        require_operation(model, "transcriptions")
        call = new_call(request, model, "transcriptions", dict(upload.fields))
        return await serve_upload(call, snapshot, upload)
    finally:
        await upload.aclose()
