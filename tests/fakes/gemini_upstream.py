"""A fake Gemini API (Generative Language API, v1beta): a real aiohttp server on a free 127.0.0.1 port.

It speaks Gemini's wire protocol as Google serves it:

    POST /v1beta/models/{model}:generateContent                 a GenerateContentResponse
    POST /v1beta/models/{model}:streamGenerateContent?alt=sse   SSE of GenerateContentResponse objects
    POST /v1beta/models/{model}:embedContent                    {"embedding": {"values": [...]}}
    POST /v1beta/models/{model}:batchEmbedContents              {"embeddings": [{"values": [...]}, ...]}
    GET  /v1beta/models                                         {"models": [{"name": "models/…"}, ...]}

Requests must carry the `x-goog-api-key` given to the constructor: without one Gemini answers 403
PERMISSION_DENIED, with a wrong one 400 INVALID_ARGUMENT (reason API_KEY_INVALID), as Google does.
A body with a field Gemini does not know, or a turn without parts, is refused with Gemini's 400.
Errors are Google's `{"error": {"code", "message", "status", "details"}}`.

Behaviour is scripted per model name (the one in the path); a model with no script gets `Reply()`.

    gemini.script("gem-1", Reply("Hi there", delay=0.05))   answer (each candidate asked for), a word per event
    gemini.script("gem-2", CallTools())                     two parallel function calls, finishReason STOP
    gemini.script("gem-3", Blocked())                       the prompt refused: promptFeedback, no candidates
    gemini.script("gem-4", Fail(429))                       RESOURCE_EXHAUSTED with RetryInfo and QuotaFailure
    gemini.script("gem-5", FailMidStream(after=2))          two events, then an error event
    gemini.script("gem-6", CutOff(after=2))                 two events, then the connection closes

Stream events end in CRLF CRLF, as Google's do.
"""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from tests.fakes.base import ScriptedServer

__all__ = ["DEFAULT_CALLS", "Blocked", "CallTools", "CutOff", "Fail", "FailMidStream", "FakeGemini", "Reply"]

MODEL_VERSION = "gemini-2.5-flash-fake-001"
RESPONSE_ID = "fakeGeminiResponse01"
DEFAULT_CALLS: tuple[tuple[str, dict[str, Any]], ...] = (
    ("get_weather", {"city": "Paris", "unit": "celsius"}),
    ("get_weather", {"city": "Tokyo", "unit": "celsius"}),
)
# The fields of a GenerateContentRequest body, and of its generationConfig, that this fake knows.
_REQUEST_FIELDS = frozenset(
    {"contents", "systemInstruction", "tools", "toolConfig", "generationConfig", "safetySettings", "cachedContent"}
)
_CONFIG_FIELDS = frozenset(
    {
        "temperature",
        "topP",
        "topK",
        "seed",
        "presencePenalty",
        "frequencyPenalty",
        "maxOutputTokens",
        "stopSequences",
        "candidateCount",
        "responseMimeType",
        "responseSchema",
        "thinkingConfig",
    }
)
_STATUS_NAMES = {
    400: "INVALID_ARGUMENT",
    401: "UNAUTHENTICATED",
    403: "PERMISSION_DENIED",
    404: "NOT_FOUND",
    429: "RESOURCE_EXHAUSTED",
    500: "INTERNAL",
    503: "UNAVAILABLE",
    504: "DEADLINE_EXCEEDED",
}


@dataclass(frozen=True)
class Reply:
    content: str = "Hello from the fake Gemini."
    prompt_tokens: int = 9
    thoughts_tokens: int = 0  # if any, a thought part comes first, which must not reach the client
    cached_tokens: int = 0
    finish_reason: str = "STOP"
    delay: float = 0.0  # seconds between two stream events


@dataclass(frozen=True)
class CallTools:
    calls: tuple[tuple[str, dict[str, Any]], ...] = DEFAULT_CALLS
    text: str = ""  # said before the calls
    signature: str = ""  # a thinking model's thoughtSignature on the first call
    prompt_tokens: int = 57


@dataclass(frozen=True)
class Blocked:
    reason: str = "SAFETY"
    prompt_tokens: int = 8


@dataclass(frozen=True)
class Fail:
    status: int
    message: str = "The fake Gemini refused the request."
    status_name: str = ""  # Google's canonical status; by default the one of `status`
    details: tuple[dict[str, Any], ...] | None = None  # by default RetryInfo and QuotaFailure for a 429
    headers: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class FailMidStream:
    after: int = 2
    status: int = 503
    message: str = "The model is overloaded. Please try again later."


@dataclass(frozen=True)
class CutOff:
    after: int = 2
    content: str = "this answer never reaches its end"


Behaviour = Reply | CallTools | Blocked | Fail | FailMidStream | CutOff


@dataclass(frozen=True)
class Received:
    """One request as the fake saw it; `model` is the one its path names. Header names are lower-cased."""

    method: str
    path: str
    query: str
    headers: dict[str, str]
    model: str
    body: dict[str, Any] = field(default_factory=dict)


def error_body(status: int, message: str, status_name: str = "", details: Any = None) -> dict[str, Any]:
    error: dict[str, Any] = {"code": status, "message": message, "status": status_name or _STATUS_NAMES[status]}
    if details:
        error["details"] = list(details)
    return {"error": error}


def _error(status: int, message: str, status_name: str = "", details: Any = None, headers: Any = None) -> web.Response:
    return web.json_response(error_body(status, message, status_name, details), status=status, headers=headers)


def rate_limit_details() -> tuple[dict[str, Any], ...]:
    violation = {
        "quotaMetric": "generativelanguage.googleapis.com/generate_content_free_tier_input_token_count",
        "quotaId": "GenerateContentInputTokensPerModelPerMinute-FreeTier",
    }
    return (
        {"@type": "type.googleapis.com/google.rpc.QuotaFailure", "violations": [violation]},
        {"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": "16.5s"},
    )


def usage(prompt: int, candidates: int, *, thoughts: int = 0, cached: int = 0) -> dict[str, Any]:
    metadata: dict[str, Any] = {
        "promptTokenCount": prompt,
        "candidatesTokenCount": candidates,
        "totalTokenCount": prompt + candidates + thoughts,
        "promptTokensDetails": [{"modality": "TEXT", "tokenCount": prompt}],
    }
    if thoughts:
        metadata["thoughtsTokenCount"] = thoughts
    if cached:
        metadata["cachedContentTokenCount"] = cached
    return metadata


def _response(candidates: list[dict[str, Any]], metadata: dict[str, Any]) -> dict[str, Any]:
    return {
        "candidates": candidates,
        "usageMetadata": metadata,
        "modelVersion": MODEL_VERSION,
        "responseId": RESPONSE_ID,
    }


def _candidate(index: int, parts: list[dict[str, Any]], finish: str | None = None) -> dict[str, Any]:
    candidate: dict[str, Any] = {"content": {"parts": parts, "role": "model"}, "index": index}
    if finish:
        candidate["finishReason"] = finish
    return candidate


def reply_events(reply: Reply, count: int) -> list[dict[str, Any]]:
    """A streamed reply: a thought first if any, a word per event, the last carrying the finish and the counts."""
    words = reply.content.split()
    events: list[dict[str, Any]] = []
    if reply.thoughts_tokens:
        thought = [{"text": "Thinking about the weather of 12231 places.", "thought": True}]
        events.append(_response([_candidate(i, thought) for i in range(count)], usage(reply.prompt_tokens, 0)))
    for position, word in enumerate(words):
        text = word if position == 0 else f" {word}"
        last = position == len(words) - 1
        candidates = [_candidate(i, [{"text": text}], reply.finish_reason if last else None) for i in range(count)]
        so_far = (position + 1) * count
        thoughts = reply.thoughts_tokens if last else 0
        metadata = usage(reply.prompt_tokens, so_far, thoughts=thoughts, cached=reply.cached_tokens)
        events.append(_response(candidates, metadata))
    return events


def whole_reply(reply: Reply, count: int) -> dict[str, Any]:
    parts: list[dict[str, Any]] = []
    if reply.thoughts_tokens:
        parts.append({"text": "Thinking about the weather of 12231 places.", "thought": True})
    parts.append({"text": reply.content})
    words = len(reply.content.split()) * count
    metadata = usage(reply.prompt_tokens, words, thoughts=reply.thoughts_tokens, cached=reply.cached_tokens)
    return _response([_candidate(i, parts, reply.finish_reason) for i in range(count)], metadata)


def tool_events(tools: CallTools) -> list[dict[str, Any]]:
    """Gemini sends text and each call whole; here the text, then all the calls with the finish."""
    events = []
    if tools.text:
        events.append(_response([_candidate(0, [{"text": tools.text}])], usage(tools.prompt_tokens, 6)))
    calls: list[dict[str, Any]] = []
    for position, (name, args) in enumerate(tools.calls):
        part: dict[str, Any] = {"functionCall": {"name": name, "args": args}}
        if position == 0 and tools.signature:
            part["thoughtSignature"] = tools.signature
        calls.append(part)
    events.append(_response([_candidate(0, calls, "STOP")], usage(tools.prompt_tokens, 6 + 10 * len(calls))))
    return events


def whole_tools(tools: CallTools) -> dict[str, Any]:
    events = tool_events(tools)
    parts = [part for event in events for part in event["candidates"][0]["content"]["parts"]]
    return _response([_candidate(0, parts, "STOP")], events[-1]["usageMetadata"])


def blocked_answer(blocked: Blocked) -> dict[str, Any]:
    metadata = {"promptTokenCount": blocked.prompt_tokens, "totalTokenCount": blocked.prompt_tokens}
    return {"promptFeedback": {"blockReason": blocked.reason}, "usageMetadata": metadata, "modelVersion": MODEL_VERSION}


def vector(text: str) -> list[float]:
    """A small, deterministic embedding that tells texts apart."""
    return [float(len(text)), float(sum(map(ord, text)) % 89) / 4, 0.25]


def _refusal(body: Any) -> str | None:
    """Gemini's complaint about a generateContent body, or None if it would take it."""
    if not isinstance(body, dict):
        return "Invalid JSON payload received."
    unknown = sorted(set(body) - _REQUEST_FIELDS)
    if unknown:
        return f'Invalid JSON payload received. Unknown name "{unknown[0]}": Cannot find field.'
    unknown = sorted(set(body.get("generationConfig") or {}) - _CONFIG_FIELDS)
    if unknown:
        return f'Invalid JSON payload received. Unknown name "{unknown[0]}" in generation_config: Cannot find field.'
    contents = body.get("contents")
    if not contents:
        return "* GenerateContentRequest.contents: contents is not specified"
    for index, turn in enumerate(contents):
        if turn.get("role") not in ("user", "model") or not turn.get("parts"):
            return f"* GenerateContentRequest.contents[{index}].parts: contents.parts must not be empty."
    return None


class FakeGemini(ScriptedServer["Behaviour", "Received"]):
    """Start with `start()`, stop with `stop()`; `base_url` is what a provider row points at."""

    name = "fake-gemini"

    def __init__(self, api_key: str | None = None) -> None:
        super().__init__()
        self.api_key = api_key
        self._runner: web.AppRunner | None = None

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def received(self, model: str | None = None) -> list[Received]:
        with self._lock:
            return [r for r in self._received if model is None or r.model == model]

    # --- lifecycle ---

    async def _open(self) -> None:
        app = web.Application()
        app.router.add_post("/v1beta/models/{target}", self._call)
        app.router.add_get("/v1beta/models", self._models)
        self._runner = web.AppRunner(app, handler_cancellation=True, access_log=None, shutdown_timeout=0.5)
        await self._runner.setup()
        assert self._socket is not None
        await web.SockSite(self._runner, self._socket).start()

    async def _cleanup(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    # --- request handling (on the fake's own loop) ---

    def _record(self, request: web.Request, model: str, body: dict[str, Any]) -> Behaviour:
        headers = {name.lower(): value for name, value in request.headers.items()}
        with self._lock:
            self._received.append(Received(request.method, request.path, request.query_string, headers, model, body))
            return self._scripts.get(model, Reply())

    def _key_refusal(self, request: web.Request) -> web.Response | None:
        if self.api_key is None:
            return None
        given = request.headers.get("x-goog-api-key")
        if given is None:
            return _error(403, "Method doesn't allow unregistered callers (callers without established identity).")
        if given != self.api_key:
            info = {
                "@type": "type.googleapis.com/google.rpc.ErrorInfo",
                "reason": "API_KEY_INVALID",
                "domain": "googleapis.com",
                "metadata": {"service": "generativelanguage.googleapis.com"},
            }
            return _error(400, "API key not valid. Please pass a valid API key.", details=[info])
        return None

    async def _models(self, request: web.Request) -> web.Response:
        self._record(request, "", {})
        if (refusal := self._key_refusal(request)) is not None:
            return refusal
        with self._lock:
            names = sorted(self._scripts)
        models = [
            {"name": f"models/{name}", "displayName": name.title(), "supportedGenerationMethods": ["generateContent"]}
            for name in names
        ]
        return web.json_response({"models": models})

    async def _call(self, request: web.Request) -> web.StreamResponse:
        model, _, method = request.match_info["target"].partition(":")
        try:
            body = json.loads(await request.read())
        except ValueError:
            body = None
        behaviour = self._record(request, model, body if isinstance(body, dict) else {})
        if (refusal := self._key_refusal(request)) is not None:
            return refusal
        if isinstance(behaviour, Fail):
            details = behaviour.details
            if details is None and behaviour.status == 429:
                details = rate_limit_details()
            headers = behaviour.headers
            return _error(behaviour.status, behaviour.message, behaviour.status_name, details, headers)
        if method in ("embedContent", "batchEmbedContents"):
            return self._embed(model, method, body)
        if method not in ("generateContent", "streamGenerateContent"):
            return _error(404, f"Method {method} of models/{model} is not found.")
        if (problem := _refusal(body)) is not None:
            return _error(400, problem)
        count = int((body.get("generationConfig") or {}).get("candidateCount") or 1)
        if method == "generateContent":
            return web.json_response(self._whole(behaviour, count))
        if request.query.get("alt") != "sse":
            return _error(400, "This fake streams server-sent events only: ask with alt=sse.")
        return await self._stream(request, behaviour, count)

    def _whole(self, behaviour: Behaviour, count: int) -> dict[str, Any]:
        if isinstance(behaviour, CallTools):
            return whole_tools(behaviour)
        if isinstance(behaviour, Blocked):
            return blocked_answer(behaviour)
        if isinstance(behaviour, Reply):
            return whole_reply(behaviour, count)
        return whole_reply(Reply(), count)  # a stream's failure modes have nothing to break when not streaming

    def _embed(self, model: str, method: str, body: Any) -> web.Response:
        requests = [body] if method == "embedContent" else (body or {}).get("requests") or []
        vectors = []
        for request in requests:
            if method == "batchEmbedContents" and request.get("model") != f"models/{model}":
                return _error(400, f"Model {request.get('model')} does not match the one in the path models/{model}.")
            text = "".join(part.get("text", "") for part in request["content"]["parts"])
            values = vector(text)
            if request.get("outputDimensionality"):
                values = values[: request["outputDimensionality"]]
            vectors.append({"values": values})
        if method == "embedContent":
            return web.json_response({"embedding": vectors[0]})
        return web.json_response({"embeddings": vectors})

    async def _stream(self, request: web.Request, behaviour: Behaviour, count: int) -> web.StreamResponse:
        delay, cut = 0.0, False
        if isinstance(behaviour, Reply):
            events, delay = reply_events(behaviour, count), behaviour.delay
        elif isinstance(behaviour, CallTools):
            events = tool_events(behaviour)
        elif isinstance(behaviour, Blocked):
            events = [blocked_answer(behaviour)]
        elif isinstance(behaviour, FailMidStream):
            events = reply_events(Reply("Once upon a time, in a land far away"), 1)[: behaviour.after]
            events.append(error_body(behaviour.status, behaviour.message))
        else:
            assert isinstance(behaviour, CutOff)
            events, cut = reply_events(Reply(behaviour.content), 1)[: behaviour.after], True
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await response.prepare(request)
        for position, event in enumerate(events):
            if position and delay:
                await asyncio.sleep(delay)
            await response.write(b"data: " + json.dumps(event).encode() + b"\r\n\r\n")
        if cut:
            assert request.transport is not None
            request.transport.close()
            await asyncio.Event().wait()  # cancelled as soon as the connection is gone
        await response.write_eof()
        return response
