"""Ollama's NDJSON chat stream as OpenAI `chat.completion.chunk` payloads.

Ollama sends one JSON object per line: `{"message": {...}, "done": false}` while it
writes, then `{"done": true, "done_reason": ..., "prompt_eval_count": ..., "eval_count": ...}`.
A tool call arrives whole in one line, so each becomes a single OpenAI delta carrying
its full arguments. An `{"error": "..."}` line (Ollama's way of failing mid-stream)
becomes OpenAI's error payload.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from typing import Any

import orjson

from providers.adapters.ollama.answers import (
    Clock,
    created,
    finish_reason,
    new_completion_id,
    openai_tool_calls,
    text,
    usage,
)
from providers.adapters.wire import usage_is_plausible
from providers.redaction import NO_SECRETS, Redactor


def error_payload(message: str) -> bytes:
    return orjson.dumps({"error": {"message": message, "type": "api_error", "param": None, "code": None}})


class OllamaChatStream:
    __slots__ = (
        "called_tools",
        "clock",
        "completion_id",
        "created",
        "done",
        "failed",
        "include_usage",
        "model",
        "redactor",
        "usage",
        "wrote",
    )

    def __init__(
        self,
        public_model: str,
        *,
        include_usage: bool,
        redactor: Redactor = NO_SECRETS,
        clock: Clock = time.time,
        completion_id: str | None = None,
    ) -> None:
        self.model = public_model
        self.include_usage = include_usage
        self.redactor = redactor
        self.clock = clock
        self.completion_id = completion_id or new_completion_id()
        self.created: int | None = None  # set by the first line: it also says the opening chunk is out
        self.called_tools = 0
        self.done = False
        self.failed = False
        self.usage: dict[str, Any] | None = None
        self.wrote = False  # some text or a tool call was relayed

    def feed(self, event: bytes) -> Iterable[bytes]:
        event = self.redactor.bytes(event)
        if not event.strip():
            return ()
        try:
            line = orjson.loads(event)
        except orjson.JSONDecodeError:
            line = None
        if not isinstance(line, dict):
            self.failed = True
            return (error_payload("The upstream provider sent a malformed stream line."),)
        if "error" in line:
            self.failed = True
            # Redacted again once decoded: JSON may have spelled a secret with escapes.
            return (error_payload(self.redactor.text(f"The upstream provider failed: {line['error']}")),)
        chunks = []
        if self.created is None:
            self.created = created(line, self.clock)
            chunks.append(self._chunk({"role": "assistant", "content": ""}))
        message = line.get("message") or {}
        if not isinstance(message, dict):
            raise ValueError("not an Ollama stream line")
        content = text(message.get("content"))
        if content or message.get("tool_calls"):
            self.wrote = True
        if content:
            chunks.append(self._chunk({"content": content}))
        for call in openai_tool_calls(message.get("tool_calls") or []):
            chunks.append(self._chunk({"tool_calls": [{"index": self.called_tools, **call}]}))
            self.called_tools += 1
        if line.get("done"):
            chunks.extend(self._finish(line))
        return chunks

    def _finish(self, line: dict[str, Any]) -> list[bytes]:
        self.done = True
        reported = usage(line)
        # Ollama leaves out the prompt count of a prompt served from its cache: the gateway counts it then.
        self.usage = reported if usage_is_plausible(reported, wrote_output=self.wrote) else None
        reason = finish_reason(line.get("done_reason"), called_tools=bool(self.called_tools))
        chunks = [self._chunk({}, reason)]
        if self.include_usage and self.usage is not None:
            chunks.append(self._dump([], usage=self.usage))
        return chunks

    def _chunk(self, delta: dict[str, Any], finish: str | None = None) -> bytes:
        return self._dump([{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}])

    def _dump(self, choices: list[dict[str, Any]], *, usage: dict[str, int] | None = None) -> bytes:
        chunk: dict[str, Any] = {
            "id": self.completion_id,
            "object": "chat.completion.chunk",
            "created": self.created,
            "model": self.model,
            "choices": choices,
        }
        if self.include_usage:
            # As OpenAI does once usage is asked for: null on every chunk but the last.
            chunk["usage"] = usage
        return orjson.dumps(chunk)
