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

import orjson

from providers.adapters.cohere.answers import FAILED, finish_reason, openai_usage, safe_id
from providers.adapters.cohere.errors import stream_error
from providers.adapters.shapes import new_completion_id
from providers.adapters.wire import usage_is_plausible
from providers.redaction import NO_SECRETS, Redactor


def _message_delta(data: dict[str, Any]) -> dict[str, Any]:
    message = (data.get("delta") or {}).get("message")
    return message if isinstance(message, dict) else {}


class CohereStream:
    __slots__ = (
        "_head",
        "_tool_calls",
        "_wrote",
        "done",
        "failed",
        "include_usage",
        "redactor",
        "upstream_id",
        "usage",
    )

    def __init__(
        self, public_model: str, *, created: int, include_usage: bool, redactor: Redactor = NO_SECRETS
    ) -> None:
        self.done = False
        self.failed = False
        self.usage: dict[str, Any] | None = None
        self.include_usage = include_usage
        self.redactor = redactor
        self.upstream_id = ""  # Cohere's id for the answer, kept for the ledger
        self._wrote = False  # some text or a tool call was relayed
        self._head: dict[str, Any] = {
            "id": new_completion_id(),
            "object": "chat.completion.chunk",
            "created": created,
            "model": public_model,
        }
        # Cohere's tool call index -> the OpenAI tool call index.
        self._tool_calls: dict[int, int] = {}

    def feed(self, event: bytes) -> Iterable[bytes]:
        # Text and tool arguments may quote a secret as errors can: it is redacted before it is parsed.
        data = orjson.loads(self.redactor.bytes(event))
        if not isinstance(data, dict):
            raise ValueError("not a Cohere stream event")  # the relay ends a stream on ValueError
        kind = data.get("type")
        # In rough order of frequency: almost every event is a delta.
        if kind in ("content-delta", "content-start"):
            return self._text(_message_delta(data).get("content"))
        if kind == "tool-plan-delta":
            return self._plain(_message_delta(data).get("tool_plan"))
        if kind == "tool-call-delta":
            return self._arguments(data)
        if kind == "tool-call-start":
            return self._call_start(data)
        if kind == "message-start":
            self.upstream_id = safe_id(data.get("id"))
            return (self._chunk({"role": "assistant", "content": ""}),)
        if kind == "message-end":
            return self._end(data.get("delta") or {})
        return ()  # content-end, tool-call-end, citations, and event types added after this was written

    def _chunk(self, delta: dict[str, Any], finish: str | None = None) -> bytes:
        choice = {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}
        return self._dump([choice])

    def _dump(self, choices: list[dict[str, Any]], usage: dict[str, Any] | None = None) -> bytes:
        chunk = {**self._head, "choices": choices}
        if self.include_usage:
            chunk["usage"] = usage  # as OpenAI does once usage is asked for: null on every chunk but the last
        return orjson.dumps(chunk)

    def _text(self, content: Any) -> Iterable[bytes]:
        # A reasoning model's thinking comes in parts with `thinking` rather than `text`.
        return self._plain(content.get("text") if isinstance(content, dict) else None)

    def _plain(self, text: Any) -> Iterable[bytes]:
        if not isinstance(text, str) or not text:
            return ()
        self._wrote = True
        return (self._chunk({"content": text}),)

    def _call_start(self, data: dict[str, Any]) -> Iterable[bytes]:
        call = _message_delta(data).get("tool_calls") or {}
        function = call.get("function") or {}
        self._wrote = True
        index = self._tool_calls[data.get("index", -1)] = len(self._tool_calls)
        opened = {"index": index, "id": call.get("id"), "type": "function"}
        opened["function"] = {"name": function.get("name"), "arguments": function.get("arguments") or ""}
        return (self._chunk({"tool_calls": [opened]}),)

    def _arguments(self, data: dict[str, Any]) -> Iterable[bytes]:
        function = (_message_delta(data).get("tool_calls") or {}).get("function") or {}
        index = self._tool_calls.get(data.get("index", -1))
        fragment = function.get("arguments")
        if index is None or not isinstance(fragment, str) or not fragment:
            return ()
        return (self._chunk({"tool_calls": [{"index": index, "function": {"arguments": fragment}}]}),)

    def _end(self, delta: dict[str, Any]) -> Iterable[bytes]:
        reason = delta.get("finish_reason")
        if reason in FAILED:
            self.failed = True
            detail = delta.get("error") if isinstance(delta.get("error"), str) else ""
            return (stream_error(detail or f"the generation ended with {reason}.", redactor=self.redactor),)
        self.done = True
        usage = openai_usage(delta.get("usage"))
        # A stream without counts: the gateway counts the tokens, and sends its own usage chunk if asked.
        self.usage = usage if usage_is_plausible(usage, wrote_output=self._wrote) else None
        out = [self._chunk({}, finish_reason(reason, called_tools=bool(self._tool_calls)))]
        if self.include_usage and self.usage is not None:
            out.append(self._dump([], self.usage))
        return out
