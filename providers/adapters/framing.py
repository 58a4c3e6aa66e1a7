"""Splitting an upstream byte stream into the events its kind frames it in: SSE or NDJSON.

Each kind's adapter picks its splitter (`Adapter.splitter()`), so a kind with another framing
brings its own class here rather than a branch in the relay. Every splitter is fed raw bytes as
they arrive and returns the events completed so far; `flush()` hands back what a stream left
unterminated when it ended.
"""

from __future__ import annotations

from typing import Protocol

__all__ = ["EventSplitter", "LineSplitter", "Splitter"]


class Splitter(Protocol):
    def feed(self, chunk: bytes) -> list[bytes]: ...

    def flush(self) -> list[bytes]: ...


class EventSplitter:
    """Feed raw bytes as they arrive; get back the `data` of every event completed so far.

    Events end with a blank line; lines may end in CRLF or LF. Comments, `event:`,
    `id:` and `retry:` lines are dropped: an OpenAI stream carries all it says in `data`.
    """

    __slots__ = ("_buffer",)

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

    def flush(self) -> list[bytes]:
        """Nothing: an SSE event without its closing blank line was cut off, so it is not relayed."""
        return []

    @property
    def pending(self) -> bytes:
        return self._buffer


class LineSplitter:
    """Feed raw bytes of a newline-delimited JSON stream; get back every complete, non-empty line."""

    __slots__ = ("_buffer",)

    def __init__(self) -> None:
        self._buffer = b""

    def feed(self, chunk: bytes) -> list[bytes]:
        *complete, self._buffer = (self._buffer + chunk).split(b"\n")
        return [line.strip() for line in complete if line.strip()]

    def flush(self) -> list[bytes]:
        """The last line, if the stream ended without a newline after it."""
        rest, self._buffer = self._buffer.strip(), b""
        return [rest] if rest else []
