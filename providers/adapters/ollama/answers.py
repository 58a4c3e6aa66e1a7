"""Ollama's answers as OpenAI's: chat completions, embedding lists, model names.

Ollama gives no completion or tool-call ids, so Portico makes them up in OpenAI's
form; a payload that is not the answer expected raises ValueError.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import orjson

from providers.adapters.shapes import token_count

Clock = Callable[[], float]


def new_completion_id() -> str:
    return f"chatcmpl-{secrets.token_hex(12)}"


def _new_call_id() -> str:
    return f"call_{secrets.token_hex(12)}"


def _object(payload: bytes, what: str) -> dict[str, Any]:
    try:
        body = orjson.loads(payload)
    except orjson.JSONDecodeError as exc:
        raise ValueError(f"not an Ollama {what}") from exc
    if not isinstance(body, dict):
        raise ValueError(f"not an Ollama {what}")
    return body


def created(answer: dict[str, Any], clock: Clock) -> int:
    """The answer's `created_at` in Unix seconds, or now if it has none Portico can read."""
    value = answer.get("created_at")
    if isinstance(value, str):
        try:
            moment = datetime.fromisoformat(value)
        except ValueError:
            pass
        else:
            return int((moment if moment.tzinfo else moment.replace(tzinfo=UTC)).timestamp())
    return int(clock())


def openai_tool_calls(calls: Any) -> list[dict[str, Any]]:
    """Ollama's tool calls (arguments as an object) in OpenAI's form (arguments as a JSON string).

    ValueError for calls that are not a list of calls, each with its function object.
    """
    if not isinstance(calls, list):
        raise ValueError("not Ollama tool calls")
    translated = []
    for call in calls:
        function = call.get("function") if isinstance(call, dict) else None
        if not isinstance(function, dict):
            raise ValueError("not Ollama tool calls")
        name, call_id = function.get("name") or "", call.get("id")
        if not isinstance(name, str):
            raise ValueError("not Ollama tool calls")
        arguments = function.get("arguments")
        if not isinstance(arguments, str):
            arguments = orjson.dumps(arguments if arguments is not None else {}).decode()
        translated.append(
            {
                "id": call_id if isinstance(call_id, str) and call_id else _new_call_id(),
                "type": "function",
                "function": {"name": name, "arguments": arguments},
            }
        )
    return translated


def text(value: Any) -> str:
    """A message's content; what is not text is none."""
    return value if isinstance(value, str) else ""


def finish_reason(done_reason: Any, *, called_tools: bool) -> str:
    if called_tools:
        return "tool_calls"
    return "length" if done_reason == "length" else "stop"


def usage(answer: dict[str, Any]) -> dict[str, int]:
    # Ollama leaves a count out when it is zero (a prompt served wholly from its cache, say).
    prompt = token_count(answer.get("prompt_eval_count")) or 0
    completion = token_count(answer.get("eval_count")) or 0
    return {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion}


def chat_completion(
    payload: bytes, public_model: str, *, clock: Clock = time.time, completion_id: str | None = None
) -> dict[str, Any]:
    answer = _object(payload, "chat answer")
    message = answer.get("message")
    if not isinstance(message, dict):
        raise ValueError("not an Ollama chat answer")
    calls = openai_tool_calls(message.get("tool_calls") or [])
    content = text(message.get("content"))
    reply: dict[str, Any] = {"role": "assistant", "content": content or (None if calls else ""), "refusal": None}
    if calls:
        reply["tool_calls"] = calls
    choice = {
        "index": 0,
        "message": reply,
        "logprobs": None,
        "finish_reason": finish_reason(answer.get("done_reason"), called_tools=bool(calls)),
    }
    return {
        "id": completion_id or new_completion_id(),
        "object": "chat.completion",
        "created": created(answer, clock),
        "model": public_model,
        "choices": [choice],
        "usage": usage(answer),
    }


def embedding_list(payload: bytes, public_model: str) -> dict[str, Any]:
    answer = _object(payload, "embeddings answer")
    vectors = answer.get("embeddings")
    if not isinstance(vectors, list):
        raise ValueError("not an Ollama embeddings answer")
    tokens = token_count(answer.get("prompt_eval_count")) or 0
    return {
        "object": "list",
        "data": [{"object": "embedding", "index": index, "embedding": vector} for index, vector in enumerate(vectors)],
        "model": public_model,
        "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
    }


def model_names(payload: bytes) -> list[str]:
    """The names in an `/api/tags` answer."""
    answer = _object(payload, "model list")
    try:
        return [str(model.get("name") or model["model"]) for model in answer["models"]]
    except (KeyError, TypeError, AttributeError) as exc:
        raise ValueError("not an Ollama model list") from exc
