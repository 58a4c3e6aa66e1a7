"""A chat completion as a Responses API `response` object, and usage in either API's words.

The object carries every field OpenAI's `Response` requires: what the request
asked for (instructions, tools, tool choice, sampling, text format, metadata)
is echoed back, and the answer becomes output items: a `message` with
`output_text` (or `refusal`) content, then one `function_call` per tool call.
Fields the spec gives a type but not null (`user`, `usage`) are left out, not
sent as null, while they have no value.
"""

from __future__ import annotations

import secrets
import time
from typing import Any

from providers.adapters.shapes import token_count
from providers.adapters.wire import cache_creation

# Chat's finish reasons that leave a response incomplete, and the reason it then gives.
_INCOMPLETE = {"length": "max_output_tokens", "content_filter": "content_filter"}


def new_id(prefix: str) -> str:
    return f"{prefix}_{secrets.token_hex(24)}"


def usage_from_chat(usage: dict[str, Any] | None) -> dict[str, Any] | None:
    """Chat's usage (prompt and completion tokens) in the Responses API's words (input and output tokens).

    Cache writes are chat's `cache_creation_tokens`, which only some kinds report (see `wire.cache_creation`).
    """
    if not isinstance(usage, dict):
        return None
    prompt, completion = _count(usage, "prompt_tokens"), _count(usage, "completion_tokens")
    cached = _count(usage.get("prompt_tokens_details"), "cached_tokens")
    reasoning = _count(usage.get("completion_tokens_details"), "reasoning_tokens")
    return {
        "input_tokens": prompt,
        "input_tokens_details": {"cached_tokens": cached, "cache_write_tokens": cache_creation(usage) or 0},
        "output_tokens": completion,
        "output_tokens_details": {"reasoning_tokens": reasoning},
        "total_tokens": _count(usage, "total_tokens") or prompt + completion,
    }


def usage_for_chat(usage: dict[str, Any] | None) -> dict[str, Any] | None:
    """A Responses API usage as chat's, which is what the ledger and the limits read."""
    if not isinstance(usage, dict):
        return None
    prompt, completion = _count(usage, "input_tokens"), _count(usage, "output_tokens")
    cached = _count(usage.get("input_tokens_details"), "cached_tokens")
    reasoning = _count(usage.get("output_tokens_details"), "reasoning_tokens")
    return {
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": _count(usage, "total_tokens") or prompt + completion,
        "prompt_tokens_details": {"cached_tokens": cached},
        "completion_tokens_details": {"reasoning_tokens": reasoning},
    }


def _count(counts: Any, name: str) -> int:
    """A count from a usage report, 0 if it is none (an upstream's own report may hold anything)."""
    return (token_count(counts.get(name)) or 0) if isinstance(counts, dict) else 0


def message_item(item_id: str, text: str, *, status: str = "completed", refusal: bool = False) -> dict[str, Any]:
    part = (
        {"type": "refusal", "refusal": text}
        if refusal
        else {"type": "output_text", "text": text, "annotations": [], "logprobs": []}
    )
    return {"type": "message", "id": item_id, "status": status, "role": "assistant", "content": [part]}


def function_call_item(
    item_id: str, call_id: str, name: str, arguments: str, status: str = "completed"
) -> dict[str, Any]:
    return {
        "type": "function_call",
        "id": item_id,
        "call_id": call_id,
        "name": name,
        "arguments": arguments,
        "status": status,
    }


def output_from_chat(message: dict[str, Any]) -> list[dict[str, Any]]:
    items = []
    if message.get("refusal"):
        items.append(message_item(new_id("msg"), str(message["refusal"]), refusal=True))
    elif message.get("content"):
        items.append(message_item(new_id("msg"), str(message["content"])))
    for call in message.get("tool_calls") or ():
        function = call.get("function") or {}
        items.append(
            function_call_item(
                new_id("fc"),
                str(call.get("id") or new_id("call")),
                function.get("name") or "",
                function.get("arguments") or "",
            )
        )
    return items


def echoed_tools(request: dict[str, Any]) -> list[dict[str, Any]]:
    """The request's tools as OpenAI echoes them: `strict` and `description` always present."""
    return [
        {
            "type": "function",
            "name": tool.get("name"),
            "description": tool.get("description"),
            "parameters": tool.get("parameters"),
            "strict": tool.get("strict", True),
        }
        for tool in request.get("tools") or ()
        if isinstance(tool, dict)
    ]


def response_object(
    request: dict[str, Any],
    *,
    response_id: str,
    model: str,
    created_at: int,
    status: str,
    output: list[dict[str, Any]],
    usage: dict[str, Any] | None = None,
    incomplete: str | None = None,
    error: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """A `response` object for `request` (the client's Responses request) in the state given."""
    response = {
        "id": response_id,
        "object": "response",
        "created_at": created_at,
        "status": status,
        "completed_at": int(time.time()) if status == "completed" else None,
        "error": error,
        "incomplete_details": {"reason": incomplete} if incomplete else None,
        "instructions": request.get("instructions"),
        "max_output_tokens": request.get("max_output_tokens"),
        "model": model,
        "output": output,
        "parallel_tool_calls": request.get("parallel_tool_calls", True),
        "previous_response_id": None,
        "reasoning": {"effort": (request.get("reasoning") or {}).get("effort"), "summary": None},
        "store": request.get("store", True),
        "temperature": request.get("temperature", 1.0),
        "text": request.get("text") or {"format": {"type": "text"}},
        "tool_choice": request.get("tool_choice", "auto"),
        "tools": echoed_tools(request),
        "top_p": request.get("top_p", 1.0),
        "truncation": request.get("truncation") or "disabled",
        "metadata": request.get("metadata") or {},
    }
    if usage is not None:
        response["usage"] = usage
    if isinstance(request.get("user"), str):
        response["user"] = request["user"]
    return response


def response_from_chat(
    chat: dict[str, Any], request: dict[str, Any], *, response_id: str, created_at: int
) -> dict[str, Any]:
    """The `response` object for a whole chat completion (its first choice: a response has one answer)."""
    choices = chat.get("choices") or [{}]
    choice = choices[0]
    incomplete = _INCOMPLETE.get(choice.get("finish_reason") or "")
    return response_object(
        request,
        response_id=response_id,
        model=str(chat.get("model") or request.get("model")),
        created_at=created_at,
        status="incomplete" if incomplete else "completed",
        output=output_from_chat(choice.get("message") or {}),
        usage=usage_from_chat(chat.get("usage")),
        incomplete=incomplete,
    )


def incomplete_reason(finish_reason: str | None) -> str | None:
    return _INCOMPLETE.get(finish_reason or "")
