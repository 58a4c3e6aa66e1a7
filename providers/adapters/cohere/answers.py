"""Cohere API v2 answers as OpenAI's: chat completions, embedding lists, model names.

Cohere gives its own answer id, which the ledger keeps; the client gets an OpenAI-style one.
A payload that is not the answer expected raises ValueError; a chat answer whose generation failed
(finish reason ERROR or TIMEOUT) raises `FailedAnswer`.
"""

from __future__ import annotations

from typing import Any

import orjson

from providers.adapters.cohere.errors import failed_generation
from providers.adapters.failures import FailedAnswer
from providers.adapters.shapes import new_completion_id, token_count

# Cohere's finish reasons, as OpenAI's. ERROR and TIMEOUT are failures, not ends (see `FAILED`).
FINISH_REASONS = {
    "COMPLETE": "stop",
    "STOP_SEQUENCE": "stop",
    "MAX_TOKENS": "length",
    "TOOL_CALL": "tool_calls",
}
FAILED = frozenset({"ERROR", "TIMEOUT"})


def finish_reason(reason: Any, *, called_tools: bool) -> str:
    if called_tools:
        return "tool_calls"
    return FINISH_REASONS.get(str(reason), "stop")


def openai_usage(usage: Any) -> dict[str, int]:
    """OpenAI's usage from Cohere's: the model's own counts (`tokens`), else the billed ones (`billed_units`)."""
    usage = usage if isinstance(usage, dict) else {}
    tokens, billed = usage.get("tokens"), usage.get("billed_units")
    counts = tokens if _filled(tokens) else billed if _filled(billed) else {}
    prompt = token_count(counts.get("input_tokens")) or 0
    completion = token_count(counts.get("output_tokens")) or 0
    return {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion}


def _named(call_id: Any, name: Any) -> bool:
    """Whether a tool call has the id and the name OpenAI's clients need to answer it."""
    return isinstance(call_id, str) and isinstance(name, str)


def _filled(value: Any) -> bool:
    return isinstance(value, dict) and bool(value)


def safe_id(value: Any) -> str:
    """An upstream id fit for a header and the ledger: printable ASCII, and short."""
    if not isinstance(value, str) or not value.isascii() or not value.isprintable():
        return ""
    return value[:200]


def answer_id(payload: bytes) -> str:
    try:
        answer = orjson.loads(payload)
    except orjson.JSONDecodeError:
        return ""
    return safe_id(answer.get("id") if isinstance(answer, dict) else None)


def tool_calls(calls: Any) -> list[dict[str, Any]]:
    """Cohere's tool calls in OpenAI's form; both give the arguments as JSON text."""
    translated = []
    for call in calls if isinstance(calls, list) else ():
        function = call.get("function") if isinstance(call, dict) else None
        if not isinstance(function, dict) or not _named(call.get("id"), function.get("name")):
            raise ValueError("not a Cohere chat answer")
        arguments = function.get("arguments")
        if not isinstance(arguments, str):
            arguments = orjson.dumps(arguments if arguments is not None else {}).decode()
        translated.append(
            {
                "id": call["id"],
                "type": "function",
                "function": {"name": function["name"], "arguments": arguments},
            }
        )
    return translated


def _object(payload: bytes, what: str) -> dict[str, Any]:
    try:
        body = orjson.loads(payload)
    except orjson.JSONDecodeError as exc:
        raise ValueError(f"not a Cohere {what}") from exc
    if not isinstance(body, dict):
        raise ValueError(f"not a Cohere {what}")
    return body


def _parts(content: Any) -> list[dict[str, Any]]:
    parts = content or []
    if not isinstance(parts, list) or not all(isinstance(part, dict) for part in parts):
        raise ValueError("not a Cohere chat answer")
    return parts


def _text(value: Any) -> str:
    return value if isinstance(value, str) else ""


def chat_completion(payload: bytes, public_model: str, *, created: int) -> dict[str, Any]:
    """The chat completion for a whole `/v2/chat` answer. Thinking parts are the model's, not the answer's.

    The tool plan (what the model says before it calls tools) is the answer's content when it has no other text.
    """
    answer = _object(payload, "chat answer")
    message = answer.get("message")
    if not isinstance(message, dict):
        raise ValueError("not a Cohere chat answer")
    reason = answer.get("finish_reason")
    if isinstance(reason, str) and reason in FAILED:
        raise FailedAnswer(failed_generation(reason, answer.get("error")))
    texts = [_text(part.get("text")) for part in _parts(message.get("content")) if part.get("type") == "text"]
    text = "".join(texts) or _text(message.get("tool_plan")) or None
    calls = tool_calls(message.get("tool_calls"))
    reply: dict[str, Any] = {"role": "assistant", "content": text, "refusal": None}
    if calls:
        reply["tool_calls"] = calls
    choice = {
        "index": 0,
        "message": reply,
        "logprobs": None,
        "finish_reason": finish_reason(reason, called_tools=bool(calls)),
    }
    return {
        "id": new_completion_id(),
        "object": "chat.completion",
        "created": created,
        "model": public_model,
        "choices": [choice],
        "usage": openai_usage(answer.get("usage")),
    }


def embedding_list(payload: bytes, public_model: str) -> dict[str, Any]:
    answer = _object(payload, "embeddings answer")
    vectors = (answer.get("embeddings") or {}).get("float") if isinstance(answer.get("embeddings"), dict) else None
    if not isinstance(vectors, list):
        raise ValueError("not a Cohere embeddings answer")
    meta = answer.get("meta")
    billed = meta.get("billed_units") if isinstance(meta, dict) else None
    tokens = (token_count(billed.get("input_tokens")) or 0) if isinstance(billed, dict) else 0
    return {
        "object": "list",
        "data": [{"object": "embedding", "index": index, "embedding": vector} for index, vector in enumerate(vectors)],
        "model": public_model,
        "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
    }


def model_names(payload: bytes) -> list[str]:
    """The names in a `/v1/models` answer."""
    answer = _object(payload, "model list")
    try:
        return [str(model["name"]) for model in answer["models"]]
    except (KeyError, TypeError) as exc:
        raise ValueError("not a Cohere model list") from exc
