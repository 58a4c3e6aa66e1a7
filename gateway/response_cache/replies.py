"""Stored answers: which may be stored, and how one is served again, whole or as OpenAI's stream of chunks.

What is stored is the answer's JSON exactly as its first client got it (usage
included). A hit gets a fresh `id` and `created`; asked as a stream, it is cut
into the chunks OpenAI would send: a role chunk, the content, the finish
reason, the usage (only with `stream_options.include_usage`), then [DONE].
"""

from __future__ import annotations

import os
import time
from typing import Any

import orjson

from gateway.sse import DONE, frame

# Operations whose answers are cached, with the object type a complete answer of each has.
ANSWER_OBJECTS = {"chat": "chat.completion", "completions": "text_completion"}
_ID_PREFIXES = {"chat": "chatcmpl-", "completions": "cmpl-"}
# An answer cut short by a content filter, or with no finish reason at all, is not stored.
_COMPLETE = frozenset({"stop", "length", "tool_calls", "function_call"})


def storable(operation: str, content: bytes) -> bool:
    """Whether a successful answer is whole and complete: every choice finished for a reason worth repeating."""
    try:
        answer = orjson.loads(content)
    except orjson.JSONDecodeError:
        return False
    if not isinstance(answer, dict) or answer.get("object") != ANSWER_OBJECTS.get(operation):
        return False
    choices = answer.get("choices")
    return (
        isinstance(choices, list)
        and bool(choices)
        and all(isinstance(choice, dict) and choice.get("finish_reason") in _COMPLETE for choice in choices)
    )


def fresh_answer(operation: str, stored: bytes) -> tuple[dict[str, Any], str]:
    """The stored answer with a new id and creation time, and the id it was first given."""
    answer = orjson.loads(stored)
    first_id = str(answer.get("id") or "")
    answer["id"] = _ID_PREFIXES[operation] + os.urandom(12).hex()
    answer["created"] = int(time.time())
    return answer, first_id


def stream_of(operation: str, answer: dict[str, Any], *, include_usage: bool) -> bytes:
    """The whole SSE body of a streamed hit, [DONE] included."""
    chunks = chat_chunks(answer) if operation == "chat" else completion_chunks(answer)
    if include_usage:
        for chunk in chunks:
            chunk["usage"] = None  # as OpenAI sends it: null on every chunk but the last
        chunks.append({**_head(answer), "choices": [], "usage": answer.get("usage")})
    return b"".join(frame(orjson.dumps(chunk)) for chunk in chunks) + DONE


def _head(answer: dict[str, Any]) -> dict[str, Any]:
    head = {"id": answer["id"], "object": "", "created": answer["created"], "model": answer.get("model", "")}
    head["object"] = "chat.completion.chunk" if answer.get("object") == "chat.completion" else "text_completion"
    if answer.get("system_fingerprint") is not None:
        head["system_fingerprint"] = answer["system_fingerprint"]
    return head


def chat_chunks(answer: dict[str, Any]) -> list[dict[str, Any]]:
    head = _head(answer)
    chunks = []
    for choice in answer["choices"]:
        index, message = choice.get("index", 0), choice.get("message") or {}
        chunks.append(_chat_chunk(head, index, {"role": message.get("role", "assistant"), "content": ""}))
        delta = {name: message[name] for name in ("content", "refusal") if message.get(name)}
        if message.get("tool_calls"):
            delta["tool_calls"] = [{"index": n, **call} for n, call in enumerate(message["tool_calls"])]
        if message.get("function_call"):
            delta["function_call"] = message["function_call"]
        if delta or choice.get("logprobs"):
            chunks.append(_chat_chunk(head, index, delta, logprobs=choice.get("logprobs")))
        chunks.append(_chat_chunk(head, index, {}, finish=choice.get("finish_reason")))
    return chunks


def _chat_chunk(
    head: dict[str, Any], index: int, delta: dict[str, Any], *, finish: str | None = None, logprobs: Any = None
) -> dict[str, Any]:
    return {**head, "choices": [{"index": index, "delta": delta, "logprobs": logprobs, "finish_reason": finish}]}


def completion_chunks(answer: dict[str, Any]) -> list[dict[str, Any]]:
    head = _head(answer)
    chunks = []
    for choice in answer["choices"]:
        index = choice.get("index", 0)
        text = {"text": choice.get("text") or "", "index": index, "logprobs": choice.get("logprobs")}
        chunks.append({**head, "choices": [{**text, "finish_reason": None}]})
        finish = {"text": "", "index": index, "logprobs": None, "finish_reason": choice.get("finish_reason")}
        chunks.append({**head, "choices": [finish]})
    return chunks
