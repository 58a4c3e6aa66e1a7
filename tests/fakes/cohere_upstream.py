"""A fake Cohere API v2: a real aiohttp server on a free 127.0.0.1 port.

Like `tests.fakes.ollama_upstream`, it runs in a background thread with its own event loop and
records every request, so tests can assert the body Portico sent. It speaks Cohere's wire
protocol: `POST /v2/chat`, whole or streamed as SSE typed events (`event:` and `data:` lines,
no `[DONE]`), `POST /v2/embed` and `GET /v1/models`. Requests must carry the bearer key given to
the constructor, as Cohere's would; errors are Cohere's `{"message": ...}` bodies.

Behaviour is scripted per upstream model name; a model with no script gets `Reply()`.

    cohere.script("command-1", Reply("Hi there"))               answer, one content-delta per word if streaming
    cohere.script("command-2", CallTools())                     a tool plan, then two tool calls
    cohere.script("command-3", CutOff(after=2))                 stream 2 deltas, then close before message-end
    cohere.script("command-4", Fail(429, "trial key limit"))    an error status with Cohere's body
    cohere.script("command-5", FailMidStream(after=1))          stream, then a message-end with finish reason ERROR
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any

import orjson
from aiohttp import web

from tests.fakes.base import ScriptedServer

ANSWER_ID = "c14c80c3-18eb-4519-9460-6c92edd8cfb4"
DEFAULT_PLAN = "I will look up the weather in Paris and in Lyon."
DEFAULT_CALLS: tuple[tuple[str, str, dict[str, Any]], ...] = (
    ("get_current_weather_9mz4x0ahp1kg", "get_current_weather", {"location": "Paris, FR", "unit": "celsius"}),
    ("get_current_weather_r3n8w2tq6vyb", "get_current_weather", {"location": "Lyon, FR", "unit": "celsius"}),
)
# The words of its own prompt template Cohere adds to every prompt: `tokens` counts them, `billed_units` does not.
TEMPLATE_TOKENS = 60


@dataclass(frozen=True)
class Reply:
    content: str = "Hello from the fake Cohere."
    input_tokens: int = 12  # billed; the model's own count adds TEMPLATE_TOKENS
    finish_reason: str = "COMPLETE"
    billed_only: bool = False  # usage with `billed_units` only, as some deployments answer
    template_tokens: int = TEMPLATE_TOKENS  # what the model's own count adds to `input_tokens`
    error: str = ""  # the detail Cohere may give with an ERROR or TIMEOUT finish


@dataclass(frozen=True)
class CallTools:
    calls: tuple[tuple[str, str, dict[str, Any]], ...] = DEFAULT_CALLS
    tool_plan: str = DEFAULT_PLAN
    input_tokens: int = 140


@dataclass(frozen=True)
class CutOff:
    """Send `after` content deltas, then close the connection without `message-end`."""

    after: int = 2
    content: str = "this answer never reaches its end"


@dataclass(frozen=True)
class Fail:
    status: int
    message: str = "the fake Cohere refused the request"
    headers: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class FailMidStream:
    """Start streaming with HTTP 200, then end the message with a failed finish reason."""

    after: int = 1
    finish_reason: str = "ERROR"


Behaviour = Reply | CallTools | CutOff | Fail | FailMidStream


@dataclass(frozen=True)
class Received:
    """One request as the fake saw it. Header names are lower-cased."""

    method: str
    path: str
    headers: dict[str, str]
    body: dict[str, Any] = field(default_factory=dict)


def usage(
    billed_input: int, output: int, *, billed_only: bool = False, template_tokens: int = TEMPLATE_TOKENS
) -> dict[str, Any]:
    billed = {"input_tokens": billed_input, "output_tokens": output}
    if billed_only:
        return {"billed_units": billed}
    return {"billed_units": billed, "tokens": {"input_tokens": billed_input + template_tokens, "output_tokens": output}}


def _event(data: dict[str, Any]) -> bytes:
    return b"event: " + data["type"].encode() + b"\ndata: " + orjson.dumps(data) + b"\n\n"


def _start() -> dict[str, Any]:
    message = {"role": "assistant", "content": [], "tool_plan": "", "tool_calls": [], "citations": []}
    return {"id": ANSWER_ID, "type": "message-start", "delta": {"message": message}}


def _text_delta(text: str) -> dict[str, Any]:
    return {"type": "content-delta", "index": 0, "delta": {"message": {"content": {"text": text}}}}


def _words(content: str) -> list[str]:
    return [word if i == 0 else f" {word}" for i, word in enumerate(content.split())]


def reply_events(reply: Reply) -> list[dict[str, Any]]:
    words = _words(reply.content)
    opened = {"type": "content-start", "index": 0, "delta": {"message": {"content": {"type": "text", "text": ""}}}}
    end = {
        "type": "message-end",
        "delta": {
            "finish_reason": reply.finish_reason,
            "usage": usage(
                reply.input_tokens, len(words), billed_only=reply.billed_only, template_tokens=reply.template_tokens
            ),
        },
    }
    if reply.error:
        end["delta"]["error"] = reply.error
    return [
        _start(),
        opened,
        *(_text_delta(word) for word in words),
        {"type": "content-end", "index": 0},
        end,
    ]


def _fragments(text: str, size: int = 12) -> list[str]:
    return [text[at : at + size] for at in range(0, len(text), size)]


def tool_call_events(tools: CallTools) -> list[dict[str, Any]]:
    """A plan word by word, then each call opened with its id and name and fed its arguments in fragments."""
    events = [_start()]
    events += [
        {"type": "tool-plan-delta", "delta": {"message": {"tool_plan": word}}} for word in _words(tools.tool_plan)
    ]
    for index, (call_id, name, arguments) in enumerate(tools.calls):
        call = {"id": call_id, "type": "function", "function": {"name": name, "arguments": ""}}
        events.append({"type": "tool-call-start", "index": index, "delta": {"message": {"tool_calls": call}}})
        for fragment in _fragments(orjson.dumps(arguments).decode()):
            delta = {"message": {"tool_calls": {"function": {"arguments": fragment}}}}
            events.append({"type": "tool-call-delta", "index": index, "delta": delta})
        events.append({"type": "tool-call-end", "index": index})
    end = {"finish_reason": "TOOL_CALL", "usage": usage(tools.input_tokens, 41)}
    return [*events, {"type": "message-end", "delta": end}]


def whole_answer(events: list[dict[str, Any]]) -> dict[str, Any]:
    """The non-streamed answer a stream adds up to."""
    text, plan = "", ""
    calls: list[dict[str, Any]] = []
    end: dict[str, Any] = {}
    for event in events:
        message = (event.get("delta") or {}).get("message") or {}
        if event["type"] == "content-delta":
            text += message["content"]["text"]
        elif event["type"] == "tool-plan-delta":
            plan += message["tool_plan"]
        elif event["type"] == "tool-call-start":
            calls.append(message["tool_calls"])
        elif event["type"] == "tool-call-delta":
            calls[-1]["function"]["arguments"] += message["tool_calls"]["function"]["arguments"]
        elif event["type"] == "message-end":
            end = event["delta"]
    answer: dict[str, Any] = {"role": "assistant"}
    if text:
        answer["content"] = [{"type": "text", "text": text}]
    if calls:
        answer["tool_plan"], answer["tool_calls"] = plan, calls
    whole = {"id": ANSWER_ID, "message": answer, "finish_reason": end["finish_reason"], "usage": end["usage"]}
    if "error" in end:
        whole["error"] = end["error"]
    return whole


def vector(text: str) -> list[float]:
    """A small, deterministic embedding that tells texts apart."""
    return [float(len(text)), float(sum(map(ord, text)) % 89) / 8, 0.25]


def _error(status: int, message: str, headers: dict[str, str] | None = None) -> web.Response:
    return web.json_response({"id": "5f1f6b4e-fake", "message": message}, status=status, headers=headers)


class FakeCohere(ScriptedServer["Behaviour", "Received"]):
    """Start with `start()`, stop with `stop()`; `base_url` is what a `cohere` provider row points at."""

    name = "fake-cohere"

    def __init__(self, api_key: str | None = None) -> None:
        super().__init__()
        self.api_key = api_key
        self._runner: web.AppRunner | None = None

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def _open(self) -> None:
        app = web.Application()
        app.router.add_post("/v2/chat", self._chat)
        app.router.add_post("/v2/embed", self._embed)
        app.router.add_get("/v1/models", self._models)
        self._runner = web.AppRunner(app, handler_cancellation=True, access_log=None, shutdown_timeout=0.5)
        await self._runner.setup()
        assert self._socket is not None
        await web.SockSite(self._runner, self._socket).start()

    async def _cleanup(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    async def _record(self, request: web.Request) -> tuple[dict[str, Any], Behaviour]:
        body = orjson.loads(await request.read()) if request.can_read_body else {}
        headers = {name.lower(): value for name, value in request.headers.items()}
        with self._lock:
            self._received.append(Received(request.method, request.path_qs, headers, body))
            return body, self._scripts.get(str(body.get("model")), Reply())

    def _refusal(self, request: web.Request) -> web.Response | None:
        """Cohere's answer to a request without the right bearer key, else None."""
        if self.api_key is not None and request.headers.get("authorization") != f"Bearer {self.api_key}":
            return _error(401, "invalid api token")
        return None

    async def _models(self, request: web.Request) -> web.Response:
        await self._record(request)
        if (refused := self._refusal(request)) is not None:
            return refused
        with self._lock:
            names = sorted(self._scripts)
        models = [{"name": name, "endpoints": ["chat"], "finetuned": False, "context_length": 128000} for name in names]
        return web.json_response({"models": models})

    async def _embed(self, request: web.Request) -> web.Response:
        body, behaviour = await self._record(request)
        if (refused := self._refusal(request)) is not None:
            return refused
        if isinstance(behaviour, Fail):
            return _error(behaviour.status, behaviour.message, behaviour.headers)
        if not body.get("input_type") or body.get("embedding_types") != ["float"]:
            return _error(400, "invalid request: input_type and embedding_types are required for embed v3 and newer.")
        texts = body["texts"]
        answer = {
            "id": "da6e531f-54c6-4a73-bf92-f60566d8d753",
            "embeddings": {"float": [vector(text) for text in texts]},
            "texts": texts,
            "meta": {"api_version": {"version": "2"}, "billed_units": {"input_tokens": sum(map(len, texts)) // 4 + 1}},
            "response_type": "embeddings_by_type",
        }
        return web.json_response(answer)

    async def _chat(self, request: web.Request) -> web.StreamResponse:
        body, behaviour = await self._record(request)
        if (refused := self._refusal(request)) is not None:
            return refused
        if not isinstance(body.get("messages"), list) or not body["messages"]:
            return _error(400, "invalid request: messages must contain at least one message")
        if isinstance(behaviour, Fail):
            return _error(behaviour.status, behaviour.message, behaviour.headers)
        if isinstance(behaviour, Reply | CallTools):
            events = reply_events(behaviour) if isinstance(behaviour, Reply) else tool_call_events(behaviour)
            if body.get("stream"):
                return await self._stream(request, events)
            return web.json_response(whole_answer(events))
        if isinstance(behaviour, CutOff):
            events = reply_events(Reply(behaviour.content))[: 2 + behaviour.after]
            return await self._stream(request, events, cut=True)
        events = reply_events(Reply("partial answer"))[: 2 + behaviour.after]
        events.append({"type": "message-end", "delta": {"finish_reason": behaviour.finish_reason}})
        return await self._stream(request, events)

    async def _stream(
        self, request: web.Request, events: list[dict[str, Any]], *, cut: bool = False
    ) -> web.StreamResponse:
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await response.prepare(request)
        for event in events:
            await response.write(_event(event))
        if cut:
            assert request.transport is not None
            request.transport.close()
            await asyncio.Event().wait()  # cancelled as soon as the connection is gone
        await response.write_eof()
        return response
