"""Replicate's prediction stream, as OpenAI `chat.completion.chunk` payloads.

Replicate streams a prediction as server-sent events told apart by their `event` name, which
the gateway's SSE splitter drops: `output` (a piece of text, its lines in as many `data` lines),
`error` (`{"detail": "…"}`) and `done` (`{}`, or `{"reason": "canceled"}`). `NamedEventSplitter`
keeps the name, handing the translator `name + "\\n" + data`.

The stream reports no token counts, so the translator gives no usage and the gateway counts
the tokens of what was relayed, as for any upstream that reports none.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from typing import Any

import orjson

from providers.adapters.replicate.errors import stream_error
from providers.adapters.shapes import new_completion_id
from providers.redaction import NO_SECRETS, Redactor


class NamedEventSplitter:
    """Feed raw SSE bytes; get back `name\\ndata` for every event completed so far (unnamed ones are `message`)."""

    __slots__ = ("_buffer",)

    def __init__(self) -> None:
        self._buffer = b""

    def feed(self, chunk: bytes) -> list[bytes]:
        buffer = self._buffer + chunk
        carry = b""
        if buffer.endswith(b"\r"):
            # Possibly the first half of a CRLF still in flight: keep it for the next chunk.
            buffer, carry = buffer[:-1], b"\r"
        buffer = buffer.replace(b"\r\n", b"\n")
        *complete, rest = buffer.split(b"\n\n")
        self._buffer = rest + carry
        events = []
        for block in complete:
            name, data = b"message", []
            for line in block.split(b"\n"):
                if line.startswith(b"event:"):
                    name = line[6:].strip()
                elif line.startswith(b"data:"):
                    # SSE takes off one space after the colon, no more: a piece's own leading space is text.
                    data.append(line[5:].removeprefix(b" "))
            if data or name != b"message":
                events.append(name + b"\n" + b"\n".join(data))
        return events

    def flush(self) -> list[bytes]:
        """Nothing: an event without its closing blank line was cut off, so it is not relayed."""
        return []


class ReplicateStream:
    __slots__ = ("completion_id", "created", "done", "failed", "include_usage", "model", "redactor", "started", "usage")

    def __init__(
        self,
        public_model: str,
        *,
        include_usage: bool,
        redactor: Redactor = NO_SECRETS,
        created: int | None = None,
        completion_id: str | None = None,
    ) -> None:
        self.model = public_model
        self.include_usage = include_usage
        self.redactor = redactor
        self.created = created if created is not None else int(time.time())
        self.completion_id = completion_id or new_completion_id()
        self.started = False  # the opening chunk (the role) is out
        self.done = False
        self.failed = False
        # Never reported: Replicate's stream carries no token counts, so the gateway counts them.
        self.usage: dict[str, Any] | None = None

    def feed(self, event: bytes) -> Iterable[bytes]:
        if self.failed or self.done:
            return ()  # a `done` after an `error`, or a stray event after the end
        name, _, data = self.redactor.bytes(event).partition(b"\n")
        if name == b"output":
            return self._opening() + ([self._chunk({"content": data.decode("utf-8", "replace")})] if data else [])
        if name == b"done":
            return self._done(data)
        if name == b"error":
            self.failed = True
            return (stream_error(data, redactor=self.redactor),)
        return ()  # comments, keep-alives and event kinds added after this was written

    def _opening(self) -> list[bytes]:
        if self.started:
            return []
        self.started = True
        return [self._chunk({"role": "assistant", "content": ""})]

    def _done(self, data: bytes) -> list[bytes]:
        reason = _reason(data)
        if reason in ("canceled", "error"):
            # An `error` event usually came first and was relayed; a stream that stops without one still failed.
            self.failed = True
            what = "was canceled" if reason == "canceled" else "failed"
            message = f"The upstream provider failed: the prediction {what} before it finished."
            return [orjson.dumps({"error": {"message": message, "type": "api_error", "param": None, "code": None}})]
        self.done = True
        return [*self._opening(), self._chunk({}, "stop")]

    def _chunk(self, delta: dict[str, Any], finish: str | None = None) -> bytes:
        chunk: dict[str, Any] = {
            "id": self.completion_id,
            "object": "chat.completion.chunk",
            "created": self.created,
            "model": self.model,
            "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}],
        }
        if self.include_usage:
            # As OpenAI does once usage is asked for: null on every chunk but the gateway's last.
            chunk["usage"] = None
        return orjson.dumps(chunk)


def _reason(data: bytes) -> str:
    try:
        body = orjson.loads(data) if data.strip() else {}
    except orjson.JSONDecodeError:
        return ""
    reason = body.get("reason") if isinstance(body, dict) else None
    return reason if isinstance(reason, str) else ""
