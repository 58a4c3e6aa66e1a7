"""OpenAI's chat completion shapes, enforced on what OpenAI-compatible servers send.

Servers that speak "OpenAI-compatible" differ in small ways that strict clients notice: a
choice without `logprobs`, a message without `refusal`, `"tool_calls": null` where OpenAI
leaves the key out, `"system_fingerprint": null`, usage details set to null, a finish
reason OpenAI does not have. The functions here bring a whole answer
(CreateChatCompletionResponse) or a stream chunk (CreateChatCompletionStreamResponse) to
the shape OpenAI's spec gives, changing nothing else. What no shaping can make right (choices or
tool calls that are not lists, a content that is a number, logprobs that are not OpenAI's object)
raises ValueError, which the relay answers as the upstream's failure, not as a success.

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

# What OpenAI's text fields (`content`, `refusal`, `system_fingerprint`) may hold, and the lists in `logprobs`.
_TEXT_OR_NULL = (str, type(None))
_LIST_OR_NULL = (list, type(None))

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
    if type(chunk.get("system_fingerprint", "")) is not str:
        return False
    choices = chunk.get("choices")
    if type(choices) is not list:
        return False
    for choice in choices:
        if type(choice) is not dict or type(choice.get("index")) is not int or not _has_logprobs(choice):
            return False
        reason = choice.get("finish_reason", False)
        if reason is not None and not _is_finish_reason(reason):
            return False
        delta = choice.get("delta")
        if type(delta) is not dict or "tool_calls" in delta or "function_call" in delta:
            return False
        if delta.get("role", "assistant") != "assistant" or type(delta.get("content")) not in _TEXT_OR_NULL:
            return False
    return True


def completion_is_exact(body: dict[str, Any]) -> bool:
    """True if a parsed whole answer is already OpenAI's exact shape (one with tool calls is always shaped).

    An exact answer then only has its model renamed in its bytes, not written again; like `chunk_is_exact`,
    the check may send an exact answer down the slow path, never a wrong one past it.
    """
    if not _head_is_exact(body):
        return False
    if body.get("object") != "chat.completion" or type(body.get("system_fingerprint", "")) is not str:
        return False
    if "usage" in body and not _usage_is_exact(body["usage"]):
        return False
    choices = body.get("choices")
    if type(choices) is not list:
        return False
    for choice in choices:
        if type(choice) is not dict or type(choice.get("index")) is not int or not _has_logprobs(choice):
            return False
        if not _is_finish_reason(choice.get("finish_reason")):
            return False
        message = choice.get("message")
        if type(message) is not dict or message.get("role") != "assistant":
            return False
        if "content" not in message or "refusal" not in message:
            return False
        if type(message["content"]) not in _TEXT_OR_NULL or type(message["refusal"]) not in _TEXT_OR_NULL:
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


def _has_logprobs(choice: dict[str, Any]) -> bool:
    """Logprobs of null: a choice that has some (rarely asked for) is shaped, not checked here."""
    return "logprobs" in choice and choice["logprobs"] is None


def _is_finish_reason(reason: Any) -> bool:
    return type(reason) is str and reason in FINISH_REASONS


def _usage_is_exact(usage: Any) -> bool:
    if type(usage) is not dict:
        return False
    if any(_count(usage.get(name)) is None for name in ("prompt_tokens", "completion_tokens", "total_tokens")):
        return False
    if usage["total_tokens"] == 0 and usage["prompt_tokens"] + usage["completion_tokens"] > 0:
        return False  # shape_usage puts in the sum
    for name in ("prompt_tokens_details", "completion_tokens_details"):
        details = usage.get(name, {})
        if type(details) is not dict or any(_count(value) is None for value in details.values()):
            return False
    return True


def _count(value: Any) -> int | None:
    return value if type(value) is int and 0 <= value < COUNT_LIMIT else None


class ChunkShaper:
    """Shapes one stream's chunks; keeps the stream's id and creation time for chunks that lack them."""

    __slots__ = ("created", "id", "model")

    def __init__(self, public_model: str) -> None:
        self.model = public_model
        self.id = ""
        self.created = 0

    def shape(self, event: bytes) -> bytes:
        """The chunk as OpenAI's exact shape: the very same bytes if it already was, else shaped and written again."""
        chunk = orjson.loads(event)  # not JSON: orjson.JSONDecodeError, a ValueError, which ends the stream
        if not isinstance(chunk, dict):
            raise ValueError("not a chat completion chunk")
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
        _check_text(chunk, "system_fingerprint")
        choices = chunk.get("choices")
        if choices is not None and not isinstance(choices, list):
            raise ValueError("not a chat completion chunk: its choices are not a list")
        chunk["choices"] = [_chunk_choice(choice, i) for i, choice in enumerate(_dicts(choices))]
        if isinstance(chunk.get("usage"), dict):
            chunk["usage"] = shape_usage(chunk["usage"])
        elif "usage" in chunk and chunk["usage"] is not None:
            chunk["usage"] = None
        return chunk


def shape_completion(body: dict[str, Any], public_model: str) -> dict[str, Any]:
    """A whole chat completion in OpenAI's exact shape (changed in place, and returned).

    Raises ValueError for what no shaping makes an answer: choices, or a message's tool calls, that are not lists.
    """
    if not isinstance(body.get("choices"), list):
        raise ValueError("not a chat completion: its choices are not a list")
    body["id"] = _text(body.get("id")) or new_completion_id()
    body["object"] = "chat.completion"
    body["created"] = _integer(body.get("created")) or int(time.time())
    body["model"] = public_model
    _drop_nulls(body, ("system_fingerprint", "usage"))
    _check_text(body, "system_fingerprint")
    body["choices"] = [_answer_choice(choice, i) for i, choice in enumerate(_dicts(body.get("choices")))]
    if "usage" in body:
        body["usage"] = shape_usage(body["usage"]) if isinstance(body["usage"], dict) else None
        if body["usage"] is None:
            del body["usage"]
    return body


def shape_usage(usage: dict[str, Any]) -> dict[str, Any]:
    """OpenAI's usage object: the three counts as integers, details objects only when they hold counts.

    A count that is no count (a string, a negative number) becomes 0, which the gateway then counts itself.
    """
    prompt = token_count(usage.get("prompt_tokens")) or 0
    completion = token_count(usage.get("completion_tokens")) or 0
    usage["prompt_tokens"], usage["completion_tokens"] = prompt, completion
    usage["total_tokens"] = token_count(usage.get("total_tokens")) or prompt + completion
    for name in ("prompt_tokens_details", "completion_tokens_details"):
        details = usage.get(name)
        if isinstance(details, dict):
            usage[name] = {key: value for key, value in details.items() if token_count(value) is not None}
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
    if "role" in delta:
        delta["role"] = "assistant"  # what an answer's role can only be, as in a whole answer
    _check_text(delta, "content")
    _check_text(delta, "refusal")
    if "tool_calls" in delta:
        delta["tool_calls"] = [_tool_call_chunk(call, i) for i, call in enumerate(_listed_calls(delta["tool_calls"]))]
    choice["delta"] = delta
    reason = choice.get("finish_reason")
    choice["finish_reason"] = None if not reason else _finish_reason(reason)
    choice.setdefault("logprobs", None)
    _check_logprobs(choice)
    return choice


def _answer_choice(choice: dict[str, Any], position: int) -> dict[str, Any]:
    choice["index"] = _integer(choice.get("index"), position)
    message = choice.get("message")
    message = message if isinstance(message, dict) else {}
    message["role"] = "assistant"
    message.setdefault("content", None)
    message.setdefault("refusal", None)
    _check_text(message, "content")
    _check_text(message, "refusal")
    _drop_nulls(message, _OMITTED_WHEN_NULL)
    if "tool_calls" in message:
        message["tool_calls"] = [_tool_call(call) for call in _listed_calls(message["tool_calls"])]
    choice["message"] = message
    # Not nullable in a whole answer: an upstream that gives none stopped for its own reasons.
    choice["finish_reason"] = _finish_reason(choice.get("finish_reason"))
    choice.setdefault("logprobs", None)
    _check_logprobs(choice)
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
    _check_text(call, "id")
    if "type" in call:
        call["type"] = "function"
    function = call.get("function")
    if function is not None and not isinstance(function, dict):
        raise ValueError("not a chat completion chunk: a tool call's function is not an object")
    if isinstance(function, dict):
        _drop_nulls(function, ("name", "arguments"))
        _check_text(function, "name")
        if "arguments" in function and not isinstance(function["arguments"], str):
            function["arguments"] = orjson.dumps(function["arguments"]).decode()
    return call


def _listed_calls(calls: Any) -> list[dict[str, Any]]:
    """A message's tool calls; raises ValueError for calls that are not a list (a string, an object)."""
    if not isinstance(calls, list):
        raise ValueError("not a chat completion: its tool calls are not a list")
    return _dicts(calls)


def _finish_reason(reason: Any) -> str:
    return reason if _is_finish_reason(reason) else "stop"


def _check_text(mapping: dict[str, Any], key: str) -> None:
    """Raises ValueError if `key` holds what is neither text nor null: no shaping can tell what it meant."""
    if type(mapping.get(key)) not in _TEXT_OR_NULL:
        raise ValueError(f"not a chat completion: its {key} is not text")


def _check_logprobs(choice: dict[str, Any]) -> None:
    """Logprobs as OpenAI's object has them: `content` and `refusal`, each a list or null."""
    logprobs = choice["logprobs"]
    if logprobs is None:
        return
    if not isinstance(logprobs, dict):
        raise ValueError("not a chat completion: its logprobs are not an object")
    for key in ("content", "refusal"):
        if type(logprobs.setdefault(key, None)) not in _LIST_OR_NULL:
            raise ValueError(f"not a chat completion: its logprobs' {key} is not a list")


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
