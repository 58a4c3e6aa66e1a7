"""A fake Replicate speaking its predictions API: a real aiohttp server on a free 127.0.0.1 port.

Predictions are created at `POST /v1/models/{owner}/{name}/predictions` (or `POST /v1/predictions`
with a `version`), polled at `GET /v1/predictions/{id}`, canceled at `POST /v1/predictions/{id}/cancel`
and streamed from `GET /stream/{id}` as Replicate's named server-sent events. Errors are problem
documents (`{"title", "detail", "status"}`), as Replicate writes them.

Behaviour is scripted per upstream model (`owner/name`, or `owner/name:version`); a model with no
script gets `Reply()`.

    replicate.script("meta/llama-1", Reply("Hi there"))            output word by word, metrics counted
    replicate.script("meta/llama-2", Reply("Hi", polls=2))         still running twice before it ends
    replicate.script("meta/llama-3", Fail(429, "throttled"))       a problem document with that status
    replicate.script("meta/llama-4", FailPrediction("CUDA OOM"))   accepted, then `status: failed`
    replicate.script("meta/llama-5", Hang())                       never finishes (and streams nothing)

`received(model)` gives the predictions created for a model, `followed(model)` the requests that
followed them up (polls, streams, cancellations), and `log` every request.
"""

from __future__ import annotations

import asyncio
import itertools
from dataclasses import dataclass, field, replace
from typing import Any

import orjson
from aiohttp import web

from tests.fakes.base import ScriptedServer

CREATED_AT = "2024-07-22T20:33:28.123648Z"
COMPLETED_AT = "2024-07-22T20:33:29.5Z"


@dataclass(frozen=True)
class Reply:
    content: str = "Hello from the fake Replicate."
    input_token_count: int = 17
    polls: int = 0  # polls that still find it running; 0 finishes within the sync wait
    metrics: bool = True  # whether the prediction's metrics count tokens
    streams: bool = True  # whether the model streams (a prediction asked to stream gets `urls.stream`)


@dataclass(frozen=True)
class Fail:
    status: int
    detail: str = "the fake Replicate refused the request"
    title: str = "Request refused"


@dataclass(frozen=True)
class FailPrediction:
    """Accepted, then failed: `status: failed` with `error`; a stream relays `partial` first, then an error event."""

    error: str = "CUDA out of memory"
    polls: int = 0
    partial: tuple[str, ...] = ("Once", " upon")


@dataclass(frozen=True)
class Hang:
    """Accepted, and never finished: polled forever, its stream silent."""


Behaviour = Reply | Fail | FailPrediction | Hang


@dataclass(frozen=True)
class Received:
    """One request as the fake saw it. Header names are lower-cased; `model` is the script key it was found by."""

    method: str
    path: str
    headers: dict[str, str]
    body: dict[str, Any] = field(default_factory=dict)
    model: str = ""
    peer: str = ""  # the client's address and port: one per connection it opened


@dataclass
class _Prediction:
    id: str
    model: str
    behaviour: Behaviour
    created: dict[str, Any]  # the creation body
    polls_left: int
    streamed: bool
    canceled: bool = False


def pieces(content: str) -> list[str]:
    """The output as a language model writes it: one piece per word, each after the first with its space."""
    words = content.split(" ")
    return [word if index == 0 else " " + word for index, word in enumerate(words)]


def sse(event: str, data: str, event_id: str = "") -> bytes:
    """One server-sent event; data of several lines goes in as many `data` lines."""
    lines = b"".join(b"data: " + line.encode() + b"\n" for line in data.split("\n"))
    head = b"event: " + event.encode() + b"\n" + (b"id: " + event_id.encode() + b"\n" if event_id else b"")
    return head + lines + b"\n"


def problem(status: int, title: str, detail: str, headers: dict[str, str] | None = None) -> web.Response:
    body = orjson.dumps({"title": title, "detail": detail, "status": status})
    return web.Response(status=status, body=body, content_type="application/problem+json", headers=headers)


class FakeReplicate(ScriptedServer["Behaviour", "Received"]):
    """Start with `start()`, stop with `stop()`; `base_url` is what a replicate provider row points at."""

    name = "fake-replicate"

    def __init__(self, api_key: str = "") -> None:
        super().__init__()
        self.api_key = api_key
        self.log: list[Received] = []
        self._predictions: dict[str, _Prediction] = {}
        self._ids = itertools.count(1)
        self._runner: web.AppRunner | None = None

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def received(self, model: str | None = None) -> list[Received]:
        """The predictions created (for `model`, if given), in order."""
        with self._lock:
            return [r for r in self._received if model is None or r.model == model]

    def followed(self, model: str) -> list[Received]:
        """The requests that followed the model's predictions up (polls, streams, cancellations), in order."""
        with self._lock:
            ids = {p.id for p in self._predictions.values() if p.model == model}
            return [r for r in self.log if r.path.rstrip("/").split("/")[-1] in ids or r.path.split("/")[-2] in ids]

    def canceled(self, model: str) -> list[str]:
        """The ids of the model's predictions that were canceled."""
        with self._lock:
            return [p.id for p in self._predictions.values() if p.model == model and p.canceled]

    # --- lifecycle ---

    async def _open(self) -> None:
        app = web.Application()
        app.router.add_post("/v1/models/{owner}/{name}/predictions", self._create)
        app.router.add_post("/v1/predictions", self._create)
        app.router.add_get("/v1/predictions/{id}", self._get)
        app.router.add_post("/v1/predictions/{id}/cancel", self._cancel)
        app.router.add_get("/stream/{id}", self._stream)
        app.router.add_get("/v1/models", self._models)
        self._runner = web.AppRunner(app, handler_cancellation=True, access_log=None, shutdown_timeout=0.5)
        await self._runner.setup()
        assert self._socket is not None
        await web.SockSite(self._runner, self._socket).start()

    async def _cleanup(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    # --- request handling (on the fake's own loop) ---

    async def _note(self, request: web.Request, model: str = "") -> tuple[dict[str, Any], Received]:
        body = orjson.loads(await request.read()) if request.can_read_body else {}
        headers = {name.lower(): value for name, value in request.headers.items()}
        peer = request.transport.get_extra_info("peername") if request.transport is not None else None
        body = body if isinstance(body, dict) else {}
        record = Received(request.method, request.path, headers, body, model, f"{peer[0]}:{peer[1]}" if peer else "")
        with self._lock:
            self.log.append(record)
        return record.body, record

    def _refused(self, record: Received) -> web.Response | None:
        if self.api_key and record.headers.get("authorization") != f"Bearer {self.api_key}":
            return problem(401, "Unauthenticated", "You did not pass a valid authentication token")
        return None

    def _model_of(self, request: web.Request, body: dict[str, Any]) -> str:
        if "owner" in request.match_info:
            return f"{request.match_info['owner']}/{request.match_info['name']}"
        version = str(body.get("version") or "")
        with self._lock:
            return next((key for key in self._scripts if key.endswith(":" + version)), version)

    async def _create(self, request: web.Request) -> web.Response:
        body, record = await self._note(request)
        model = self._model_of(request, body)
        record = replace(record, model=model)
        with self._lock:
            self._received.append(record)
            behaviour = self._scripts.get(model, Reply())
        if refused := self._refused(record):
            return refused
        if isinstance(behaviour, Fail):
            headers = {"retry-after": "7"} if behaviour.status == 429 else None
            return problem(behaviour.status, behaviour.title, behaviour.detail, headers)
        if not isinstance(body.get("input"), dict) or "prompt" not in body["input"]:
            return problem(422, "Input validation failed", "- input: prompt is required")
        polls = 0 if isinstance(behaviour, Hang) else behaviour.polls
        streamed = body.get("stream") is True
        prediction = _Prediction(f"fake{next(self._ids):04d}rpl", model, behaviour, body, polls, streamed)
        with self._lock:
            self._predictions[prediction.id] = prediction
        waited = "prefer" in record.headers and not prediction.streamed
        finished = waited and polls == 0 and not isinstance(behaviour, Hang)
        return web.json_response(self._object(prediction, finished=finished), status=201)

    async def _get(self, request: web.Request) -> web.Response:
        _, record = await self._note(request)
        if refused := self._refused(record):
            return refused
        prediction = self._predictions.get(request.match_info["id"])
        if prediction is None:
            return problem(404, "Not found", "The requested resource could not be found.")
        if prediction.polls_left > 0:
            prediction.polls_left -= 1
            return web.json_response(self._object(prediction, finished=False, status="processing"))
        finished = not isinstance(prediction.behaviour, Hang) and not prediction.canceled
        return web.json_response(self._object(prediction, finished=finished))

    async def _cancel(self, request: web.Request) -> web.Response:
        _, record = await self._note(request)
        prediction = self._predictions.get(request.match_info["id"])
        if prediction is None:
            return problem(404, "Not found", "The requested resource could not be found.")
        with self._lock:
            prediction.canceled = True
        return web.json_response(self._object(prediction, finished=False, status="canceled"))

    async def _models(self, request: web.Request) -> web.Response:
        await self._note(request)
        with self._lock:
            names = sorted({key.partition(":")[0] for key in self._scripts})
        results = [{"owner": name.split("/")[0], "name": name.split("/")[-1], "url": ""} for name in names]
        return web.json_response({"next": None, "previous": None, "results": results})

    async def _stream(self, request: web.Request) -> web.StreamResponse:
        _, record = await self._note(request)
        if refused := self._refused(record):
            return refused
        prediction = self._predictions.get(request.match_info["id"])
        if prediction is None:
            return problem(404, "Not found", "The requested resource could not be found.")
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream", "Cache-Control": "no-store"})
        await response.prepare(request)
        behaviour = prediction.behaviour
        if isinstance(behaviour, Hang):
            await asyncio.Event().wait()  # cancelled once the reader goes away
        if isinstance(behaviour, Reply):
            for index, piece in enumerate(pieces(behaviour.content)):
                await response.write(sse("output", piece, f"1721680408:{index}"))
            await response.write(sse("done", "{}"))
        elif isinstance(behaviour, FailPrediction):
            for piece in behaviour.partial:
                await response.write(sse("output", piece))
            await response.write(sse("error", orjson.dumps({"detail": behaviour.error}).decode()))
            await response.write(sse("done", '{"reason": "error"}'))
        await response.write_eof()
        return response

    # --- the prediction object ---

    def _object(self, prediction: _Prediction, *, finished: bool, status: str | None = None) -> dict[str, Any]:
        behaviour = prediction.behaviour
        base = self.base_url
        urls = {
            "get": f"{base}/v1/predictions/{prediction.id}",
            "cancel": f"{base}/v1/predictions/{prediction.id}/cancel",
            "web": f"https://replicate.com/p/{prediction.id}",
        }
        if prediction.streamed and getattr(behaviour, "streams", True):
            urls["stream"] = f"{base}/stream/{prediction.id}"
        answer: dict[str, Any] = {
            "id": prediction.id,
            "model": prediction.model.partition(":")[0],
            "version": prediction.model.partition(":")[2] or "hidden",
            "input": prediction.created.get("input"),
            "logs": "",
            "output": None,
            "data_removed": False,
            "error": None,
            "status": status or ("starting" if not finished else "succeeded"),
            "created_at": CREATED_AT,
            "urls": urls,
        }
        if prediction.canceled:
            answer["status"] = "canceled"
        if not finished or prediction.canceled:
            return answer
        answer["started_at"], answer["completed_at"] = CREATED_AT, COMPLETED_AT
        if isinstance(behaviour, FailPrediction):
            return {**answer, "status": "failed", "error": behaviour.error, "output": list(behaviour.partial)}
        assert isinstance(behaviour, Reply)
        output = pieces(behaviour.content)
        metrics: dict[str, Any] = {"predict_time": 1.25}
        if behaviour.metrics:
            metrics["input_token_count"] = behaviour.input_token_count
            metrics["output_token_count"] = len(output)
            metrics["tokens_per_second"] = 20.5
        return {**answer, "output": output, "metrics": metrics}
