"""A fake Anthropic Messages API: a real aiohttp server on a free 127.0.0.1 port.

It runs like `tests.fakes.openai_upstream.FakeUpstream` (whose thread, lifecycle and request log it
reuses) but speaks Anthropic's wire protocol: `POST /v1/messages`, whole or streamed as SSE with
`event:` and `data:` lines, and `GET /v1/models`. Requests must carry `anthropic-version`, and the
`x-api-key` given to the constructor, as Anthropic's would.

Behaviour is scripted per upstream model name; a model with no script gets a normal `Reply()`.

    upstream.script("claude-1", Reply("Hi there", delay=0.3))         answer, streaming slowly
    upstream.script("claude-2", Replay("parallel_tool_calls"))        a recorded stream (or, not streaming, its message)
    upstream.script("claude-3", Replay("text_answer", cut_after=4))   close the connection after 4 events
    upstream.script("claude-4", Fail(529, "overloaded_error", headers={"retry-after": "3"}))
    upstream.script("claude-5", Hang())                               never answer
    upstream.script("claude-6", CloseBeforeAnswer())                  close the connection at once

Recordings are `recordings/anthropic/<name>.sse`, events as Anthropic sends them.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aiohttp import web

from tests.fakes.openai_upstream import CloseBeforeAnswer, FakeUpstream, Hang, Received

__all__ = ["RECORDINGS", "CloseBeforeAnswer", "Fail", "FakeAnthropic", "Hang", "Replay", "Reply", "recording_events"]

RECORDINGS = Path(__file__).parent / "recordings" / "anthropic"
MODEL_CREATED_AT = "2025-02-19T00:00:00Z"
_DELTA_FIELDS = {"text_delta": "text", "thinking_delta": "thinking", "signature_delta": "signature"}
_ERROR_STATUS = {"overloaded_error": 529, "rate_limit_error": 429, "invalid_request_error": 400}


@dataclass(frozen=True)
class Reply:
    """A text answer: a message, or if the request streams, an event stream with one delta per word."""

    content: str = "Hello from the fake Anthropic upstream."
    delay: float = 0.0  # seconds between two stream events
    input_tokens: int = 11
    stop_reason: str = "end_turn"


@dataclass(frozen=True)
class Replay:
    """A recorded stream, event by event; a request that does not stream gets the message it adds up to."""

    recording: str
    delay: float = 0.0
    cut_after: int | None = None  # close the connection after this many events, without message_stop


@dataclass(frozen=True)
class Fail:
    """An HTTP error with Anthropic's error body."""

    status: int
    type: str = "invalid_request_error"
    message: str = "The fake Anthropic upstream refused the request."
    headers: Mapping[str, str] = field(default_factory=dict)


Behaviour = Reply | Replay | Fail | Hang | CloseBeforeAnswer


def recording_events(name: str) -> list[bytes]:
    """The events of a recording, each as sent (`event:` and `data:` lines), without the blank line after it."""
    text = (RECORDINGS / f"{name}.sse").read_bytes()
    return [block for block in text.replace(b"\r\n", b"\n").split(b"\n\n") if block.strip()]


def _event(data: dict[str, Any]) -> bytes:
    return f"event: {data['type']}\ndata: {json.dumps(data)}".encode()


def reply_events(model: str, reply: Reply) -> list[bytes]:
    words = reply.content.split()
    message = _message(model, reply, content=[])
    events = [
        {"type": "message_start", "message": {**message, "usage": {**message["usage"], "output_tokens": 1}}},
        {"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}},
        {"type": "ping"},
    ]
    for i, word in enumerate(words):
        delta = {"type": "text_delta", "text": word if i == 0 else f" {word}"}
        events.append({"type": "content_block_delta", "index": 0, "delta": delta})
    events += [
        {"type": "content_block_stop", "index": 0},
        {
            "type": "message_delta",
            "delta": {"stop_reason": reply.stop_reason, "stop_sequence": None},
            "usage": {"output_tokens": len(words)},
        },
        {"type": "message_stop"},
    ]
    return [_event(event) for event in events]


def _message(model: str, reply: Reply, *, content: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "id": "msg_01FakeAnthropicReply",
        "type": "message",
        "role": "assistant",
        "model": model,
        "content": content,
        "stop_reason": reply.stop_reason if content else None,
        "stop_sequence": None,
        "usage": {
            "input_tokens": reply.input_tokens,
            "cache_creation_input_tokens": 0,
            "cache_read_input_tokens": 0,
            "output_tokens": len(reply.content.split()),
        },
    }


def replayed_message(name: str) -> dict[str, Any]:
    """The whole message a recorded stream adds up to, as Anthropic answers when not streaming."""
    message: dict[str, Any] = {}
    json_parts: dict[int, list[str]] = {}
    for block in recording_events(name):
        data = json.loads(block.split(b"data: ", 1)[1])
        kind = data["type"]
        if kind == "error":
            raise ReplayedError(data["error"])
        if kind == "message_start":
            message = data["message"]
        elif kind == "content_block_start":
            message["content"].append(data["content_block"])
        elif kind == "content_block_delta":
            target, delta = message["content"][data["index"]], data["delta"]
            if delta["type"] == "input_json_delta":
                json_parts.setdefault(data["index"], []).append(delta["partial_json"])
            else:
                key = _DELTA_FIELDS[delta["type"]]
                target[key] = target.get(key, "") + delta[key]
        elif kind == "message_delta":
            message.update(data["delta"])
            message["usage"].update(data["usage"])
    for index, parts in json_parts.items():
        message["content"][index]["input"] = json.loads("".join(parts) or "{}")
    return message


class ReplayedError(Exception):
    def __init__(self, error: dict[str, Any]) -> None:
        super().__init__(error["message"])
        self.error = error


def _error_response(
    status: int, error_type: str, message: str, headers: Mapping[str, str] | None = None
) -> web.Response:
    body = {"type": "error", "error": {"type": error_type, "message": message}, "request_id": "req_fake"}
    return web.json_response(body, status=status, headers=dict(headers or {}))


class FakeAnthropic(FakeUpstream):
    """Start with `start()`, stop with `stop()`; `base_url` is what a provider row points at."""

    def __init__(self, api_key: str | None = None) -> None:
        super().__init__()
        self.api_key = api_key

    def script(self, model: str, behaviour: Behaviour) -> None:  # type: ignore[override]
        with self._lock:
            self._scripts[model] = behaviour  # type: ignore[assignment]

    async def _open(self) -> None:
        app = web.Application()
        app.router.add_post("/v1/messages", self._messages)
        app.router.add_get("/v1/models", self._anthropic_models)
        self._runner = web.AppRunner(app, handler_cancellation=True, access_log=None, shutdown_timeout=0.5)
        await self._runner.setup()
        assert self._socket is not None
        await web.SockSite(self._runner, self._socket).start()

    def _refusal(self, request: web.Request) -> web.Response | None:
        """Anthropic's answer to a request without its version header or with the wrong key, else None."""
        if "anthropic-version" not in request.headers:
            return _error_response(400, "invalid_request_error", "anthropic-version: header is required")
        if self.api_key is not None and request.headers.get("x-api-key") != self.api_key:
            return _error_response(401, "authentication_error", "invalid x-api-key")
        return None

    def _record(self, request: web.Request, body: dict[str, Any]) -> None:
        headers = {name.lower(): value for name, value in request.headers.items()}
        with self._lock:
            self._received.append(Received(request.method, request.path_qs, headers, body))

    async def _anthropic_models(self, request: web.Request) -> web.Response:
        self._record(request, {})
        if (refusal := self._refusal(request)) is not None:
            return refusal
        with self._lock:
            names = sorted(self._scripts)
        data = [
            {"type": "model", "id": name, "display_name": name.title(), "created_at": MODEL_CREATED_AT}
            for name in names
        ]
        first, last = (names[0], names[-1]) if names else (None, None)
        return web.json_response({"data": data, "has_more": False, "first_id": first, "last_id": last})

    async def _messages(self, request: web.Request) -> web.StreamResponse:
        body = await request.json()
        self._record(request, body)
        if (refusal := self._refusal(request)) is not None:
            return refusal
        model = str(body.get("model"))
        with self._lock:
            behaviour = self._scripts.get(model, Reply())
        if isinstance(behaviour, Fail):
            return _error_response(behaviour.status, behaviour.type, behaviour.message, behaviour.headers)
        if isinstance(behaviour, Hang):
            return await self._hang(model)
        if isinstance(behaviour, CloseBeforeAnswer):
            return await self._close(request)
        if isinstance(behaviour, Replay):
            if body.get("stream"):
                events = recording_events(behaviour.recording)[: behaviour.cut_after]
                return await self._send(request, model, events, behaviour.delay, cut=behaviour.cut_after is not None)
            try:
                return web.json_response(replayed_message(behaviour.recording))
            except ReplayedError as exc:
                status = _ERROR_STATUS.get(exc.error["type"], 500)
                return _error_response(status, exc.error["type"], exc.error["message"])
        assert isinstance(behaviour, Reply)
        if body.get("stream"):
            return await self._send(request, model, reply_events(model, behaviour), behaviour.delay, cut=False)
        content = [{"type": "text", "text": behaviour.content}]
        return web.json_response(_message(model, behaviour, content=content))

    async def _send(
        self, request: web.Request, model: str, events: list[bytes], delay: float, *, cut: bool
    ) -> web.StreamResponse:
        log = self._log_answer(model)
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache"})
        try:
            await response.prepare(request)
            for index, event in enumerate(events):
                if index and delay:
                    await asyncio.sleep(delay)
                if index == len(events) - 1 and not cut:
                    # Marked before the last event goes out: a client that has read it must find the stream finished.
                    log.finished = True
                await response.write(event + b"\n\n")
                log.sent_at.append(time.monotonic())
            if cut:
                return await self._close(request)
            await response.write_eof()
        except (asyncio.CancelledError, ConnectionResetError):
            log.closed_early.set()
            raise
        return response
