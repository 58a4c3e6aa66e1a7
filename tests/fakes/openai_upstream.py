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
    upstream.script("fake-7", QuoteHeader("authorization"))    an error whose every field quotes a request header
    upstream.script("fake-8", FailMidStream(Fail(500)))         stream the role, then an error event
    upstream.script("fake-9", Deviate(Reply("Hi")))             answer as a loosely compatible server does

Besides chat it serves every other endpoint Portico relays, each answering as
OpenAI does: /completions (legacy, whole or streamed), /embeddings (floats, or
base64 when asked), /moderations, /images/generations and /audio/transcriptions
(multipart: the text fields are recorded as the body, each file as its size and
SHA-256; the transcript comes as json, text, srt, vtt or verbose_json). Asked
to stream, images and transcriptions answer as OpenAI's typed events do (`event:`
and `data:` lines, no [DONE]): `partial_images` partial images then one
`image_generation.completed` per image, or one `transcript.text.delta` per word
then `transcript.text.done`, the final events with usage. Scripts
apply there too: `Fail`, `Hang` and `CloseBeforeAnswer` everywhere, a `Reply`'s
content as the completion or the transcript, `Echo` as the prompt.

Every behaviour, and the scripts that choose one per request (`Cycle`, `Steps`,
`Flaky`), is described in `tests.fakes.behaviours`. A script for the model
`ANY_MODEL` answers every model without one of its own. A server started with a
`label` (see `tests.fakes.fleet` for several at once) says who it is: its
default answer is "served by <label>", and every response carries an
`x-fake-upstream: <label>` header.

One server speaks every endpoint, hence a module longer than most; its answer
builders are small pure functions.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import socket
import struct
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

from aiohttp import BodyPartReader, web

from tests.fakes.base import ScriptedServer
from tests.fakes.behaviours import (
    DEFAULT_CONTENT,
    Behaviour,
    CloseBeforeAnswer,
    Deviate,
    DropMidStream,
    Echo,
    Fail,
    FailMidStream,
    Hang,
    Quirks,
    QuoteHeader,
    Reply,
    Script,
    Stall,
    resolve,
)

__all__ = [
    "ANY_MODEL",
    "FAKE_PNG",
    "AnswerLog",
    "Behaviour",
    "CloseBeforeAnswer",
    "Deviate",
    "DropMidStream",
    "Echo",
    "Fail",
    "FailMidStream",
    "FakeUpstream",
    "Hang",
    "QuoteHeader",
    "Quirks",
    "Received",
    "Reply",
    "Stall",
    "completion",
    "embedding",
    "image_events",
    "image_usage",
    "stream_events",
    "transcript_events",
    "transcript_usage",
]

ANY_MODEL = "*"  # the script of every model that has none of its own

CREATED = 1_700_000_000
EMBEDDING_SIZE = 4  # the length of a vector when the request names no `dimensions`
FLAGGED_WORD = "kill"  # moderation flags (as violence) any input holding it
MODERATION_CATEGORIES = (
    "harassment",
    "harassment/threatening",
    "hate",
    "hate/threatening",
    "illicit",
    "illicit/violent",
    "self-harm",
    "self-harm/instructions",
    "self-harm/intent",
    "sexual",
    "sexual/minors",
    "violence",
    "violence/graphic",
)
FAKE_PNG = b"\x89PNG\r\n\x1a\nfake image"
TEXT_PLAIN = "text/plain; charset=utf-8"  # OpenAI's type for text, srt and vtt transcripts


@dataclass(frozen=True)
class ReceivedFile:
    """A file part of a multipart request: its names, and its bytes as a size and a hash."""

    field: str
    filename: str
    content_type: str
    size: int
    sha256: str


@dataclass(frozen=True)
class Received:
    """One request as the fake saw it. Header names are lower-cased."""

    method: str
    path: str
    headers: dict[str, str]
    body: dict[str, Any]  # the JSON body, or a multipart request's text fields (a repeated one as a list)
    query: dict[str, str] = field(default_factory=dict)
    files: tuple[ReceivedFile, ...] = ()
    at: float = field(default_factory=time.monotonic)  # when it arrived, on the test process's clock

    @property
    def messages(self) -> list[dict[str, Any]]:
        """The chat messages sent, an assistant prefix for a resumed stream included."""
        return list(self.body.get("messages") or [])


@dataclass
class AnswerLog:
    """What happened to one streamed, hanging, stalled or delayed answer."""

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


def deviant_completion(answer: dict[str, Any], deviations: frozenset[str]) -> dict[str, Any]:
    """A chat completion as a loosely compatible server writes it (`tests.fakes.behaviours.DEVIATIONS`)."""
    if not deviations:
        return answer
    for choice in answer["choices"]:
        _deviate_choice(choice, choice["message"], deviations)
    _deviate_top(answer, deviations)
    return answer


def deviant_events(events: list[bytes], deviations: frozenset[str]) -> list[bytes]:
    """A stream's events as a loosely compatible server writes them."""
    if not deviations:
        return events
    chunks = [json.loads(event) for event in events]
    last = chunks[-1]
    if "usage_on_last_choice" in deviations and len(chunks) > 1 and last.get("usage") and not last["choices"]:
        chunks[-2]["usage"] = chunks.pop()["usage"]
    for chunk in chunks:
        for choice in chunk["choices"]:
            _deviate_choice(choice, choice["delta"], deviations)
        _deviate_top(chunk, deviations)
    if "no_usage" in deviations:
        chunks = [chunk for chunk in chunks if chunk["choices"]]
    return [json.dumps(chunk).encode() for chunk in chunks]


def _deviate_choice(choice: dict[str, Any], message: dict[str, Any], deviations: frozenset[str]) -> None:
    if "no_logprobs" in deviations:
        choice.pop("logprobs", None)
    if "no_refusal" in deviations:
        message.pop("refusal", None)
    if "null_tool_calls" in deviations:
        message.setdefault("tool_calls", None)


def _deviate_top(body: dict[str, Any], deviations: frozenset[str]) -> None:
    if "null_fingerprint" in deviations:
        body["system_fingerprint"] = None
    usage = body.get("usage")
    if "no_usage" in deviations:
        body.pop("usage", None)
    elif isinstance(usage, dict):
        if "zero_usage" in deviations:
            usage.update(prompt_tokens=0, completion_tokens=0, total_tokens=0)
        if "null_usage_details" in deviations:
            usage.update(prompt_tokens_details=None, completion_tokens_details=None)
        if "cache_creation" in deviations:
            usage["prompt_tokens_details"] = {"cached_tokens": 4, "cache_creation_tokens": 5}


def text_completion(model: str, reply: Reply, n: int) -> dict[str, Any]:
    """A legacy completion: `text` in each choice, no message."""
    choices = [{"text": reply.content, "index": index, "logprobs": None, "finish_reason": "stop"} for index in range(n)]
    return {
        "id": "cmpl-fake",
        "object": "text_completion",
        "created": CREATED,
        "model": model,
        "choices": choices,
        "usage": _usage(reply.prompt_tokens, reply.content),
        "system_fingerprint": "fp_fake",
    }


def text_completion_events(model: str, content: str, *, prompt_tokens: int, include_usage: bool) -> list[bytes]:
    """The payloads of a legacy completion stream, [DONE] excluded: one per word, finish, usage."""
    base: dict[str, Any] = {"id": "cmpl-fake", "object": "text_completion", "created": CREATED, "model": model}

    def chunk(text: str, finish: str | None) -> bytes:
        choice = {"text": text, "index": 0, "logprobs": None, "finish_reason": finish}
        return json.dumps({**base, "choices": [choice]}).encode()

    words = content.split()
    events = [chunk(word if i == 0 else " " + word, None) for i, word in enumerate(words)]
    events.append(chunk("", "stop"))
    if include_usage:
        events.append(json.dumps({**base, "choices": [], "usage": _usage(prompt_tokens, content)}).encode())
    return events


def embedding(item: str | list[int], dimensions: int | None = None) -> list[float]:
    """A small vector that tells inputs apart. Its values are multiples of 1/16 between -16 and 16,
    exact as float32, so they come back unchanged from base64 (packed float32) too."""
    text = item if isinstance(item, str) else ",".join(map(str, item))
    seed = sum(map(ord, text)) + len(text)
    return [((seed * (i + 1)) % 512) / 16 - 16 for i in range(dimensions or EMBEDDING_SIZE)]


def embedding_inputs(value: Any) -> list[str | list[int]]:
    """OpenAI's `input` union as a list of items: a string, strings, one token array, or token arrays."""
    if isinstance(value, str) or (value and all(isinstance(item, int) for item in value)):
        return [value]
    return list(value)


def packed(vector: list[float]) -> str:
    """OpenAI's base64 form of a vector: little-endian float32 values."""
    return base64.b64encode(struct.pack(f"<{len(vector)}f", *vector)).decode()


def embedding_list(model: str, body: dict[str, Any]) -> dict[str, Any]:
    items = embedding_inputs(body.get("input"))
    as_base64 = body.get("encoding_format") == "base64"
    data = []
    for index, item in enumerate(items):
        vector = embedding(item, body.get("dimensions"))
        data.append({"object": "embedding", "index": index, "embedding": packed(vector) if as_base64 else vector})
    tokens = sum(len(item.split()) if isinstance(item, str) else len(item) for item in items)
    return {"object": "list", "data": data, "model": model, "usage": {"prompt_tokens": tokens, "total_tokens": tokens}}


def moderation(model: str, body: dict[str, Any]) -> dict[str, Any]:
    """One result per text; an array of multi-modal parts is judged as one input."""
    value = body["input"]
    if isinstance(value, str):
        texts = [value]
    elif all(isinstance(item, str) for item in value):
        texts = list(value)
    else:
        texts = [" ".join(str(part.get("text") or "") for part in value if isinstance(part, dict))]
    return {"id": "modr-fake", "model": model, "results": [_moderation_result(text) for text in texts]}


def _moderation_result(text: str) -> dict[str, Any]:
    flagged = FLAGGED_WORD in text.lower()
    return {
        "flagged": flagged,
        "categories": {name: flagged and name == "violence" for name in MODERATION_CATEGORIES},
        "category_scores": {
            name: 0.9375 if flagged and name == "violence" else 0.0001 for name in MODERATION_CATEGORIES
        },
        "category_applied_input_types": {name: ["text"] for name in MODERATION_CATEGORIES},
    }


def image_list(body: dict[str, Any]) -> dict[str, Any]:
    prompt = str(body.get("prompt"))
    images = []
    for index in range(int(body.get("n") or 1)):
        if body.get("response_format") == "b64_json":
            image = {"b64_json": base64.b64encode(FAKE_PNG + bytes([index])).decode()}
        else:
            image = {"url": f"https://images.fake.invalid/{index}.png"}
        images.append({**image, "revised_prompt": prompt})
    return {"created": CREATED, "data": images}


def image_usage(body: dict[str, Any]) -> dict[str, Any]:
    """A streamed image answer's usage: a token per prompt word, 272 per image (gpt-image-1's low 1024x1024)."""
    prompt = len(str(body.get("prompt")).split())
    output = 272 * int(body.get("n") or 1)
    details = {"text_tokens": prompt, "image_tokens": 0}
    return {
        "total_tokens": prompt + output,
        "input_tokens": prompt,
        "output_tokens": output,
        "input_tokens_details": details,
    }


def image_events(body: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    """A streamed image answer's events (type, payload): `partial_images` partials, then each image completed."""
    settings = {"size": "1024x1024", "quality": "low", "background": "opaque", "output_format": "png"}
    partial = "image_generation.partial_image"
    events: list[tuple[str, dict[str, Any]]] = []
    for index in range(int(body.get("n") or 1)):
        for step in range(int(body.get("partial_images") or 0)):
            image = base64.b64encode(FAKE_PNG + bytes([index, step])).decode()
            payload = {"type": partial, "b64_json": image, "created_at": CREATED, **settings}
            events.append((partial, {**payload, "partial_image_index": step}))
        image = base64.b64encode(FAKE_PNG + bytes([index])).decode()
        completed = {"type": "image_generation.completed", "b64_json": image, "created_at": CREATED, **settings}
        events.append((completed["type"], completed))
    events[-1][1]["usage"] = image_usage(body)
    return events


def transcript_usage(text: str) -> dict[str, Any]:
    """The usage a streamed transcript reports: 14 audio tokens in, a token per word out."""
    output = len(text.split())
    details = {"text_tokens": 0, "audio_tokens": 14}
    return {
        "type": "tokens",
        "input_tokens": 14,
        "input_token_details": details,
        "output_tokens": output,
        "total_tokens": 14 + output,
    }


def transcript_events(text: str) -> list[tuple[str, dict[str, Any]]]:
    """A streamed transcript's events (type, payload): one delta per word, then the whole text with usage."""
    words = text.split()
    delta = "transcript.text.delta"
    events = [(delta, {"type": delta, "delta": word if i == 0 else " " + word}) for i, word in enumerate(words)]
    done = {"type": "transcript.text.done", "text": text, "usage": transcript_usage(text)}
    return [*events, (done["type"], done)]


def _values(fields: dict[str, Any], name: str) -> list[str]:
    value = fields.get(name)
    return [] if value is None else value if isinstance(value, list) else [value]


def transcription(text: str, fields: dict[str, Any]) -> tuple[int, bytes, str]:
    """Status, body and content type of the answer in the `response_format` asked for (json by default)."""
    response_format = fields.get("response_format") or "json"
    plain = {
        "text": f"{text}\n",
        "srt": f"1\n00:00:00,000 --> 00:00:02,500\n{text}\n\n",
        "vtt": f"WEBVTT\n\n00:00:00.000 --> 00:00:02.500\n{text}\n\n",
    }
    if response_format in plain:
        return 200, plain[response_format].encode(), TEXT_PLAIN
    usage = {"type": "duration", "seconds": 3}
    if response_format == "json":
        return 200, json.dumps({"text": text, "usage": usage}).encode(), "application/json"
    if response_format != "verbose_json":
        fail = Fail(400, f"Invalid value: '{response_format}'.", param="response_format", code="invalid_value")
        return 400, json.dumps(_error_body(fail)).encode(), "application/json"
    verbose: dict[str, Any] = {"task": "transcribe", "language": "english", "duration": 2.5, "text": text}
    segment = {"id": 0, "seek": 0, "start": 0.0, "end": 2.5, "text": f" {text}", "tokens": [50364, 400]}
    verbose["segments"] = [{**segment, "temperature": 0.0, "avg_logprob": -0.25, "no_speech_prob": 0.01}]
    if "word" in _values(fields, "timestamp_granularities[]"):
        step = 2.5 / max(1, len(text.split()))
        verbose["words"] = [
            {"word": word, "start": i * step, "end": (i + 1) * step} for i, word in enumerate(text.split())
        ]
    verbose["usage"] = usage
    return 200, json.dumps(verbose).encode(), "application/json"


def _last_user_text(body: dict[str, Any]) -> str:
    users = [m for m in body.get("messages") or [] if isinstance(m, dict) and m.get("role") == "user"]
    content = users[-1].get("content") if users else None
    return content if isinstance(content, str) and content else "(nothing to echo)"


def _error_body(fail: Fail) -> dict[str, Any]:
    return {"error": {"message": fail.message, "type": fail.type, "param": fail.param, "code": fail.code}}


def _include_usage(body: dict[str, Any]) -> bool:
    return bool((body.get("stream_options") or {}).get("include_usage"))


async def _read_form(request: web.Request) -> tuple[dict[str, Any], tuple[ReceivedFile, ...]]:
    """A multipart body's text fields, and its files hashed as they arrive rather than held."""
    fields: dict[str, Any] = {}
    files: list[ReceivedFile] = []
    reader = await request.multipart()
    while (part := await reader.next()) is not None:
        assert isinstance(part, BodyPartReader)
        name = str(part.name)
        if part.filename is None:
            value = (await part.read()).decode()
            fields[name] = value if name not in fields else [*_values(fields, name), value]
            continue
        digest, size = hashlib.sha256(), 0
        while chunk := await part.read_chunk(256 * 1024):
            digest.update(chunk)
            size += len(chunk)
        content_type = part.headers.get("Content-Type", "")
        files.append(ReceivedFile(name, part.filename, content_type, size, digest.hexdigest()))
    return fields, tuple(files)


class FakeUpstream(ScriptedServer["Script", "Received"]):
    """Start with `start()`, stop with `stop()`; `base_url` is what a provider row points at."""

    name = "fake-openai-upstream"

    def __init__(self, label: str | None = None) -> None:
        super().__init__()
        self.label = label
        self._counts: dict[str, int] = {}  # requests each script has answered since it was set
        self._answers: dict[str, list[AnswerLog]] = {}
        self._runner: web.AppRunner | None = None

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    # --- scripting and inspection (called from the test thread) ---

    def script(self, model: str, behaviour: Script) -> None:
        """Script the answers for `model` (`ANY_MODEL`: every model without a script); a choice starts over."""
        with self._lock:
            self._counts[model] = 0
        super().script(model, behaviour)

    def reset(self) -> None:
        """Forget every script and everything recorded, for a server shared by several tests."""
        with self._lock:
            self._scripts.clear()
            self._counts.clear()
            self._received.clear()
            self._answers.clear()

    def answers(self, model: str) -> list[AnswerLog]:
        """Logs of the streamed, hanging, stalled and delayed answers given for `model`, in order."""
        with self._lock:
            return list(self._answers.get(model, ()))

    def _log_answer(self, model: str) -> AnswerLog:
        log = AnswerLog()
        with self._lock:
            self._answers.setdefault(model, []).append(log)
        return log

    # --- lifecycle ---

    async def _open(self) -> None:
        app = web.Application()
        self._add_routes(app.router, "/v1")
        app.router.add_get("/v1/models", self._models)
        await self._listen(app)

    def _add_routes(self, router: web.UrlDispatcher, prefix: str) -> None:
        router.add_post(f"{prefix}/chat/completions", self._chat)
        router.add_post(f"{prefix}/completions", self._completions)
        router.add_post(f"{prefix}/embeddings", self._embeddings)
        router.add_post(f"{prefix}/moderations", self._moderations)
        router.add_post(f"{prefix}/images/generations", self._images)
        router.add_post(f"{prefix}/audio/transcriptions", self._transcriptions)

    async def _listen(self, app: web.Application) -> None:
        if self.label is not None:
            app.on_response_prepare.append(self._sign)
        # Cancelling the handler when its client leaves is how the fake notices a disconnect;
        # a short shutdown timeout keeps a still-hanging request from holding up teardown.
        self._runner = web.AppRunner(app, handler_cancellation=True, access_log=None, shutdown_timeout=0.5)
        await self._runner.setup()
        assert self._socket is not None
        await web.SockSite(self._runner, self._socket).start()

    async def _sign(self, request: web.Request, response: web.StreamResponse) -> None:
        response.headers["x-fake-upstream"] = str(self.label)

    async def _cleanup(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    # --- what the answers look like (a subclass may dress them as another OpenAI-compatible server does) ---

    def chat_answer(self, model: str, reply: Reply, n: int) -> dict[str, Any]:
        return completion(model, reply, n)

    def chat_events(self, model: str, reply: Reply, *, include_usage: bool) -> list[bytes]:
        return stream_events(model, reply.content, prompt_tokens=reply.prompt_tokens, include_usage=include_usage)

    # --- request handling (on the fake's own loop) ---

    def _log_request(
        self, request: web.Request, body: dict[str, Any], files: tuple[ReceivedFile, ...] = ()
    ) -> Behaviour:
        """Record the request; what its model's script says to do with it."""
        headers = {name.lower(): value for name, value in request.headers.items()}
        received = Received(request.method, request.path, headers, body, dict(request.query), files)
        with self._lock:
            self._received.append(received)
            model = str(body.get("model"))
            key = model if model in self._scripts else ANY_MODEL
            if key not in self._scripts:
                return Reply()
            index = self._counts.get(key, 0)
            self._counts[key] = index + 1
            return resolve(self._scripts[key], index)

    def _answering(self, behaviour: Behaviour, echoed: Any) -> Reply:
        """The reply a script that answers stands for, `echoed` being what `Echo` repeats."""
        if isinstance(behaviour, FailMidStream):
            reply = Reply()
        elif isinstance(behaviour, Deviate | Quirks):
            reply = behaviour.reply
        elif isinstance(behaviour, Echo):
            reply = Reply(echoed if isinstance(echoed, str) and echoed else "(nothing to echo)", delay=behaviour.delay)
        elif isinstance(behaviour, DropMidStream | Stall):
            reply = Reply(behaviour.content)
        else:
            assert isinstance(behaviour, Reply)
            reply = behaviour
        if self.label is not None and reply.content == DEFAULT_CONTENT:
            reply = replace(reply, content=f"served by {self.label}")
        return reply

    async def _refuse(self, request: web.Request, model: str, behaviour: Behaviour) -> web.StreamResponse | None:
        """The answer of a script that fails, hangs or closes, on any endpoint; None if it answers."""
        if isinstance(behaviour, Fail):
            if behaviour.raw is not None:
                headers = {"Content-Type": "text/html", **behaviour.headers}
                return web.Response(text=behaviour.raw, status=behaviour.status, headers=headers)
            return web.json_response(_error_body(behaviour), status=behaviour.status, headers=dict(behaviour.headers))
        if isinstance(behaviour, QuoteHeader):
            quoted = request.headers.get(behaviour.header, "")
            fail = Fail(behaviour.status, f"Bad request: {quoted}", type=quoted, code=quoted, param=quoted)
            return web.json_response(_error_body(fail), status=fail.status)
        if isinstance(behaviour, Quirks):
            return await self._quirk(request, behaviour)
        if isinstance(behaviour, Hang):
            return await self._hang(model)
        if isinstance(behaviour, CloseBeforeAnswer):
            return await self._close(request, reset=behaviour.reset)
        return None

    async def _quirk(self, request: web.Request, quirks: Quirks) -> web.StreamResponse | None:
        """A server's refusal of what it does not have; None if it answers this request."""
        if request.path.endswith("/completions") and not request.path.endswith("/chat/completions"):
            if not quirks.serves_completions:
                return web.json_response({"detail": "Not Found"}, status=404)
        body = await request.json()
        for name in sorted(quirks.refuses & set(body)):
            fail = Fail(400, f"Unrecognized request argument supplied: {name}", param=name)
            return web.json_response(_error_body(fail), status=400)
        return None

    async def _models(self, request: web.Request) -> web.Response:
        with self._lock:
            names = sorted(self._scripts)
        data = [{"id": name, "object": "model", "created": CREATED, "owned_by": "fake"} for name in names]
        return web.json_response({"object": "list", "data": data})

    async def _chat(self, request: web.Request) -> web.StreamResponse:
        body = await request.json()
        behaviour = self._log_request(request, body)
        model = str(body.get("model"))
        if (refusal := await self._refuse(request, model, behaviour)) is not None:
            return refusal
        reply = self._answering(behaviour, _last_user_text(body))
        if isinstance(behaviour, DropMidStream):
            events = stream_events(model, behaviour.content, prompt_tokens=1, include_usage=False)
            return await self._drop(request, events[: behaviour.after], reset=behaviour.reset)
        if isinstance(behaviour, FailMidStream):
            opening = stream_events(model, "", prompt_tokens=1, include_usage=False)[0]
            return await self._fail_mid_stream(request, [opening, json.dumps(_error_body(behaviour.error)).encode()])
        stall = behaviour if isinstance(behaviour, Stall) else None
        deviations = behaviour.deviations if isinstance(behaviour, Deviate) else frozenset()
        if body.get("stream"):
            events = self.chat_events(model, reply, include_usage=_include_usage(body))
            return await self._stream(request, model, deviant_events(events, deviations), reply, stall)
        answer = deviant_completion(self.chat_answer(model, reply, int(body.get("n") or 1)), deviations)
        return await self._whole(request, model, answer, reply, stall)

    async def _completions(self, request: web.Request) -> web.StreamResponse:
        body = await request.json()
        behaviour = self._log_request(request, body)
        model = str(body.get("model"))
        if (refusal := await self._refuse(request, model, behaviour)) is not None:
            return refusal
        reply = self._answering(behaviour, body.get("prompt"))
        usage_asked = _include_usage(body)
        events = text_completion_events(
            model, reply.content, prompt_tokens=reply.prompt_tokens, include_usage=usage_asked
        )
        if isinstance(behaviour, DropMidStream):
            return await self._drop(request, events[: behaviour.after], reset=behaviour.reset)
        stall = behaviour if isinstance(behaviour, Stall) else None
        if body.get("stream"):
            return await self._stream(request, model, events, reply, stall)
        return await self._whole(request, model, text_completion(model, reply, int(body.get("n") or 1)), reply, stall)

    async def _embeddings(self, request: web.Request) -> web.StreamResponse:
        return await self._answer_json(request, embedding_list)

    async def _moderations(self, request: web.Request) -> web.StreamResponse:
        return await self._answer_json(request, moderation)

    async def _images(self, request: web.Request) -> web.StreamResponse:
        return await self._answer_json(request, lambda model, body: image_list(body), image_events)

    async def _answer_json(
        self,
        request: web.Request,
        answer: Callable[[str, dict[str, Any]], dict[str, Any]],
        events: Callable[[dict[str, Any]], list[tuple[str, dict[str, Any]]]] | None = None,
    ) -> web.StreamResponse:
        """Answer a JSON request with `answer(model, body)` (or, asked to stream, `events(body)`) unless its
        script says otherwise."""
        body = await request.json()
        behaviour = self._log_request(request, body)
        model = str(body.get("model"))
        if (refusal := await self._refuse(request, model, behaviour)) is not None:
            return refusal
        pace = behaviour if isinstance(behaviour, Reply) else Reply()
        if events is not None and body.get("stream"):
            return await self._typed_stream(request, model, events(body), pace)
        return await self._whole(
            request, model, answer(model, body), pace, behaviour if isinstance(behaviour, Stall) else None
        )

    async def _transcriptions(self, request: web.Request) -> web.StreamResponse:
        fields, files = await _read_form(request)
        behaviour = self._log_request(request, fields, files)
        if (refusal := await self._refuse(request, str(fields.get("model")), behaviour)) is not None:
            return refusal
        reply = self._answering(behaviour, fields.get("prompt"))
        if str(fields.get("stream")).lower() == "true":
            return await self._typed_stream(request, str(fields.get("model")), transcript_events(reply.content), reply)
        status, content, content_type = transcription(reply.content, fields)
        return web.Response(body=content, status=status, headers={"Content-Type": content_type})

    async def _hang(self, model: str) -> web.StreamResponse:
        log = self._log_answer(model)
        try:
            await asyncio.Event().wait()  # ends only when the client leaves or the fake stops
        except asyncio.CancelledError:
            log.closed_early.set()
            raise
        raise AssertionError("unreachable")

    async def _close(self, request: web.Request, *, reset: bool = False) -> web.StreamResponse:
        transport = request.transport
        assert transport is not None
        if reset:
            # Lingering for 0 s makes the close send a RST, which the client reads as "connection reset by peer".
            sock = transport.get_extra_info("socket")
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            transport.abort()
        else:
            transport.close()
        await asyncio.Event().wait()  # cancelled as soon as the connection is gone
        raise AssertionError("unreachable")

    async def _drop(self, request: web.Request, events: list[bytes], *, reset: bool = False) -> web.StreamResponse:
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await response.prepare(request)
        for data in events:
            await response.write(b"data: " + data + b"\n\n")
        return await self._close(request, reset=reset)

    async def _fail_mid_stream(self, request: web.Request, events: list[bytes]) -> web.StreamResponse:
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await response.prepare(request)
        for data in events:
            await response.write(b"data: " + data + b"\n\n")
        await response.write_eof()
        return response

    async def _whole(
        self, request: web.Request, model: str, answer: dict[str, Any], pace: Reply, stall: Stall | None
    ) -> web.StreamResponse:
        """A JSON answer, after `pace.first_byte`; a stall sends the headers and holds the body back.

        Only an answer that waits is logged in `answers()`, as a streamed one is."""
        if not pace.first_byte and stall is None:
            return web.json_response(answer, headers=dict(pace.headers))
        content = json.dumps(answer).encode()
        response = web.StreamResponse(headers={"Content-Type": "application/json", **pace.headers})
        response.content_length = len(content)
        log = self._log_answer(model)
        try:
            await asyncio.sleep(pace.first_byte)
            await response.prepare(request)
            if stall is not None:
                await _pause(stall.seconds)
            await response.write(content)
            log.finished = True
            await response.write_eof()
        except (asyncio.CancelledError, ConnectionResetError):
            log.closed_early.set()
            raise
        return response

    async def _stream(
        self, request: web.Request, model: str, events: list[bytes], pace: Reply, stall: Stall | None = None
    ) -> web.StreamResponse:
        log = self._log_answer(model)
        headers = {"Content-Type": "text/event-stream", "Cache-Control": "no-cache", **pace.headers}
        response = web.StreamResponse(headers=headers)
        try:
            if pace.first_byte:
                await asyncio.sleep(pace.first_byte)
            await response.prepare(request)
            for index, data in enumerate(events):
                if stall is not None and index == stall.after:
                    await _pause(stall.seconds)
                elif index and pace.delay:
                    await asyncio.sleep(pace.delay)
                await response.write(b"data: " + data + b"\n\n")
                log.sent_at.append(time.monotonic())
            if stall is not None and stall.after >= len(events):
                await _pause(stall.seconds)
            # Marked before [DONE] goes out: a client that has read [DONE] must find the stream finished.
            log.finished = True
            await response.write(b"data: [DONE]\n\n")
            await response.write_eof()
        except (asyncio.CancelledError, ConnectionResetError):
            log.closed_early.set()
            raise
        return response

    async def _typed_stream(
        self, request: web.Request, model: str, events: list[tuple[str, dict[str, Any]]], pace: Reply
    ) -> web.StreamResponse:
        """OpenAI's typed events (images', transcriptions'): each named on an `event:` line, and no [DONE]."""
        log = self._log_answer(model)
        headers = {"Content-Type": "text/event-stream", "Cache-Control": "no-cache", **pace.headers}
        response = web.StreamResponse(headers=headers)
        try:
            if pace.first_byte:
                await asyncio.sleep(pace.first_byte)
            await response.prepare(request)
            for index, (name, payload) in enumerate(events):
                if index and pace.delay:
                    await asyncio.sleep(pace.delay)
                await response.write(f"event: {name}\ndata: {json.dumps(payload)}\n\n".encode())
                log.sent_at.append(time.monotonic())
            log.finished = True
            await response.write_eof()
        except (asyncio.CancelledError, ConnectionResetError):
            log.closed_early.set()
            raise
        return response


async def _pause(seconds: float | None) -> None:
    """Wait `seconds`, or until the client leaves (the handler is cancelled) if None."""
    if seconds is None:
        await asyncio.Event().wait()
    else:
        await asyncio.sleep(seconds)
