"""Server-sent events: framing ours. Splitting an upstream's stream is its kind's (providers/adapters/framing.py)."""

from __future__ import annotations

from collections.abc import AsyncGenerator, Awaitable, Callable

from django.http import StreamingHttpResponse

DONE = b"data: [DONE]\n\n"
STREAM_HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
STREAM_CONTENT_TYPE = "text/event-stream; charset=utf-8"


def frame(data: bytes) -> bytes:
    return b"data: " + data + b"\n\n"


class EventStream(StreamingHttpResponse):
    """An SSE answer whose source is closed on every exit, even one before its first event.

    Closing a generator that never started skips its `finally`; `aclose()` also calls
    `release` (closing the upstream answer), so a client that leaves at any moment frees
    the upstream connection.
    """

    def __init__(self, events: AsyncGenerator[bytes], release: Callable[[], Awaitable[None]]) -> None:
        super().__init__(events, content_type=STREAM_CONTENT_TYPE, headers=STREAM_HEADERS)
        self.events = events
        self._release = release

    async def aclose(self) -> None:
        try:
            await self.events.aclose()
        finally:
            await self._release()
