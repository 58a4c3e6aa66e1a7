"""A stream served by the routing loop, re-framed as Anthropic's event stream.

gateway.streaming relays a stream as OpenAI-style SSE frames (`data: ...`, then
`data: [DONE]`), whatever the payloads are. Here each frame becomes an
Anthropic event, with the `event:` line Anthropic's SDKs dispatch on:

    pass-through payloads (Anthropic's own events)  framed under their own type
    OpenAI chunks (a translated deployment)         turned into events (gateway.messages.events)
    an OpenAI error frame (the relay's or the        an `error` event (gateway.messages.errors);
    upstream's)                                      nothing follows it
    [DONE]                                           the closing events of a translated stream

The inner stream is closed with the outer one, so a client that leaves closes
the upstream and finishes the call exactly as on the OpenAI surface.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator

import orjson

from gateway.messages.errors import error_from_frame
from gateway.messages.events import ChunkEvents, frame_event, framed
from gateway.sse import EventStream

_DATA = b"data: "
_DONE = b"[DONE]"
_ERROR = b'{"error"'
_DELTA = b'{"type":"content_block_delta"'


def reframed(inner: EventStream, chunks: ChunkEvents | None) -> EventStream:
    """The Anthropic stream of `inner`: pass-through if `chunks` is None, else translated by it."""
    events = _passed(inner.events) if chunks is None else _translated(inner.events, chunks)
    stream = EventStream(events, release=inner.aclose)
    for name, value in inner.headers.items():
        stream.headers[name] = value
    return stream


def _payloads(piece: bytes) -> list[bytes]:
    # The relay yields whole frames, one or several at a time.
    return [frame[len(_DATA) :] for frame in piece.split(b"\n\n") if frame.startswith(_DATA)]


async def _passed(frames: AsyncGenerator[bytes]) -> AsyncGenerator[bytes]:
    async for piece in frames:
        out = []
        for payload in _payloads(piece):
            if payload.startswith(_DELTA):
                out.append(framed(b"content_block_delta", payload))
            elif payload.startswith(_ERROR):
                out.append(frame_event(error_from_frame(payload)))
            elif payload != _DONE:
                kind = orjson.loads(payload).get("type") or "message"
                out.append(framed(str(kind).encode(), payload))
        if out:
            yield b"".join(out)


async def _translated(frames: AsyncGenerator[bytes], chunks: ChunkEvents) -> AsyncGenerator[bytes]:
    async for piece in frames:
        events = []
        for payload in _payloads(piece):
            if payload == _DONE:
                events += chunks.end()
            elif payload.startswith(_ERROR):
                events.append(error_from_frame(payload))
            else:
                events += chunks.feed(orjson.loads(payload))
        if events:
            yield b"".join(frame_event(event) for event in events)
