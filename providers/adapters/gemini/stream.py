"""A Gemini `streamGenerateContent?alt=sse` stream, as OpenAI `chat.completion.chunk` payloads.

Each SSE event is a whole `GenerateContentResponse` holding the next piece of each candidate: text
parts become content deltas, and a `functionCall` part (Gemini sends each call whole, never in
fragments) becomes one tool call delta carrying all its arguments. `usageMetadata` comes with the
events and counts the answer so far; the last one counts it all.

Gemini sends no end-of-stream marker: a candidate is done when it carries a `finishReason`, and the
stream when every candidate seen so far is. The finish chunk of each candidate goes out as its reason
arrives, and the usage chunk (if the client asked for one) once the stream is done. A stream that
closes before that was cut off. An `{"error": …}` event is Gemini failing mid-stream.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from providers.adapters.gemini.errors import stream_error
from providers.adapters.gemini.responses import (
    answer_parts,
    blocked,
    candidate_index,
    candidate_list,
    finish_reason,
    openai_usage,
    response_id,
    tool_call,
)
from providers.adapters.translated_stream import TranslatedStream
from providers.redaction import NO_SECRETS, Redactor


class GeminiStream(TranslatedStream):
    __slots__ = ("_calls", "_finished", "_metadata")

    malformed = "not a Gemini stream event"

    def __init__(
        self, public_model: str, *, created: int, include_usage: bool, redactor: Redactor = NO_SECRETS
    ) -> None:
        super().__init__(public_model, created=created, include_usage=include_usage, redactor=redactor)
        self._metadata: dict[str, Any] = {}
        # Candidate index -> the number of tool calls it made so far (the key: its opening chunk is out).
        self._calls: dict[int, int] = {}
        self._finished: set[int] = set()

    def feed(self, event: bytes) -> Iterable[bytes]:
        data = self._event(event)
        if "error" in data:
            self.failed = True
            return (stream_error(data["error"], redactor=self.redactor),)
        self.upstream_id = self.upstream_id or response_id(data)
        if isinstance(data.get("usageMetadata"), dict):
            self._metadata = data["usageMetadata"]
        if blocked(data):
            return self._blocked()
        out: list[bytes] = []
        for position, candidate in enumerate(candidate_list(data)):
            if isinstance(candidate, dict):
                out.extend(self._candidate(candidate_index(candidate, position), candidate))
        if self._calls and self._finished >= self._calls.keys() and not self.done:
            out.extend(self._end())
        return out

    def _candidate(self, index: int, candidate: dict[str, Any]) -> list[bytes]:
        out = []
        if index not in self._calls:
            self._calls[index] = 0
            out.append(self._chunk({"role": "assistant", "content": ""}, index=index))
        texts, call_parts = answer_parts(candidate)
        text = "".join(texts)
        if text:
            self._wrote = True
            out.append(self._chunk({"content": text}, index=index))
        for part in call_parts:
            self._wrote = True
            call = {"index": self._calls[index], **tool_call(part)}
            self._calls[index] += 1
            out.append(self._chunk({"tool_calls": [call]}, index=index))
        reason = candidate.get("finishReason")
        if reason and index not in self._finished:
            self._finished.add(index)
            out.append(self._chunk({}, finish_reason(reason, called_tools=bool(self._calls[index])), index=index))
        return out

    def _blocked(self) -> list[bytes]:
        """A prompt refused outright: an empty answer stopped by the content filter."""
        self._calls.setdefault(0, 0)
        self._finished.add(0)
        opening = self._chunk({"role": "assistant", "content": ""})
        return [opening, self._chunk({}, "content_filter"), *self._end()]

    def _end(self) -> list[bytes]:
        self.done = True
        self._keep_usage(openai_usage(self._metadata))
        return self._usage_chunks()
