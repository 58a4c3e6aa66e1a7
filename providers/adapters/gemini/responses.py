"""A Gemini `GenerateContentResponse`, as an OpenAI chat completion, and the pieces its stream shares.

Each candidate is a choice. Text parts are the answer; parts marked `thought` are the model's own
and are not relayed. A `functionCall` part is a tool call: Gemini gives it no id (or one of its own
on newer models), so Portico gives it OpenAI's form, and a thinking model's `thoughtSignature` rides
along in the call's `extra_content`, where it comes back from the client on the next turn.
"""

from __future__ import annotations

import secrets
from typing import Any

import orjson

from providers.adapters.gemini.requests import THOUGHT_SIGNATURE
from providers.adapters.shapes import new_completion_id, token_count

# The ValueError for a payload that is not a `GenerateContentResponse`; the relay ends the call on it.
MALFORMED = "not a Gemini answer"

# Gemini's finish reasons, as OpenAI's; anything new reads as a plain stop.
FINISH_REASONS = {
    "STOP": "stop",
    "MAX_TOKENS": "length",
    "SAFETY": "content_filter",
    "RECITATION": "content_filter",
    "LANGUAGE": "content_filter",
    "BLOCKLIST": "content_filter",
    "PROHIBITED_CONTENT": "content_filter",
    "SPII": "content_filter",
    "IMAGE_SAFETY": "content_filter",
    "IMAGE_PROHIBITED_CONTENT": "content_filter",
}


def finish_reason(reason: Any, *, called_tools: bool) -> str:
    mapped = FINISH_REASONS.get(str(reason), "stop")
    return "tool_calls" if called_tools and mapped == "stop" else mapped


def openai_usage(metadata: Any) -> dict[str, Any]:
    """OpenAI's usage object from `usageMetadata`.

    Gemini's prompt count already holds the cached tokens, as OpenAI's does. It counts thinking apart
    from the answer (`thoughtsTokenCount`) and bills it as output, so it is added to the completion,
    where OpenAI counts reasoning, and detailed there.
    """
    metadata = metadata if isinstance(metadata, dict) else {}
    prompt = _count(metadata.get("promptTokenCount")) + _count(metadata.get("toolUsePromptTokenCount"))
    thoughts = _count(metadata.get("thoughtsTokenCount"))
    completion = _count(metadata.get("candidatesTokenCount")) + thoughts
    return {
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": prompt + completion,
        "prompt_tokens_details": {"cached_tokens": _count(metadata.get("cachedContentTokenCount"))},
        "completion_tokens_details": {"reasoning_tokens": thoughts},
    }


def _count(value: Any) -> int:
    return token_count(value) or 0


def new_call_id() -> str:
    return f"call_{secrets.token_hex(12)}"


def tool_call(part: dict[str, Any]) -> dict[str, Any]:
    """A `functionCall` part (and its thought signature, if any) as an OpenAI tool call."""
    call = part.get("functionCall") or {}
    arguments = orjson.dumps(call.get("args") or {}).decode()
    out: dict[str, Any] = {
        "id": call.get("id") if isinstance(call.get("id"), str) and call.get("id") else new_call_id(),
        "type": "function",
        "function": {"name": str(call.get("name") or ""), "arguments": arguments},
    }
    signature = part.get("thoughtSignature")
    if isinstance(signature, str) and signature:
        out["extra_content"] = {"google": {THOUGHT_SIGNATURE: signature}}
    return out


def answer_parts(candidate: dict[str, Any]) -> tuple[list[str], list[dict[str, Any]]]:
    """A candidate's answer texts and its function-call parts, thoughts left out; ValueError if it has no parts
    list where they go. A part that is not an object is nothing Portico can relay, and is left out too."""
    content = candidate.get("content") or {}
    parts = (content.get("parts") or []) if isinstance(content, dict) else None
    if not isinstance(parts, list):
        raise ValueError(MALFORMED)
    parts = [part for part in parts if isinstance(part, dict)]
    texts = [part["text"] for part in parts if isinstance(part.get("text"), str) and not part.get("thought")]
    calls = [part for part in parts if isinstance(part.get("functionCall"), dict)]
    return texts, calls


def candidate_index(candidate: dict[str, Any], position: int) -> int:
    """The candidate's own index, else its place in the list."""
    index = candidate.get("index")
    return index if isinstance(index, int) and not isinstance(index, bool) else position


def candidate_list(response: dict[str, Any]) -> list[Any]:
    """The response's candidates, none if it has none; ValueError if it holds something else there."""
    candidates = response.get("candidates") or []
    if not isinstance(candidates, list):
        raise ValueError(MALFORMED)
    return candidates


def blocked(response: dict[str, Any]) -> bool:
    """True for a prompt Gemini refused outright: no candidates, and the reason in `promptFeedback`."""
    feedback = response.get("promptFeedback")
    return not response.get("candidates") and isinstance(feedback, dict) and bool(feedback.get("blockReason"))


def response_id(response: Any) -> str:
    """Gemini's id for an answer (`responseId`), kept for the ledger; printable and short, as a header is."""
    value = response.get("responseId") if isinstance(response, dict) else None
    if not isinstance(value, str) or not value.isascii() or not value.isprintable():
        return ""
    return value[:200]


def _choice(candidate: dict[str, Any], position: int) -> dict[str, Any]:
    texts, call_parts = answer_parts(candidate)
    calls = [tool_call(part) for part in call_parts]
    message: dict[str, Any] = {"role": "assistant", "content": "".join(texts) if texts else None, "refusal": None}
    if calls:
        message["tool_calls"] = calls
    return {
        "index": candidate_index(candidate, position),
        "message": message,
        "logprobs": None,
        "finish_reason": finish_reason(candidate.get("finishReason"), called_tools=bool(calls)),
    }


def chat_completion(payload: bytes, public_model: str, *, created: int) -> dict[str, Any]:
    """The chat completion for a whole `generateContent` answer; ValueError if the payload is not one."""
    try:
        response = orjson.loads(payload)
    except orjson.JSONDecodeError as exc:
        raise ValueError(MALFORMED) from exc
    if not isinstance(response, dict):
        raise ValueError(MALFORMED)
    candidates = [candidate for candidate in candidate_list(response) if isinstance(candidate, dict)]
    choices = [_choice(candidate, position) for position, candidate in enumerate(candidates)]
    if not choices and blocked(response):
        message = {"role": "assistant", "content": None, "refusal": None}
        choices = [{"index": 0, "message": message, "logprobs": None, "finish_reason": "content_filter"}]
    return {
        # OpenAI's ids look like this; Gemini's own (`responseId`) is the call's upstream id.
        "id": new_completion_id(),
        "object": "chat.completion",
        "created": created,
        "model": public_model,
        "choices": choices,
        "usage": openai_usage(response.get("usageMetadata")),
    }
