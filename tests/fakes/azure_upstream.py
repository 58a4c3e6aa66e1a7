"""A fake Azure OpenAI resource: `tests.fakes.openai_upstream.FakeUpstream` behind Azure's URLs and key.

Azure serves OpenAI's endpoints per deployment, at
`/openai/deployments/{deployment}/{operation}?api-version=...`, and takes its key
in an `api-key` header. Like Azure, the fake answers 404 without an `api-version`
and 401 without the right key. What it sends differs from OpenAI's as Azure's does:

- a chat stream opens with a chunk holding only `prompt_filter_results`, no choices;
- every choice carries `content_filter_results`, and a whole answer `prompt_filter_results`;
- answers name the model's version (`AZURE_MODEL`), not the deployment.

Scripts are per deployment: Portico sets the body's `model` to it as well.

    azure.script("gpt-4o-prod", Reply("Hi there"))
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web

from tests.fakes.openai_upstream import (
    CloseBeforeAnswer,
    DropMidStream,
    Echo,
    Fail,
    FakeUpstream,
    Hang,
    Received,
    Reply,
    completion,
    stream_events,
)

__all__ = ["AZURE_MODEL", "CloseBeforeAnswer", "DropMidStream", "Echo", "Fail", "FakeAzure", "Hang", "Reply"]

AZURE_MODEL = "gpt-4o-2024-11-20"
_SAFE = {"filtered": False, "severity": "safe"}
CONTENT_FILTER_RESULTS = {"hate": _SAFE, "self_harm": _SAFE, "sexual": _SAFE, "violence": _SAFE}
PROMPT_FILTER_RESULTS = [{"prompt_index": 0, "content_filter_results": CONTENT_FILTER_RESULTS}]
DEPLOYMENTS = "/openai/deployments/{deployment}"

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def _azure_error(status: int, message: str) -> web.Response:
    return web.json_response({"error": {"code": str(status), "message": message}}, status=status)


def prompt_filter_chunk() -> bytes:
    """The chunk Azure streams first: its content filter's verdict on the prompt, with no choices."""
    chunk = {"choices": [], "created": 0, "id": "", "model": "", "object": "", "prompt_filter_results": []}
    chunk["prompt_filter_results"] = PROMPT_FILTER_RESULTS
    return json.dumps(chunk).encode()


class FakeAzure(FakeUpstream):
    """Start with `start()`, stop with `stop()`; `base_url` is the resource endpoint a provider row points at."""

    def __init__(self, api_key: str) -> None:
        super().__init__()
        self.api_key = api_key

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def _open(self) -> None:
        app = web.Application(middlewares=[self._gate])
        self._add_routes(app.router, DEPLOYMENTS)
        app.router.add_get("/openai/models", self._models)
        await self._listen(app)

    @web.middleware
    async def _gate(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        """Azure's checks before any operation: an api-version, then the key; refused requests are recorded too."""
        if "api-version" not in request.query:
            refusal = _azure_error(404, "Resource not found")
        elif request.headers.get("api-key") != self.api_key:
            refusal = _azure_error(
                401,
                "Access denied due to invalid subscription key or wrong API endpoint. Make sure to provide a valid "
                "key for an active subscription and use a correct regional API endpoint for your resource.",
            )
        else:
            return await handler(request)
        headers = {name.lower(): value for name, value in request.headers.items()}
        with self._lock:
            self._received.append(Received(request.method, request.path, headers, {}, dict(request.query)))
        return refusal

    def chat_answer(self, model: str, reply: Reply, n: int) -> dict[str, Any]:
        answer = completion(AZURE_MODEL, reply, n)
        answer["prompt_filter_results"] = PROMPT_FILTER_RESULTS
        for choice in answer["choices"]:
            choice["content_filter_results"] = CONTENT_FILTER_RESULTS
        return answer

    def chat_events(self, model: str, reply: Reply, *, include_usage: bool) -> list[bytes]:
        events = [prompt_filter_chunk()]
        for event in stream_events(
            AZURE_MODEL, reply.content, prompt_tokens=reply.prompt_tokens, include_usage=include_usage
        ):
            chunk = json.loads(event)
            for choice in chunk["choices"]:
                choice["content_filter_results"] = CONTENT_FILTER_RESULTS if choice["delta"].get("content") else {}
            events.append(json.dumps(chunk).encode())
        return events
