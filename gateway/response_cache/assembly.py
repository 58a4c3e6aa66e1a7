"""A streamed miss, stored: the chunks its client received, put back together into the whole answer.

The stream is relayed untouched; each piece is also fed to a `StreamAssembler`,
and once the stream has ended with [DONE] the answer it spelled out is stored
like a whole one. A stream that broke, carried an error event, or had log
probabilities (which are not put back together) is not stored.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, Awaitable, Callable
from typing import Any

import orjson

from gateway.accounting import Call
from gateway.sse import EventStream
from providers.adapters.framing import EventSplitter

# The fields of a usage object a client is shown; anything else an upstream reports stays in the ledger.
_USAGE_FIELDS = (
    "prompt_tokens",
    "completion_tokens",
    "total_tokens",
    "prompt_tokens_details",
    "completion_tokens_details",
)


class StreamAssembler:
    """Feed it the framed pieces of a chat or completions stream; `answer()` is the whole answer, if complete."""

    def __init__(self, operation: str) -> None:
        self.operation = operation
        self.splitter = EventSplitter()
        self.head: dict[str, Any] | None = None
        self.choices: dict[int, dict[str, Any]] = {}
        self.usage: dict[str, Any] | None = None
        self.done = False
        self.broken = False

    def feed(self, piece: bytes) -> None:
        if self.broken:
            return
        for data in self.splitter.feed(piece):
            if data == b"[DONE]":
                self.done = True
                continue
            try:
                chunk = orjson.loads(data)
            except orjson.JSONDecodeError:
                chunk = None
            if not isinstance(chunk, dict) or "error" in chunk:
                self.broken = True
                return
            self._take(chunk)

    def _take(self, chunk: dict[str, Any]) -> None:
        if self.head is None:
            self.head = chunk
        if chunk.get("usage"):
            self.usage = chunk["usage"]
        for part in chunk.get("choices") or ():
            if part.get("logprobs"):
                self.broken = True
                return
            choice = self.choices.setdefault(part.get("index", 0), {"text": [], "tool_calls": {}})
            if part.get("finish_reason"):
                choice["finish_reason"] = part["finish_reason"]
            if self.operation == "chat":
                _take_delta(choice, part.get("delta") or {})
            elif part.get("text"):
                choice["text"].append(part["text"])

    def answer(self, usage: dict[str, Any] | None = None) -> dict[str, Any] | None:
        """The whole answer; None unless the stream ended with [DONE] and nothing went wrong.

        `usage` is the call's own, for a stream whose client did not ask for a usage chunk.
        """
        if not self.done or self.broken or self.head is None or not self.choices:
            return None
        usage = self.usage or ({name: usage[name] for name in _USAGE_FIELDS if name in usage} if usage else None)
        answer: dict[str, Any] = {"id": self.head.get("id"), "created": self.head.get("created")}
        answer["model"] = self.head.get("model")
        if self.head.get("system_fingerprint"):
            answer["system_fingerprint"] = self.head["system_fingerprint"]
        if self.operation == "chat":
            answer["object"] = "chat.completion"
            answer["choices"] = [_chat_choice(index, choice) for index, choice in sorted(self.choices.items())]
        else:
            answer["object"] = "text_completion"
            answer["choices"] = [
                {
                    "index": index,
                    "text": "".join(choice["text"]),
                    "logprobs": None,
                    "finish_reason": choice.get("finish_reason"),
                }
                for index, choice in sorted(self.choices.items())
            ]
        if usage is not None:
            answer["usage"] = usage
        return answer


def _take_delta(choice: dict[str, Any], delta: dict[str, Any]) -> None:
    if delta.get("role"):
        choice["role"] = delta["role"]
    if delta.get("content"):
        choice["text"].append(delta["content"])
    if delta.get("refusal"):
        choice["refusal"] = choice.get("refusal", "") + delta["refusal"]
    for call in delta.get("tool_calls") or ():
        held = choice["tool_calls"].setdefault(call.get("index", 0), {"function": {"name": "", "arguments": ""}})
        for name in ("id", "type"):
            if call.get(name):
                held[name] = call[name]
        function = call.get("function") or {}
        held["function"]["name"] += function.get("name") or ""
        held["function"]["arguments"] += function.get("arguments") or ""
    if delta.get("function_call"):
        held = choice.setdefault("function_call", {"name": "", "arguments": ""})
        held["name"] += delta["function_call"].get("name") or ""
        held["arguments"] += delta["function_call"].get("arguments") or ""


def _chat_choice(index: int, choice: dict[str, Any]) -> dict[str, Any]:
    message: dict[str, Any] = {"role": choice.get("role", "assistant"), "content": "".join(choice["text"]) or None}
    if choice.get("refusal"):
        message["refusal"] = choice["refusal"]
    if choice["tool_calls"]:
        message["tool_calls"] = [
            {"id": call.get("id", ""), "type": call.get("type", "function"), "function": call["function"]}
            for _index, call in sorted(choice["tool_calls"].items())
        ]
    if choice.get("function_call"):
        message["function_call"] = choice["function_call"]
    return {"index": index, "message": message, "logprobs": None, "finish_reason": choice.get("finish_reason")}


def keep_streamed(stream: EventStream, call: Call, keep: Callable[[dict[str, Any]], Awaitable[None]]) -> None:
    """Relay `stream` as it is, and hand its whole answer to `keep` once it has ended complete."""
    events = stream.events

    async def tapped() -> AsyncGenerator[bytes]:
        assembler = StreamAssembler(call.operation)
        try:
            async for piece in events:
                assembler.feed(piece)
                yield piece
        finally:
            await events.aclose()
        # Reached only at the stream's normal end (a client gone closes this generator at its `yield`): by now the
        # call is finished and its usage known.
        answer = assembler.answer(call.usage)
        if answer is not None:
            await keep(answer)

    stream.events = tapped()
    stream.streaming_content = stream.events
