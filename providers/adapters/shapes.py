"""OpenAI's chat completion shapes, enforced on what OpenAI-compatible servers send.

Servers that speak "OpenAI-compatible" differ in small ways that strict clients notice: a
choice without `logprobs`, a message without `refusal`, `"tool_calls": null` where OpenAI
leaves the key out, `"system_fingerprint": null`, usage details set to null, a finish
reason OpenAI does not have. The functions here bring a whole answer
(CreateChatCompletionResponse) or a stream chunk (CreateChatCompletionStreamResponse) to
the shape OpenAI's spec gives, changing nothing else.

Streams are the hot part: a chunk is parsed (orjson) and `chunk_is_exact` looks at a few of
its keys; an exact chunk goes on as the bytes it came as, and only the others are shaped and
written again. The check may send an exact chunk down the slow path, never a wrong one past it.
"""

from __future__ import annotations

import secrets
import time
from typing import Any

import orjson

FINISH_REASONS = frozenset({"stop", "length", "tool_calls", "content_filter", "function_call"})

# A token count above this is no count at all: JSON readers take integers up to 2**53 exactly, and a sum of a
# few such counts stays well within the 64 bits orjson writes.
COUNT_LIMIT = 2**53

# Keys OpenAI leaves out rather than send as null; `content`, `refusal`, `logprobs`, `finish_reason`
# (in chunks), `usage` (in chunks), `service_tier` and `audio` may be null and are not listed.
_OMITTED_WHEN_NULL = frozenset({"tool_calls", "function_call", "annotations", "system_fingerprint"})


def chunk_is_exact(chunk: dict[str, Any]) -> bool:
    """True if a parsed chunk is already OpenAI's exact shape (a chunk with usage or tool calls is always shaped).

    Parsing with orjson and looking at a few keys costs less than the dozen substring searches a check of the
    raw bytes needs; what it saves is writing the chunk again, which an exact one never is.
    """
    if not _head_is_exact(chunk):
        return False
    if chunk.get("object") != "chat.completion.chunk" or chunk.get("usage") is not None:
        return False
    if chunk.get("system_fingerprint", "") is None:
        return False
    choices = chunk.get("choices")
    if type(choices) is not list:
        return False
    for choice in choices:
        if type(choice) is not dict or "logprobs" not in choice or type(choice.get("index")) is not int:
            return False
        reason = choice.get("finish_reason", False)
        if reason is not None and reason not in FINISH_REASONS:
            return False
        delta = choice.get("delta")
        if type(delta) is not dict or "tool_calls" in delta or "function_call" in delta:
            return False
        if delta.get("role", "") is None:
            return False
    return True


def completion_is_exact(body: dict[str, Any]) -> bool:
    """True if a parsed whole answer is already OpenAI's exact shape (one with tool calls is always shaped).

    An exact answer then only has its model renamed in its bytes, not written again; like `chunk_is_exact`,
    the check may send an exact answer down the slow path, never a wrong one past it.
    """
    if not _head_is_exact(body):
        return False
    if body.get("object") != "chat.completion" or body.get("system_fingerprint", "") is None:
        return False
    if "usage" in body and not _usage_is_exact(body["usage"]):
        return False
    choices = body.get("choices")
    if type(choices) is not list:
        return False
    for choice in choices:
        if type(choice) is not dict or "logprobs" not in choice or type(choice.get("index")) is not int:
            return False
        if choice.get("finish_reason") not in FINISH_REASONS:
            return False
        message = choice.get("message")
        if type(message) is not dict or message.get("role") != "assistant":
            return False
        if "content" not in message or "refusal" not in message:
            return False
        if "tool_calls" in message or "function_call" in message or message.get("annotations", "") is None:
            return False
    return True


def _head_is_exact(body: dict[str, Any]) -> bool:
    """An id and a creation time the shapers would keep: an empty id or a zero time is replaced."""
    identifier, created = body.get("id"), body.get("created")
    return (
        type(identifier) is str
        and bool(identifier)
        and type(created) is int
        and created > 0
        and type(body.get("model")) is str
    )


def _usage_is_exact(usage: Any) -> bool:
    if type(usage) is not dict:
        return False
    if any(type(usage.get(name)) is not int for name in ("prompt_tokens", "completion_tokens", "total_tokens")):
        return False
    if usage["total_tokens"] == 0 and usage["prompt_tokens"] + usage["completion_tokens"] > 0:
        return False  # shape_usage puts in the sum
    for name in ("prompt_tokens_details", "completion_tokens_details"):
        details = usage.get(name, {})
        if type(details) is not dict or any(type(value) is not int for value in details.values()):
            return False
    return True


class ChunkShaper:
    """Shapes one stream's chunks; keeps the stream's id and creation time for chunks that lack them."""

    __slots__ = ("created", "id", "model")

    def __init__(self, public_model: str) -> None:
        self.model = public_model
        self.id = ""
        self.created = 0

    def shape(self, event: bytes) -> bytes:
        """The chunk as OpenAI's exact shape: the very same bytes if it already was, else shaped and written again."""
        try:
            chunk = orjson.loads(event)
        except orjson.JSONDecodeError:
            return event  # not JSON: nothing to shape, and the stream's own checks judge it
        if not isinstance(chunk, dict):
            return event
        if chunk_is_exact(chunk):
            if not self.id:  # the stream's first chunk: its id and time, for later chunks that lack them
                self.id, self.created = chunk["id"], chunk["created"]
            return event
        return orjson.dumps(self.shape_chunk(chunk))

    def shape_chunk(self, chunk: dict[str, Any]) -> dict[str, Any]:
        self.id = _text(chunk.get("id")) or self.id or new_completion_id()
        self.created = _integer(chunk.get("created")) or self.created or int(time.time())
        chunk["id"], chunk["created"], chunk["model"] = self.id, self.created, self.model
        chunk["object"] = "chat.completion.chunk"
        _drop_nulls(chunk, ("system_fingerprint",))
        choices = chunk.get("choices")
        chunk["choices"] = [_chunk_choice(choice, i) for i, choice in enumerate(_dicts(choices))]
        if isinstance(chunk.get("usage"), dict):
            chunk["usage"] = shape_usage(chunk["usage"])
        elif "usage" in chunk and chunk["usage"] is not None:
            chunk["usage"] = None
        return chunk


def shape_completion(body: dict[str, Any], public_model: str) -> dict[str, Any]:
    """A whole chat completion in OpenAI's exact shape (changed in place, and returned)."""
    body["id"] = _text(body.get("id")) or new_completion_id()
    body["object"] = "chat.completion"
    body["created"] = _integer(body.get("created")) or int(time.time())
    body["model"] = public_model
    _drop_nulls(body, ("system_fingerprint", "usage"))
    body["choices"] = [_answer_choice(choice, i) for i, choice in enumerate(_dicts(body.get("choices")))]
    if "usage" in body:
        body["usage"] = shape_usage(body["usage"]) if isinstance(body["usage"], dict) else None
        if body["usage"] is None:
            del body["usage"]
    return body


def shape_usage(usage: dict[str, Any]) -> dict[str, Any]:
    """OpenAI's usage object: the three counts as integers, details objects only when they hold counts."""
    prompt = _integer(usage.get("prompt_tokens"))
    completion = _integer(usage.get("completion_tokens"))
    usage["prompt_tokens"], usage["completion_tokens"] = prompt, completion
    usage["total_tokens"] = _integer(usage.get("total_tokens")) or prompt + completion
    for name in ("prompt_tokens_details", "completion_tokens_details"):
        details = usage.get(name)
        if isinstance(details, dict):
            usage[name] = {key: value for key, value in details.items() if isinstance(value, int)}
        elif name in usage:
            del usage[name]
    return usage


def token_count(value: Any) -> int | None:
    """An upstream's token count, or None for what is not one (a float, a boolean, a negative or absurd number)."""
    if isinstance(value, int) and not isinstance(value, bool) and 0 <= value < COUNT_LIMIT:
        return value
    return None


def new_completion_id() -> str:
    return f"chatcmpl-{secrets.token_urlsafe(18)}"


def _chunk_choice(choice: dict[str, Any], position: int) -> dict[str, Any]:
    choice["index"] = _integer(choice.get("index"), position)
    delta = choice.get("delta")
    delta = delta if isinstance(delta, dict) else {}
    _drop_nulls(delta, ("tool_calls", "function_call", "role"))
    if isinstance(delta.get("tool_calls"), list):
        delta["tool_calls"] = [_tool_call_chunk(call, i) for i, call in enumerate(_dicts(delta["tool_calls"]))]
    choice["delta"] = delta
    reason = choice.get("finish_reason")
    choice["finish_reason"] = None if not reason else _finish_reason(reason)
    choice.setdefault("logprobs", None)
    return choice


def _answer_choice(choice: dict[str, Any], position: int) -> dict[str, Any]:
    choice["index"] = _integer(choice.get("index"), position)
    message = choice.get("message")
    message = message if isinstance(message, dict) else {}
    message["role"] = "assistant"
    message.setdefault("content", None)
    message.setdefault("refusal", None)
    _drop_nulls(message, _OMITTED_WHEN_NULL)
    if isinstance(message.get("tool_calls"), list):
        message["tool_calls"] = [_tool_call(call) for call in _dicts(message["tool_calls"])]
    choice["message"] = message
    # Not nullable in a whole answer: an upstream that gives none stopped for its own reasons.
    choice["finish_reason"] = _finish_reason(choice.get("finish_reason"))
    choice.setdefault("logprobs", None)
    return choice


def _tool_call(call: dict[str, Any]) -> dict[str, Any]:
    function = call.get("function")
    function = function if isinstance(function, dict) else {}
    arguments = function.get("arguments")
    if not isinstance(arguments, str):
        # Some servers send the arguments as an object; OpenAI always sends the JSON text.
        arguments = orjson.dumps(arguments if arguments is not None else {}).decode()
    call["id"] = _text(call.get("id")) or f"call_{secrets.token_hex(12)}"
    call["type"] = "function"
    call["function"] = {**function, "name": _text(function.get("name")), "arguments": arguments}
    return call


def _tool_call_chunk(call: dict[str, Any], position: int) -> dict[str, Any]:
    call["index"] = _integer(call.get("index"), position)
    _drop_nulls(call, ("id", "type", "function"))
    function = call.get("function")
    if isinstance(function, dict):
        _drop_nulls(function, ("name", "arguments"))
        if "arguments" in function and not isinstance(function["arguments"], str):
            function["arguments"] = orjson.dumps(function["arguments"]).decode()
    return call


def _finish_reason(reason: Any) -> str:
    return reason if reason in FINISH_REASONS else "stop"


def _drop_nulls(mapping: dict[str, Any], keys: Any) -> None:
    for key in keys:
        if key in mapping and mapping[key] is None:
            del mapping[key]


def _dicts(value: Any) -> list[dict[str, Any]]:
    return [item for item in value if isinstance(item, dict)] if isinstance(value, list) else []


def _text(value: Any) -> str:
    return value if isinstance(value, str) else ""


def _integer(value: Any, default: int = 0) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) else default
