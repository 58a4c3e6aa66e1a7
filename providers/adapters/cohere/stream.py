"""A Cohere API v2 chat stream, as OpenAI `chat.completion.chunk` payloads, one event at a time.

Cohere streams typed events: `message-start`; per text part a `content-start`, its
`content-delta`s and a `content-end`; the `tool-plan-delta`s of the text it writes before
calling tools; per tool call a `tool-call-start` (id and name), its `tool-call-delta`s
(argument fragments) and a `tool-call-end`; then `message-end` with the finish reason and
usage. Text and the tool plan become content deltas, each tool call one OpenAI tool call
numbered in order of appearance. Thinking parts and citations are not relayed.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from providers.adapters.cohere.answers import FAILED, finish_reason, openai_usage, safe_id
from providers.adapters.cohere.errors import failed_generation, stream_error
from providers.adapters.translated_stream import TranslatedStream
from providers.redaction import NO_SECRETS, Redactor


class CohereStream(TranslatedStream):
    __slots__ = ("_tool_calls",)

    malformed = "not a Cohere stream event"
    null_usage_on_chunks = True

    def __init__(
        self, public_model: str, *, created: int, include_usage: bool, redactor: Redactor = NO_SECRETS
    ) -> None:
        super().__init__(public_model, created=created, include_usage=include_usage, redactor=redactor)
        # Cohere's tool call index -> the OpenAI tool call index.
        self._tool_calls: dict[int, int] = {}

    def feed(self, event: bytes) -> Iterable[bytes]:
        data = self._event(event)
        kind = data.get("type")
        # In rough order of frequency: almost every event is a delta.
        if kind in ("content-delta", "content-start"):
            return self._text(self._message(data).get("content"))
        if kind == "tool-plan-delta":
            return self._plain(self._message(data).get("tool_plan"))
        if kind == "tool-call-delta":
            return self._arguments(data)
        if kind == "tool-call-start":
            return self._call_start(data)
        if kind == "message-start":
            self.upstream_id = safe_id(data.get("id"))
            return (self._chunk({"role": "assistant", "content": ""}),)
        if kind == "message-end":
            return self._end(self._part(data.get("delta")))
        return ()  # content-end, tool-call-end, citations, and event types added after this was written

    def _message(self, data: dict[str, Any]) -> dict[str, Any]:
        message = self._part(data.get("delta")).get("message")
        return message if isinstance(message, dict) else {}

    def _text(self, content: Any) -> Iterable[bytes]:
        # A reasoning model's thinking comes in parts with `thinking` rather than `text`.
        return self._plain(content.get("text") if isinstance(content, dict) else None)

    def _plain(self, text: Any) -> Iterable[bytes]:
        if not isinstance(text, str) or not text:
            return ()
        self._wrote = True
        return (self._chunk({"content": text}),)

    def _call_start(self, data: dict[str, Any]) -> Iterable[bytes]:
        call = self._part(self._message(data).get("tool_calls"))
        function = self._part(call.get("function"))
        call_id, name, arguments = call.get("id"), function.get("name"), function.get("arguments") or ""
        if not isinstance(call_id, str) or not isinstance(name, str) or not isinstance(arguments, str):
            raise ValueError(self.malformed)
        self._wrote = True
        index = self._tool_calls[self._index(data)] = len(self._tool_calls)
        opened = {"index": index, "id": call_id, "type": "function"}
        opened["function"] = {"name": name, "arguments": arguments}
        return (self._chunk({"tool_calls": [opened]}),)

    def _arguments(self, data: dict[str, Any]) -> Iterable[bytes]:
        function = self._part(self._part(self._message(data).get("tool_calls")).get("function"))
        index = self._tool_calls.get(self._index(data))
        fragment = function.get("arguments")
        if index is None or not isinstance(fragment, str) or not fragment:
            return ()
        return (self._chunk({"tool_calls": [{"index": index, "function": {"arguments": fragment}}]}),)

    def _end(self, delta: dict[str, Any]) -> Iterable[bytes]:
        reason = delta.get("finish_reason")
        if isinstance(reason, str) and reason in FAILED:
            self.failed = True
            return (stream_error(failed_generation(reason, delta.get("error"), redactor=self.redactor)),)
        self.done = True
        self._keep_usage(openai_usage(delta.get("usage")))
        return [self._chunk({}, finish_reason(reason, called_tools=bool(self._tool_calls))), *self._usage_chunks()]
