"""What the mock provider answers: OpenAI-shaped bodies and streams, computed from the request."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from typing import Any

import httpx
import orjson

MOCK_MODELS = ("mock-echo",)
_CREATED = 1_767_225_600  # fixed, so answers are reproducible
MAX_CHOICES = 128  # OpenAI's bound on `n`
# The most text one answer echoes, shared by its choices: a 1 MB message asked for 128 times is not 128 MB.
MAX_ECHO_CHARS = 65_536


def _text_of(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return " ".join(part.get("text", "") for part in content if isinstance(part, dict))
    return ""


def _reply(body: dict[str, Any]) -> tuple[str, str]:
    """The text each choice echoes, and its finish reason: "length" when the echo had to be cut."""
    text = "Hello from Portico's mock provider."
    for message in reversed(body.get("messages") or []):
        if isinstance(message, dict) and message.get("role") == "user":
            text = _text_of(message.get("content")) or "(empty message)"
            break
    most = MAX_ECHO_CHARS // _choices(body)
    if len(text) <= most:
        return text, "stop"
    cut = text[:most]
    if not text[most].isspace():  # the word the cut falls in goes, as with a model stopped by max_tokens
        cut = cut.rpartition(" ")[0] or cut
    return cut, "length"


def _choices(body: dict[str, Any]) -> int:
    n = body.get("n")
    return n if isinstance(n, int) and 1 <= n <= MAX_CHOICES else 1


def _usage(body: dict[str, Any], reply: str) -> dict[str, int]:
    prompt = sum(len(_text_of(m.get("content")).split()) for m in body.get("messages") or [] if isinstance(m, dict))
    completion = len(reply.split()) * _choices(body)
    return {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion}


def _completion(body: dict[str, Any], reply: str, finish: str, request_id: str) -> dict[str, Any]:
    choices: list[dict[str, Any]] = [
        {
            "index": index,
            "message": {"role": "assistant", "content": reply, "refusal": None, "annotations": []},
            "logprobs": None,
            "finish_reason": finish,
        }
        for index in range(_choices(body))
    ]
    return {
        "id": request_id,
        "object": "chat.completion",
        "created": _CREATED,
        "model": body.get("model"),
        "choices": choices,
        "usage": _usage(body, reply),
        "system_fingerprint": "fp_portico_mock",
    }


async def _stream(body: dict[str, Any], reply: str, finish: str, request_id: str) -> AsyncIterator[bytes]:
    include_usage = bool((body.get("stream_options") or {}).get("include_usage"))
    base = {"id": request_id, "object": "chat.completion.chunk", "created": _CREATED, "model": body.get("model")}
    extra = {"usage": None} if include_usage else {}

    choices = range(_choices(body))

    def event(index: int, delta: dict[str, Any], finish: str | None) -> bytes:
        choice = {"index": index, "delta": delta, "logprobs": None, "finish_reason": finish}
        return b"data: " + orjson.dumps({**base, "choices": [choice], **extra}) + b"\n\n"

    for index in choices:
        yield event(index, {"role": "assistant", "content": ""}, None)
    for position, word in enumerate(reply.split()):
        for index in choices:
            yield event(index, {"content": word if position == 0 else " " + word}, None)
    for index in choices:
        yield event(index, {}, finish)
    if include_usage:
        yield b"data: " + orjson.dumps({**base, "choices": [], "usage": _usage(body, reply)}) + b"\n\n"
    yield b"data: [DONE]\n\n"


async def mock_handler(request: httpx.Request) -> httpx.Response:
    path = request.url.path
    if request.method == "GET" and path.endswith("/models"):
        data = [{"id": name, "object": "model", "created": _CREATED, "owned_by": "portico"} for name in MOCK_MODELS]
        return httpx.Response(200, json={"object": "list", "data": data})
    if request.method == "POST" and path.endswith("/chat/completions"):
        body = orjson.loads(await request.aread())
        n = body.get("n")
        if isinstance(n, int) and not 1 <= n <= MAX_CHOICES:
            return _too_many_choices(n)
        reply, finish = _reply(body)
        request_id = f"chatcmpl-mock{time.monotonic_ns():x}"
        if body.get("stream"):
            return httpx.Response(
                200, headers={"content-type": "text/event-stream"}, content=_stream(body, reply, finish, request_id)
            )
        return httpx.Response(
            200,
            content=orjson.dumps(_completion(body, reply, finish, request_id)),
            headers={"content-type": "application/json"},
        )
    return httpx.Response(
        404,
        json={
            "error": {
                "message": f"Unknown path {path}",
                "type": "invalid_request_error",
                "param": None,
                "code": "unknown_url",
            }
        },
    )


def _too_many_choices(n: int) -> httpx.Response:
    """OpenAI's answer to an `n` out of its range (Portico refuses it first; this holds for any other caller)."""
    side, bound = ("above maximum", f"<= {MAX_CHOICES}") if n > MAX_CHOICES else ("below minimum", ">= 1")
    code = "integer_above_max_value" if n > MAX_CHOICES else "integer_below_min_value"
    message = f"Invalid 'n': integer {side} value. Expected a value {bound}, but got {n} instead."
    error = {"message": message, "type": "invalid_request_error", "param": "n", "code": code}
    return httpx.Response(400, json={"error": error})
