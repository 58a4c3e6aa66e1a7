"""A fake OpenAI-compatible upstream: a real aiohttp server on a free 127.0.0.1 port.

It runs in a background thread with its own event loop, so tests can read what
it recorded without any inter-process plumbing, and it shares the test
process's monotonic clock, which lets a test compare when the fake sent a
stream event with when the client received it.

Behaviour is scripted per upstream model name: every test gives its route a
model name of its own and calls `upstream.script(name, Fail(429, ...))`.
A model with no script gets a normal `Reply()`.

    upstream.script("fake-1", Reply("Hi there", delay=0.3))    answer, streaming slowly
    upstream.script("fake-6", Echo())                          answer with the last user message
    upstream.script("fake-2", Fail(429, headers={...}))        an OpenAI error body
    upstream.script("fake-3", Hang())                          never answer
    upstream.script("fake-4", DropMidStream(after=2))          cut the stream after 2 events
    upstream.script("fake-5", CloseBeforeAnswer())             close the connection at once
"""

from __future__ import annotations

import asyncio
import json
import socket
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

CREATED = 1_700_000_000


@dataclass(frozen=True)
class Reply:
    """Answer normally: JSON, or SSE if the request asks to stream (one event per word)."""

    content: str = "Hello from the fake upstream."
    delay: float = 0.0  # seconds between two stream events
    prompt_tokens: int = 11


@dataclass(frozen=True)
class Echo:
    """Answer like `Reply`, with the last user message as the content: tells concurrent requests apart."""

    delay: float = 0.0


@dataclass(frozen=True)
class Fail:
    """Answer with an HTTP error and OpenAI's error body."""

    status: int
    message: str = "The fake upstream refused the request."
    type: str = "invalid_request_error"
    code: str | None = None
    param: str | None = None
    headers: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Hang:
    """Accept the request and never answer."""


@dataclass(frozen=True)
class DropMidStream:
    """Start a stream, send `after` events, then close the socket without ending the chunked body."""

    after: int = 2
    content: str = "this stream will never finish properly"


@dataclass(frozen=True)
class CloseBeforeAnswer:
    """Close the connection without sending a single byte of answer."""


Behaviour = Reply | Echo | Fail | Hang | DropMidStream | CloseBeforeAnswer


@dataclass(frozen=True)
class Received:
    """One request as the fake saw it. Header names are lower-cased."""

    method: str
    path: str
    headers: dict[str, str]
    body: dict[str, Any]


@dataclass
class AnswerLog:
    """What happened to one streamed (or hanging) answer."""

    sent_at: list[float] = field(default_factory=list)  # time.monotonic() after each event was written
    finished: bool = False  # every event was sent; only [DONE] was left
    closed_early: threading.Event = field(default_factory=threading.Event)


def _usage(prompt_tokens: int, content: str) -> dict[str, int]:
    completion = len(content.split())
    return {"prompt_tokens": prompt_tokens, "completion_tokens": completion, "total_tokens": prompt_tokens + completion}


def completion(model: str, reply: Reply, n: int) -> dict[str, Any]:
    choices = [
        {
            "index": index,
            "message": {"role": "assistant", "content": reply.content, "refusal": None},
            "logprobs": None,
            "finish_reason": "stop",
        }
        for index in range(n)
    ]
    return {
        "id": "chatcmpl-fake",
        "object": "chat.completion",
        "created": CREATED,
        "model": model,
        "choices": choices,
        "usage": _usage(reply.prompt_tokens, reply.content),
        "system_fingerprint": "fp_fake",
    }


def stream_events(model: str, content: str, *, prompt_tokens: int, include_usage: bool) -> list[bytes]:
    """The `data:` payloads of an OpenAI stream, [DONE] excluded: role, one per word, finish, usage."""
    base: dict[str, Any] = {"id": "chatcmpl-fake", "object": "chat.completion.chunk", "created": CREATED}
    base["model"] = model
    base["system_fingerprint"] = "fp_fake"
    extra = {"usage": None} if include_usage else {}

    def chunk(delta: dict[str, Any], finish: str | None) -> bytes:
        choice = {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}
        return json.dumps({**base, "choices": [choice], **extra}).encode()

    words = content.split()
    events = [chunk({"role": "assistant", "content": ""}, None)]
    events += [chunk({"content": word if i == 0 else " " + word}, None) for i, word in enumerate(words)]
    events.append(chunk({}, "stop"))
    if include_usage:
        events.append(json.dumps({**base, "choices": [], "usage": _usage(prompt_tokens, content)}).encode())
    return events


def _last_user_text(body: dict[str, Any]) -> str:
    users = [m for m in body.get("messages") or [] if isinstance(m, dict) and m.get("role") == "user"]
    content = users[-1].get("content") if users else None
    return content if isinstance(content, str) and content else "(nothing to echo)"


def _error_body(fail: Fail) -> dict[str, Any]:
    return {"error": {"message": fail.message, "type": fail.type, "param": fail.param, "code": fail.code}}


class FakeUpstream:
    """Start with `start()`, stop with `stop()`; `base_url` is what a provider row points at."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._scripts: dict[str, Behaviour] = {}
        self._received: list[Received] = []
        self._answers: dict[str, list[AnswerLog]] = {}
        self._loop: asyncio.AbstractEventLoop | None = None
        self._runner: web.AppRunner | None = None
        self._thread: threading.Thread | None = None
        self._socket: socket.socket | None = None
        self.port = 0

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    # --- scripting and inspection (called from the test thread) ---

    def script(self, model: str, behaviour: Behaviour) -> None:
        with self._lock:
            self._scripts[model] = behaviour

    def received(self, model: str | None = None) -> list[Received]:
        with self._lock:
            return [r for r in self._received if model is None or r.body.get("model") == model]

    def answers(self, model: str) -> list[AnswerLog]:
        """Logs of the streamed and hanging answers given for `model`, in order."""
        with self._lock:
            return list(self._answers.get(model, ()))

    def _log_answer(self, model: str) -> AnswerLog:
        log = AnswerLog()
        with self._lock:
            self._answers.setdefault(model, []).append(log)
        return log

    # --- lifecycle ---

    def start(self) -> None:
        self._socket = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._socket.bind(("127.0.0.1", 0))
        self.port = self._socket.getsockname()[1]
        ready = threading.Event()
        self._thread = threading.Thread(target=self._serve, args=(ready,), name="fake-openai-upstream", daemon=True)
        self._thread.start()
        if not ready.wait(10):
            raise RuntimeError("the fake upstream did not start within 10 s")

    def stop(self) -> None:
        if self._loop is None or self._thread is None:
            return
        asyncio.run_coroutine_threadsafe(self._cleanup(), self._loop).result(timeout=10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=10)
        self._loop.close()
        self._loop = None

    def _serve(self, ready: threading.Event) -> None:
        self._loop = asyncio.new_event_loop()
        asyncio.set_event_loop(self._loop)
        self._loop.run_until_complete(self._open())
        ready.set()
        self._loop.run_forever()

    async def _open(self) -> None:
        app = web.Application()
        app.router.add_post("/v1/chat/completions", self._chat)
        app.router.add_get("/v1/models", self._models)
        # Cancelling the handler when its client leaves is how the fake notices a disconnect;
        # a short shutdown timeout keeps a still-hanging request from holding up teardown.
        self._runner = web.AppRunner(app, handler_cancellation=True, access_log=None, shutdown_timeout=0.5)
        await self._runner.setup()
        assert self._socket is not None
        await web.SockSite(self._runner, self._socket).start()

    async def _cleanup(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    # --- request handling (on the fake's own loop) ---

    async def _models(self, request: web.Request) -> web.Response:
        with self._lock:
            names = sorted(self._scripts)
        data = [{"id": name, "object": "model", "created": CREATED, "owned_by": "fake"} for name in names]
        return web.json_response({"object": "list", "data": data})

    async def _chat(self, request: web.Request) -> web.StreamResponse:
        body = await request.json()
        headers = {name.lower(): value for name, value in request.headers.items()}
        with self._lock:
            self._received.append(Received(request.method, request.path, headers, body))
            behaviour = self._scripts.get(body.get("model"), Reply())
        model = str(body.get("model"))
        if isinstance(behaviour, Echo):
            behaviour = Reply(_last_user_text(body), delay=behaviour.delay)
        if isinstance(behaviour, Fail):
            return web.json_response(_error_body(behaviour), status=behaviour.status, headers=dict(behaviour.headers))
        if isinstance(behaviour, Hang):
            return await self._hang(model)
        if isinstance(behaviour, CloseBeforeAnswer):
            return await self._close(request)
        if isinstance(behaviour, DropMidStream):
            return await self._drop(request, model, behaviour)
        assert isinstance(behaviour, Reply)
        if body.get("stream"):
            return await self._stream(request, body, behaviour)
        return web.json_response(completion(model, behaviour, int(body.get("n") or 1)))

    async def _hang(self, model: str) -> web.StreamResponse:
        log = self._log_answer(model)
        try:
            await asyncio.Event().wait()  # ends only when the client leaves or the fake stops
        except asyncio.CancelledError:
            log.closed_early.set()
            raise
        raise AssertionError("unreachable")

    async def _close(self, request: web.Request) -> web.StreamResponse:
        assert request.transport is not None
        request.transport.close()
        await asyncio.Event().wait()  # cancelled as soon as the connection is gone
        raise AssertionError("unreachable")

    async def _drop(self, request: web.Request, model: str, drop: DropMidStream) -> web.StreamResponse:
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await response.prepare(request)
        for data in stream_events(model, drop.content, prompt_tokens=1, include_usage=False)[: drop.after]:
            await response.write(b"data: " + data + b"\n\n")
        return await self._close(request)

    async def _stream(self, request: web.Request, body: dict[str, Any], reply: Reply) -> web.StreamResponse:
        model = str(body.get("model"))
        include_usage = bool((body.get("stream_options") or {}).get("include_usage"))
        events = stream_events(model, reply.content, prompt_tokens=reply.prompt_tokens, include_usage=include_usage)
        log = self._log_answer(model)
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache"})
        try:
            await response.prepare(request)
            for index, data in enumerate(events):
                if index and reply.delay:
                    await asyncio.sleep(reply.delay)
                await response.write(b"data: " + data + b"\n\n")
                log.sent_at.append(time.monotonic())
            # Marked before [DONE] goes out: a client that has read [DONE] must find the stream finished.
            log.finished = True
            await response.write(b"data: [DONE]\n\n")
            await response.write_eof()
        except (asyncio.CancelledError, ConnectionResetError):
            log.closed_early.set()
            raise
        return response
