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

import orjson

from providers.adapters.anthropic.errors import stream_error
from providers.adapters.anthropic.responses import finish_reason, openai_usage, safe_id
from providers.adapters.shapes import new_completion_id
from providers.adapters.wire import client_usage, usage_is_plausible
from providers.redaction import NO_SECRETS, Redactor


class AnthropicStream:
    __slots__ = (
        "_anthropic_usage",
        "_head",
        "_stop_reason",
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
        # True once the upstream ended the stream with an error event (already relayed as an error payload).
        self.failed = False
        self.usage: dict[str, Any] | None = None
        self.include_usage = include_usage
        self.redactor = redactor
        self.upstream_id = ""  # Anthropic's id for the message, kept for the ledger
        self._wrote = False  # some text or a tool call was relayed
        self._head: dict[str, Any] = {
            "id": new_completion_id(),
            "object": "chat.completion.chunk",
            "created": created,
            "model": public_model,
        }
        self._anthropic_usage: dict[str, Any] = {}
        self._stop_reason: str | None = None
        # Anthropic's block index -> the OpenAI tool call index of that tool_use block.
        self._tool_calls: dict[int, int] = {}

    def feed(self, event: bytes) -> Iterable[bytes]:
        # Text and tool arguments may quote a secret as errors can: it is redacted before it is parsed.
        data = orjson.loads(self.redactor.bytes(event))
        if not isinstance(data, dict):
            raise ValueError("not an Anthropic stream event")  # the relay ends a stream on ValueError
        kind = data.get("type")
        # In rough order of frequency: almost every event is a delta.
        if kind == "content_block_delta":
            return self._delta(data)
        if kind == "content_block_start":
            return self._block_start(data)
        if kind == "message_start":
            return self._message_start(data.get("message") or {})
        if kind == "message_delta":
            self._stop_reason = (data.get("delta") or {}).get("stop_reason") or self._stop_reason
            self._count(data.get("usage"))
            return ()
        if kind == "message_stop":
            return self._message_stop()
        if kind == "error":
            self.failed = True
            return (stream_error(data.get("error"), redactor=self.redactor),)
        return ()  # ping, content_block_stop, and event types added after this was written

    def _chunk(self, delta: dict[str, Any], finish: str | None = None) -> bytes:
        choice = {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}
        return orjson.dumps({**self._head, "choices": [choice]})

    def _message_start(self, message: dict[str, Any]) -> Iterable[bytes]:
        self.upstream_id = safe_id(message.get("id"))
        self._anthropic_usage = dict(message.get("usage") or {})
        return (self._chunk({"role": "assistant", "content": ""}),)

    def _block_start(self, data: dict[str, Any]) -> Iterable[bytes]:
        block = data.get("content_block") or {}
        kind = block.get("type")
        if kind == "text" and block.get("text"):
            self._wrote = True
            return (self._chunk({"content": block["text"]}),)
        if kind == "tool_use":
            self._wrote = True
            index = self._tool_calls[data.get("index", -1)] = len(self._tool_calls)
            call = {"index": index, "id": block.get("id"), "type": "function"}
            call["function"] = {"name": block.get("name"), "arguments": ""}
            return (self._chunk({"tool_calls": [call]}),)
        return ()

    def _delta(self, data: dict[str, Any]) -> Iterable[bytes]:
        delta = data.get("delta") or {}
        kind = delta.get("type")
        if kind == "text_delta" and delta.get("text"):
            self._wrote = True
            return (self._chunk({"content": delta["text"]}),)
        if kind == "input_json_delta" and delta.get("partial_json"):
            index = self._tool_calls.get(data.get("index", -1))
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
        if not usage_is_plausible(self.usage, wrote_output=self._wrote):
            self.usage = None  # the gateway counts the tokens, and sends its own usage chunk if asked
        out = [self._chunk({}, finish_reason(self._stop_reason))]
        if self.include_usage and self.usage is not None:
            out.append(orjson.dumps({**self._head, "choices": [], "usage": client_usage(self.usage)}))
        return out
