"""OpenAI's typed event streams, images' and transcriptions', relayed event for event.

Asked for `stream: true`, the GPT image models send `image_generation.partial_image`
events (as many as `partial_images`) and then `image_generation.completed`; the
GPT-4o transcription models send `transcript.text.delta` events (and, diarized,
`transcript.text.segment`) and then `transcript.text.done`. Each event's `type`
says what it is, none names a model, so nothing is renamed. The final event
marks the stream complete and carries the call's usage (`input_tokens`,
`output_tokens`), which billing reads as it reads the whole answer's.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import orjson

from providers.adapters.base import Operation
from providers.redaction import NO_SECRETS, Redactor

# The event that ends each operation's stream, and carries its usage.
FINAL_EVENTS: Mapping[Operation, str] = {
    "images": "image_generation.completed",
    "transcriptions": "transcript.text.done",
}
EVENT_STREAMED: frozenset[Operation] = frozenset(FINAL_EVENTS)


class TypedEvents:
    """One typed event stream: each event relayed as sent (its secrets redacted), the final one noted."""

    __slots__ = ("done", "failed", "final", "redactor", "usage")

    def __init__(self, operation: Operation, *, redactor: Redactor = NO_SECRETS) -> None:
        self.final = FINAL_EVENTS[operation]
        self.redactor = redactor
        self.done = False
        self.failed = False
        self.usage: dict[str, Any] | None = None

    def feed(self, event: bytes) -> Iterable[bytes]:
        if event == b"[DONE]":
            # Portico ends every stream with its own [DONE]; an upstream's is not relayed twice.
            self.done = True
            return ()
        event = self.redactor.bytes(event)
        body = orjson.loads(event)  # a malformed event raises ValueError, which ends the stream
        if not isinstance(body, dict):
            raise ValueError("not an OpenAI stream event")
        if "error" in body or body.get("type") == "error":
            self.failed = True
            return (orjson.dumps(self.redactor.deep(body)) if self.redactor else event,)
        if body.get("type") == self.final:
            self.done = True
            usage = body.get("usage")
            self.usage = usage if isinstance(usage, dict) else None
        return (event,)
