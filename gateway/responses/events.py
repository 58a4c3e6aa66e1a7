"""The Responses API's typed stream events, written from a chat completions stream.

For one answer the events come in this order, each with the next `sequence_number`:

    response.created, response.in_progress
    text:        response.output_item.added (message), response.content_part.added,
                 response.output_text.delta ..., then at its end response.output_text.done,
                 response.content_part.done, response.output_item.done
    each call:   response.output_item.added (function_call), response.function_call_arguments.delta ...,
                 then at its end response.function_call_arguments.done, response.output_item.done
    response.completed (or response.incomplete), with the usage

A stream that fails ends with response.failed then an `error` event. The
writer is pure: chat chunk payloads in, SSE frames out; gateway.responses.serving feeds it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

import orjson

from gateway.responses.answers import (
    function_call_item,
    incomplete_reason,
    message_item,
    new_id,
    response_object,
    usage_from_chat,
)

_TYPE = re.compile(rb'"type"\s*:\s*"([^"\\]+)"')

# The codes OpenAI's `response.failed` may carry (ResponseErrorCode) that a relayed failure can have;
# any other (Portico's and upstreams' own) is a `server_error` there, and stays as it was in the `error` event.
_FAILED_CODES = frozenset({"server_error", "rate_limit_exceeded", "invalid_prompt"})


def event_frame(payload: bytes) -> bytes:
    """An SSE frame named for the event's `type` (its first `type` member: the top-level one in OpenAI's events)."""
    match = _TYPE.search(payload)
    name = b"event: " + match[1] + b"\n" if match else b""
    return name + b"data: " + payload + b"\n\n"


def data_of(frames: bytes) -> list[bytes]:
    """The `data` payloads of SSE frames Portico wrote itself (one `data:` line each)."""
    return [block[6:] for block in frames.split(b"\n\n") if block.startswith(b"data: ")]


@dataclass
class _Call:
    item_id: str
    call_id: str
    name: str
    output_index: int
    arguments: list[str] = field(default_factory=list)


class ChatToEvents:
    """One response's events, from the chat chunks of its stream."""

    def __init__(self, request: dict[str, Any], *, response_id: str, model: str, created_at: int) -> None:
        self.request = request
        self.response_id = response_id
        self.model = model
        self.created_at = created_at
        self.sequence = 0
        self.output: list[dict[str, Any] | None] = []  # finished items, by output index (None while open)
        self.text: list[str] | None = None  # the open message's text
        self.text_id = ""
        self.text_index = 0
        self.calls: dict[int, _Call] = {}  # open tool calls, by chat's tool call index
        self.finish_reason: str | None = None
        self.usage: dict[str, Any] | None = None
        self.final: dict[str, Any] | None = None  # the `response` object once the stream completed

    def _event(self, kind: str, **fields: Any) -> bytes:
        payload = orjson.dumps({"type": kind, **fields, "sequence_number": self.sequence})
        self.sequence += 1
        return event_frame(payload)

    def _snapshot(self, status: str, **extra: Any) -> dict[str, Any]:
        output = [item for item in self.output if item is not None]
        return response_object(
            self.request,
            response_id=self.response_id,
            model=self.model,
            created_at=self.created_at,
            status=status,
            output=output,
            **extra,
        )

    def start(self) -> bytes:
        snapshot = self._snapshot("in_progress")
        return self._event("response.created", response=snapshot) + self._event(
            "response.in_progress", response=snapshot
        )

    def feed(self, chunk: dict[str, Any]) -> bytes:
        out = []
        if isinstance(chunk.get("usage"), dict):
            self.usage = chunk["usage"]
        for choice in chunk.get("choices") or ():
            if choice.get("index", 0) != 0:
                continue  # a response has one answer
            delta = choice.get("delta") or {}
            text = delta.get("content")
            if text:
                out.append(self._text_delta(text))
            for call in delta.get("tool_calls") or ():
                out.append(self._call_delta(call))
            if choice.get("finish_reason"):
                self.finish_reason = choice["finish_reason"]
        return b"".join(out)

    def _text_delta(self, text: str) -> bytes:
        opened = b""
        if self.text is None:
            self.text, self.text_id, self.text_index = [], new_id("msg"), len(self.output)
            self.output.append(None)
            item = message_item(self.text_id, "", status="in_progress")
            item["content"] = []
            part = {"type": "output_text", "text": "", "annotations": [], "logprobs": []}
            opened = self._event("response.output_item.added", output_index=self.text_index, item=item)
            opened += self._event(
                "response.content_part.added",
                item_id=self.text_id,
                output_index=self.text_index,
                content_index=0,
                part=part,
            )
        self.text.append(text)
        return opened + self._event(
            "response.output_text.delta",
            item_id=self.text_id,
            output_index=self.text_index,
            content_index=0,
            delta=text,
            logprobs=[],
        )

    def _call_delta(self, call: dict[str, Any]) -> bytes:
        index = call.get("index", len(self.calls))
        function = call.get("function") or {}
        out = b""
        open_call = self.calls.get(index)
        if open_call is None:
            out += self._close_text()  # text after a call starts is another message
            open_call = _Call(
                new_id("fc"), call.get("id") or new_id("call"), function.get("name") or "", len(self.output)
            )
            self.calls[index] = open_call
            self.output.append(None)
            item = function_call_item(open_call.item_id, open_call.call_id, open_call.name, "", status="in_progress")
            out += self._event("response.output_item.added", output_index=open_call.output_index, item=item)
        arguments = function.get("arguments") or ""
        if arguments:
            open_call.arguments.append(arguments)
            out += self._event(
                "response.function_call_arguments.delta",
                item_id=open_call.item_id,
                output_index=open_call.output_index,
                delta=arguments,
            )
        return out

    def _close_text(self) -> bytes:
        if self.text is None:
            return b""
        text, item_id, index = "".join(self.text), self.text_id, self.text_index
        self.text = None
        part = {"type": "output_text", "text": text, "annotations": [], "logprobs": []}
        item = message_item(item_id, text)
        self.output[index] = item
        return (
            self._event(
                "response.output_text.done",
                item_id=item_id,
                output_index=index,
                content_index=0,
                text=text,
                logprobs=[],
            )
            + self._event("response.content_part.done", item_id=item_id, output_index=index, content_index=0, part=part)
            + self._event("response.output_item.done", output_index=index, item=item)
        )

    def _close_calls(self) -> bytes:
        out = b""
        for call in self.calls.values():
            arguments = "".join(call.arguments)
            item = function_call_item(call.item_id, call.call_id, call.name, arguments)
            self.output[call.output_index] = item
            out += self._event(
                "response.function_call_arguments.done",
                item_id=call.item_id,
                output_index=call.output_index,
                name=call.name,
                arguments=arguments,
            )
            out += self._event("response.output_item.done", output_index=call.output_index, item=item)
        self.calls = {}
        return out

    def finish(self) -> bytes:
        """The end of a complete stream: open items closed, then response.completed (or .incomplete)."""
        out = self._close_text() + self._close_calls()
        reason = incomplete_reason(self.finish_reason)
        status = "incomplete" if reason else "completed"
        self.final = self._snapshot(status, usage=usage_from_chat(self.usage), incomplete=reason)
        return out + self._event(f"response.{status}", response=self.final)

    def fail(self, error: dict[str, Any]) -> bytes:
        """The end of a broken stream: response.failed, then the `error` event OpenAI's clients raise on."""
        code, message = error.get("code") or error.get("type") or "server_error", error.get("message") or ""
        failed_code = code if isinstance(code, str) and code in _FAILED_CODES else "server_error"
        failed = self._snapshot("failed", error={"code": failed_code, "message": message})
        return self._event("response.failed", response=failed) + self._event(
            "error", code=code, message=message, param=error.get("param")
        )
