"""Server-sent events: splitting an upstream byte stream into events, and framing ours."""

from __future__ import annotations

from collections.abc import AsyncGenerator, Awaitable, Callable

from django.http import StreamingHttpResponse

DONE = b"data: [DONE]\n\n"
STREAM_HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
STREAM_CONTENT_TYPE = "text/event-stream; charset=utf-8"


def frame(data: bytes) -> bytes:
    return b"data: " + data + b"\n\n"


class EventSplitter:
    """Feed raw bytes as they arrive; get back the `data` of every event completed so far.

    Events end with a blank line; lines may end in CRLF or LF. Comments, `event:`,
    `id:` and `retry:` lines are dropped: an OpenAI stream carries all it says in `data`.
    """

    def __init__(self) -> None:
        self._buffer = b""

    def feed(self, chunk: bytes) -> list[bytes]:
        buffer = self._buffer + chunk
        carry = b""
        if b"\r" in buffer:
            if buffer.endswith(b"\r"):
                # Possibly the first half of a CRLF still in flight: keep it for the next chunk.
                buffer, carry = buffer[:-1], b"\r"
            buffer = buffer.replace(b"\r\n", b"\n")
        *complete, rest = buffer.split(b"\n\n")
        self._buffer = rest + carry
        events = []
        for block in complete:
            data = [line[5:].removeprefix(b" ") for line in block.split(b"\n") if line.startswith(b"data:")]
            if data:
                events.append(b"\n".join(data))
        return events

    @property
    def pending(self) -> bytes:
        return self._buffer


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


class LineSplitter:
    """Feed raw bytes of a newline-delimited JSON stream; get back every complete, non-empty line."""

    def __init__(self) -> None:
        self._buffer = b""

    def feed(self, chunk: bytes) -> list[bytes]:
        *complete, self._buffer = (self._buffer + chunk).split(b"\n")
        return [line.strip() for line in complete if line.strip()]

    def flush(self) -> list[bytes]:
        """The last line, if the stream ended without a newline after it."""
        rest, self._buffer = self._buffer.strip(), b""
        return [rest] if rest else []
