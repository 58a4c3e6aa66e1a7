"""A fake Ollama server speaking Ollama's native API: a real aiohttp server on a free 127.0.0.1 port.

Like `tests.fakes.openai_upstream`, it runs in a background thread with its own
event loop and records every request, so tests can assert the body Portico sent.

Behaviour is scripted per upstream model name; a model with no script gets `Reply()`.

    ollama.script("llama-1", Reply("Hi there"))          answer, NDJSON line per word if streaming
    ollama.script("llama-2", CallTools())                answer with two tool calls
    ollama.script("llama-3", CutOff(after=2))            stream 2 lines, then close before `done: true`
    ollama.script("llama-4", Fail(404, "model ..."))     an error status with Ollama's `{"error": ...}` body
    ollama.script("llama-5", FailMidStream(after=1))     stream, then an `{"error": ...}` line

`/api/embed` answers every text with a small vector derived from it; `/api/tags` lists the scripted models.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any

import orjson
from aiohttp import web

from tests.fakes.base import ScriptedServer

CREATED_AT = "2024-07-22T20:33:28.123648Z"
DEFAULT_CALLS: tuple[tuple[str, dict[str, Any]], ...] = (
    ("get_current_weather", {"location": "Paris, FR", "format": "celsius"}),
    ("get_current_weather", {"location": "Lyon, FR", "format": "celsius"}),
)


@dataclass(frozen=True)
class Reply:
    content: str = "Hello from the fake Ollama."
    prompt_eval_count: int = 26
    done_reason: str = "stop"


@dataclass(frozen=True)
class CallTools:
    calls: tuple[tuple[str, dict[str, Any]], ...] = DEFAULT_CALLS
    prompt_eval_count: int = 122


@dataclass(frozen=True)
class CutOff:
    """Send `after` content lines, then close the connection without the final `done: true` line."""

    after: int = 2
    content: str = "this answer never reaches its end"


@dataclass(frozen=True)
class Fail:
    status: int
    message: str = "the fake Ollama refused the request"


@dataclass(frozen=True)
class FailMidStream:
    """Start streaming with HTTP 200, then report an error in a line, as Ollama does when a runner dies."""

    after: int = 1
    message: str = "an error was encountered while running the model"


Behaviour = Reply | CallTools | CutOff | Fail | FailMidStream


@dataclass(frozen=True)
class Received:
    """One request as the fake saw it. Header names are lower-cased."""

    method: str
    path: str
    headers: dict[str, str]
    body: dict[str, Any] = field(default_factory=dict)


def line(model: str, *, content: str = "", done: bool = False, **extra: Any) -> dict[str, Any]:
    answer: dict[str, Any] = {"model": model, "created_at": CREATED_AT}
    answer["message"] = {"role": "assistant", "content": content, **extra.pop("message_extra", {})}
    answer["done"] = done
    return {**answer, **extra}


def final_line(model: str, *, done_reason: str, prompt_eval_count: int, eval_count: int) -> dict[str, Any]:
    return line(
        model,
        done=True,
        done_reason=done_reason,
        total_duration=4_883_583_458,
        load_duration=1_334_875,
        prompt_eval_count=prompt_eval_count,
        prompt_eval_duration=342_546_000,
        eval_count=eval_count,
        eval_duration=4_535_599_000,
    )


def reply_lines(model: str, reply: Reply) -> list[dict[str, Any]]:
    """The lines of a streamed reply: one per word, then the final statistics."""
    words = reply.content.split()
    lines = [line(model, content=word if i == 0 else " " + word) for i, word in enumerate(words)]
    final = final_line(
        model, done_reason=reply.done_reason, prompt_eval_count=reply.prompt_eval_count, eval_count=len(words)
    )
    return [*lines, final]


def tool_call_lines(model: str, tools: CallTools) -> list[dict[str, Any]]:
    """Ollama sends all the calls of an answer in one line, arguments as objects."""
    calls = [
        {"function": {"index": index, "name": name, "arguments": arguments}}
        for index, (name, arguments) in enumerate(tools.calls)
    ]
    final = final_line(model, done_reason="stop", prompt_eval_count=tools.prompt_eval_count, eval_count=33)
    return [line(model, message_extra={"tool_calls": calls}), final]


def whole_answer(lines: list[dict[str, Any]]) -> dict[str, Any]:
    """The non-streamed answer: the last line, holding the whole message."""
    message: dict[str, Any] = {"role": "assistant", "content": ""}
    for part in lines:
        message["content"] += part["message"]["content"]
        if part["message"].get("tool_calls"):
            message["tool_calls"] = part["message"]["tool_calls"]
    return {**lines[-1], "message": message}


def vector(text: str) -> list[float]:
    """A small, deterministic embedding that tells texts apart."""
    return [float(len(text)), float(sum(map(ord, text)) % 97) / 8, -0.5]


class FakeOllama(ScriptedServer["Behaviour", "Received"]):
    """Start with `start()`, stop with `stop()`; `base_url` is what an Ollama provider row points at."""

    name = "fake-ollama"

    def __init__(self) -> None:
        super().__init__()
        self._runner: web.AppRunner | None = None

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    # --- lifecycle ---

    async def _open(self) -> None:
        app = web.Application()
        app.router.add_post("/api/chat", self._chat)
        app.router.add_post("/api/embed", self._embed)
        app.router.add_get("/api/tags", self._tags)
        self._runner = web.AppRunner(app, handler_cancellation=True, access_log=None, shutdown_timeout=0.5)
        await self._runner.setup()
        assert self._socket is not None
        await web.SockSite(self._runner, self._socket).start()

    async def _cleanup(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    # --- request handling (on the fake's own loop) ---

    async def _record(self, request: web.Request) -> tuple[dict[str, Any], Behaviour]:
        body = orjson.loads(await request.read()) if request.can_read_body else {}
        headers = {name.lower(): value for name, value in request.headers.items()}
        with self._lock:
            self._received.append(Received(request.method, request.path, headers, body))
            return body, self._scripts.get(str(body.get("model")), Reply())

    async def _tags(self, request: web.Request) -> web.Response:
        await self._record(request)
        with self._lock:
            names = sorted(self._scripts)
        models = [{"name": name, "model": name, "modified_at": CREATED_AT, "size": 1} for name in names]
        return web.json_response({"models": models})

    async def _embed(self, request: web.Request) -> web.Response:
        body, behaviour = await self._record(request)
        if isinstance(behaviour, Fail):
            return web.json_response({"error": behaviour.message}, status=behaviour.status)
        texts = [body["input"]] if isinstance(body["input"], str) else body["input"]
        answer = {
            "model": body["model"],
            "embeddings": [vector(text) for text in texts],
            "total_duration": 14_143_917,
            "load_duration": 1_019_500,
            "prompt_eval_count": sum(len(text.split()) for text in texts),
        }
        return web.json_response(answer)

    async def _chat(self, request: web.Request) -> web.StreamResponse:
        body, behaviour = await self._record(request)
        model = str(body.get("model"))
        if isinstance(behaviour, Fail):
            return web.json_response({"error": behaviour.message}, status=behaviour.status)
        if isinstance(behaviour, Reply | CallTools):
            lines = reply_lines(model, behaviour) if isinstance(behaviour, Reply) else tool_call_lines(model, behaviour)
            # Ollama streams unless the request says `"stream": false`.
            if body.get("stream", True):
                return await self._stream(request, lines)
            return web.json_response(whole_answer(lines))
        if isinstance(behaviour, CutOff):
            words = behaviour.content.split()[: behaviour.after]
            return await self._stream(request, [line(model, content=" " + word) for word in words], cut=True)
        error = {"error": behaviour.message}
        return await self._stream(request, [line(model, content="partial")] * behaviour.after + [error])

    async def _stream(
        self, request: web.Request, lines: list[dict[str, Any]], *, cut: bool = False
    ) -> web.StreamResponse:
        response = web.StreamResponse(headers={"Content-Type": "application/x-ndjson"})
        await response.prepare(request)
        for answer in lines:
            await response.write(orjson.dumps(answer) + b"\n")
        if cut:
            assert request.transport is not None
            request.transport.close()
            await asyncio.Event().wait()  # cancelled as soon as the connection is gone
        await response.write_eof()
        return response
