"""A fake corporate LLM gateway: a model list at /models.json, and the models it lists served at their handles.

One aiohttp server on a free 127.0.0.1 port, as `tests.fakes.loopback` runs them:

    GET  /models.json                                the list, as scripted (entries, or a failure)
    POST /openai/v1/chat/completions                 the OpenAI fake's chat (and its other endpoints)
    POST /fireworks/inference/v1/chat/completions    the same OpenAI fake, under another prefix
    POST /anthropic/v1/messages                      the Anthropic fake's messages (checks x-api-key)
    GET  /openai/v1/models, /anthropic/v1/models     their model lists

The OpenAI and Anthropic fakes are not started themselves: their handlers are
mounted here, so a test scripts them (`server.openai.script(...)`) and reads
what they received as usual. The list answers:

    server.serve([entry, ...])                 200 with those entries as JSON
    server.answer(500, b"...")                 any status and raw body
    server.answer(200, b"x" * n)               an oversized or malformed body (chunked=True: no length)
    server.answer(200, b"[]", delay=2.0)       an answer held back (for timeouts)

With `list_credential`, the list answers 401 unless the request carries
`Authorization: Bearer <list_credential>`.
"""

from __future__ import annotations

import asyncio
import json
import threading
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from tests.fakes.anthropic_upstream import FakeAnthropic
from tests.fakes.loopback import LoopbackServer
from tests.fakes.openai_upstream import FakeUpstream

LIST_PATH = "/models.json"


@dataclass(frozen=True)
class ListAnswer:
    status: int = 200
    body: bytes = b"[]"
    delay: float = 0.0
    chunked: bool = False  # sent in pieces without a Content-Length, as a streaming server does


class FakeModelList(LoopbackServer):
    name = "fake-model-list"

    def __init__(self, *, anthropic_key: str | None = None, list_credential: str | None = None) -> None:
        super().__init__()
        self.openai = FakeUpstream()
        self.anthropic = FakeAnthropic(api_key=anthropic_key)
        self.list_credential = list_credential
        self._lock = threading.Lock()
        self._answer = ListAnswer()
        self._list_requests: list[dict[str, str]] = []
        self._runner: web.AppRunner | None = None

    @property
    def origin(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def list_url(self) -> str:
        return self.origin + LIST_PATH

    # --- scripting and inspection (called from the test thread) ---

    def serve(self, entries: list[Any]) -> None:
        self.answer(200, json.dumps(entries).encode())

    def answer(self, status: int, body: bytes, *, delay: float = 0.0, chunked: bool = False) -> None:
        with self._lock:
            self._answer = ListAnswer(status, body, delay, chunked)

    def list_requests(self) -> list[dict[str, str]]:
        """The headers of each request for the list, lower-cased, in order."""
        with self._lock:
            return list(self._list_requests)

    # --- lifecycle ---

    async def _open(self) -> None:
        app = web.Application()
        app.router.add_get(LIST_PATH, self._list)
        for prefix in ("/openai/v1", "/fireworks/inference/v1"):
            self.openai._add_routes(app.router, prefix)
            app.router.add_get(f"{prefix}/models", self.openai._models)
        app.router.add_post("/anthropic/v1/messages", self.anthropic._messages)
        app.router.add_get("/anthropic/v1/models", self.anthropic._anthropic_models)
        self._runner = web.AppRunner(app, handler_cancellation=True, access_log=None, shutdown_timeout=0.5)
        await self._runner.setup()
        assert self._socket is not None
        await web.SockSite(self._runner, self._socket).start()

    async def _cleanup(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    async def _list(self, request: web.Request) -> web.StreamResponse:
        with self._lock:
            answer = self._answer
            self._list_requests.append({name.lower(): value for name, value in request.headers.items()})
        if self.list_credential is not None and request.headers.get("authorization") != (
            f"Bearer {self.list_credential}"
        ):
            return web.json_response({"error": "unauthorized"}, status=401)
        if answer.delay:
            await asyncio.sleep(answer.delay)
        if not answer.chunked:
            return web.Response(status=answer.status, body=answer.body, content_type="application/json")
        response = web.StreamResponse(status=answer.status, headers={"content-type": "application/json"})
        response.enable_chunked_encoding()
        await response.prepare(request)
        for start in range(0, len(answer.body), 1024):
            await response.write(answer.body[start : start + 1024])
        await response.write_eof()
        return response
