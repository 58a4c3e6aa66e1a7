"""An Anthropic Messages stream, as OpenAI `chat.completion.chunk` payloads, one event at a time.

Anthropic streams a message as blocks: `message_start`, then per block a `content_block_start`, its
`content_block_delta`s and a `content_block_stop`, then `message_delta` (stop reason, output usage)
and `message_stop`. Text deltas become content deltas; each `tool_use` block becomes one OpenAI tool
call, numbered in order of appearance, announced with its id and name and then fed its arguments'
JSON fragments. Thinking blocks are the model's own and are not relayed.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from providers.adapters.anthropic.errors import stream_error
from providers.adapters.anthropic.responses import finish_reason, openai_usage, safe_id
from providers.adapters.translated_stream import TranslatedStream
from providers.redaction import NO_SECRETS, Redactor


def _filled(value: Any) -> bool:
    """Whether a text or a JSON fragment is there to relay: a string that is not empty."""
    return isinstance(value, str) and bool(value)


class AnthropicStream(TranslatedStream):
    __slots__ = ("_anthropic_usage", "_stop_reason", "_tool_calls")

    malformed = "not an Anthropic stream event"

    def __init__(
        self, public_model: str, *, created: int, include_usage: bool, redactor: Redactor = NO_SECRETS
    ) -> None:
        super().__init__(public_model, created=created, include_usage=include_usage, redactor=redactor)
        self._anthropic_usage: dict[str, Any] = {}
        self._stop_reason: str | None = None
        # Anthropic's block index -> the OpenAI tool call index of that tool_use block.
        self._tool_calls: dict[int, int] = {}

    def feed(self, event: bytes) -> Iterable[bytes]:
        data = self._event(event)
        kind = data.get("type")
        # In rough order of frequency: almost every event is a delta.
        if kind == "content_block_delta":
            return self._delta(data)
        if kind == "content_block_start":
            return self._block_start(data)
        if kind == "message_start":
            return self._message_start(self._part(data.get("message")))
        if kind == "message_delta":
            self._stop_reason = self._part(data.get("delta")).get("stop_reason") or self._stop_reason
            self._count(data.get("usage"))
            return ()
        if kind == "message_stop":
            return self._message_stop()
        if kind == "error":
            self.failed = True
            return (stream_error(data.get("error"), redactor=self.redactor),)
        return ()  # ping, content_block_stop, and event types added after this was written

    def _message_start(self, message: dict[str, Any]) -> Iterable[bytes]:
        self.upstream_id = safe_id(message.get("id"))
        self._anthropic_usage = dict(self._part(message.get("usage")))
        return (self._chunk({"role": "assistant", "content": ""}),)

    def _block_start(self, data: dict[str, Any]) -> Iterable[bytes]:
        block = self._part(data.get("content_block"))
        kind = block.get("type")
        if kind == "text" and _filled(block.get("text")):
            self._wrote = True
            return (self._chunk({"content": block["text"]}),)
        if kind == "tool_use":
            call_id, name = block.get("id"), block.get("name")
            if not isinstance(call_id, str) or not isinstance(name, str):
                raise ValueError(self.malformed)
            self._wrote = True
            index = self._tool_calls[self._index(data)] = len(self._tool_calls)
            call = {"index": index, "id": call_id, "type": "function"}
            call["function"] = {"name": name, "arguments": ""}
            return (self._chunk({"tool_calls": [call]}),)
        return ()

    def _delta(self, data: dict[str, Any]) -> Iterable[bytes]:
        delta = self._part(data.get("delta"))
        kind = delta.get("type")
        if kind == "text_delta" and _filled(delta.get("text")):
            self._wrote = True
            return (self._chunk({"content": delta["text"]}),)
        if kind == "input_json_delta" and _filled(delta.get("partial_json")):
            index = self._tool_calls.get(self._index(data))
            if index is not None:
                call = {"index": index, "function": {"arguments": delta["partial_json"]}}
                return (self._chunk({"tool_calls": [call]}),)
        return ()  # thinking, signatures, citations, empty fragments

    def _count(self, usage: Any) -> None:
        if isinstance(usage, dict):
            # `message_delta` counts are cumulative; newer API versions repeat the input counts there too.
            self._anthropic_usage.update((key, value) for key, value in usage.items() if value is not None)
        self.usage = openai_usage(self._anthropic_usage)

    def _message_stop(self) -> Iterable[bytes]:
        self.done = True
        if self.usage is None:
            self._count(None)
        self._keep_usage(self.usage)
        return [self._chunk({}, finish_reason(self._stop_reason)), *self._usage_chunks()]
