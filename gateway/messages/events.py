"""OpenAI chat chunks, as Anthropic's stream events; and the SSE framing of those events.

Anthropic's grammar, which `ChunkEvents` keeps whatever order the chunks come in:

    message_start, ping
    per block: content_block_start, content_block_delta..., content_block_stop
    message_delta (stop reason, stop sequence, usage), message_stop

A block is opened by the first delta of its kind and closed when one of another
kind arrives: text (`text_delta`), thinking (`thinking_delta`, only if the request
enabled thinking) and each tool call (`input_json_delta`, its arguments' JSON as
it comes). A server that interleaves the arguments of parallel tool calls gets
each fragment under its own call's block index, as Anthropic's SDK accumulates
them. `message_delta` waits for the stream's end, after OpenAI's usage chunk.
"""

from __future__ import annotations

from typing import Any

import orjson

from gateway.messages.answers import anthropic_usage, reasoning_of, stop_reason

Event = dict[str, Any]


def frame_event(event: Event) -> bytes:
    return b"event: " + event["type"].encode() + b"\ndata: " + orjson.dumps(event) + b"\n\n"


def framed(kind: bytes, payload: bytes) -> bytes:
    """An event whose payload is already JSON; a line break in it starts another `data:` line, as SSE wants."""
    if b"\n" in payload:
        payload = payload.replace(b"\n", b"\ndata: ")
    return b"event: " + kind + b"\ndata: " + payload + b"\n\n"


class ChunkEvents:
    """One stream's chunks in (parsed), Anthropic events out; `end()` once the chunks are done."""

    __slots__ = (
        "_finish",
        "_kind",
        "_open",
        "_started",
        "_tools",
        "_usage",
        "input_tokens",
        "message_id",
        "model",
        "next_index",
        "stop_sequences",
        "thinking",
    )

    def __init__(
        self, *, message_id: str, model: str, stop_sequences: list[str], thinking: bool, input_tokens: int = 0
    ) -> None:
        self.message_id = message_id
        self.model = model
        self.stop_sequences = stop_sequences
        self.thinking = thinking
        self.input_tokens = input_tokens  # known at the start only if admission counted the prompt
        self.next_index = 0
        self._started = False
        self._open: int | None = None  # the block index open now
        self._kind = ""  # "text", "thinking", or "tool:<OpenAI tool call index>"
        self._tools: dict[int, int] = {}  # OpenAI tool call index -> block index
        self._finish: dict[str, Any] = {}
        self._usage: dict[str, Any] | None = None

    def feed(self, chunk: dict[str, Any]) -> list[Event]:
        events: list[Event] = [] if self._started else self._start()
        if chunk.get("usage"):
            self._usage = chunk["usage"]
        for choice in chunk.get("choices") or ():
            if choice.get("index", 0) != 0:
                continue  # one message: Anthropic has no `n`
            delta = choice.get("delta") or {}
            if self.thinking and (reasoning := reasoning_of(delta)):
                events += self._into("thinking", {"type": "thinking", "thinking": "", "signature": ""})
                events.append(self._delta({"type": "thinking_delta", "thinking": reasoning}))
            text = delta.get("content")
            if isinstance(text, str) and text:
                events += self._into("text", {"type": "text", "text": ""})
                events.append(self._delta({"type": "text_delta", "text": text}))
            for call in delta.get("tool_calls") or ():
                events += self._tool_call(call)
            if choice.get("finish_reason"):
                self._finish = choice
        return events

    def end(self) -> list[Event]:
        """The blocks closed, then message_delta and message_stop."""
        events: list[Event] = [] if self._started else self._start()
        events += self._close()
        reason, sequence = stop_reason(self._finish, self.stop_sequences) if self._finish else ("end_turn", None)
        usage = anthropic_usage(self._usage)
        if self._usage is None:
            usage["input_tokens"] = self.input_tokens
        delta = {"stop_reason": reason, "stop_sequence": sequence}
        events.append({"type": "message_delta", "delta": delta, "usage": usage})
        events.append({"type": "message_stop"})
        return events

    def _start(self) -> list[Event]:
        self._started = True
        message: Event = {
            "id": self.message_id,
            "type": "message",
            "role": "assistant",
            "model": self.model,
            "content": [],
            "stop_reason": None,
            "stop_sequence": None,
            "usage": {"input_tokens": self.input_tokens, "output_tokens": 0},
        }
        return [{"type": "message_start", "message": message}, {"type": "ping"}]

    def _delta(self, delta: Event, index: int | None = None) -> Event:
        return {"type": "content_block_delta", "index": self._open if index is None else index, "delta": delta}

    def _close(self) -> list[Event]:
        if self._open is None:
            return []
        index, self._open, self._kind = self._open, None, ""
        return [{"type": "content_block_stop", "index": index}]

    def _into(self, kind: str, block: Event) -> list[Event]:
        """Open a block of `kind` unless one is open already, closing the one before."""
        if self._kind == kind:
            return []
        events = self._close()
        self._open, self._kind = self.next_index, kind
        self.next_index += 1
        events.append({"type": "content_block_start", "index": self._open, "content_block": block})
        return events

    def _tool_call(self, call: dict[str, Any]) -> list[Event]:
        position = call.get("index", 0)
        function = call.get("function") or {}
        events: list[Event] = []
        if position not in self._tools:
            block: Event = {
                "type": "tool_use",
                "id": call.get("id") or "",
                "name": function.get("name") or "",
                "input": {},
            }
            events += self._into(f"tool:{position}", block)
            self._tools[position] = self._open  # type: ignore[assignment]
        arguments = function.get("arguments")
        if isinstance(arguments, str) and arguments:
            delta = {"type": "input_json_delta", "partial_json": arguments}
            events.append(self._delta(delta, self._tools[position]))
        return events
