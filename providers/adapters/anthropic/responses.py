"""An Anthropic message, as an OpenAI chat completion."""

from __future__ import annotations

from typing import Any

import orjson

from providers.adapters.base import Target
from providers.adapters.shapes import new_completion_id, token_count

# The ValueError for a whole answer that is not a Messages answer; the relay ends the call on it.
MALFORMED = "not an Anthropic answer"

# Anthropic's stop reasons, as OpenAI's finish reasons; anything new reads as a plain stop.
FINISH_REASONS = {
    "end_turn": "stop",
    "stop_sequence": "stop",
    # The server paused a long turn of its own tools; for the client the answer so far is complete.
    "pause_turn": "stop",
    "max_tokens": "length",
    "model_context_window_exceeded": "length",
    "tool_use": "tool_calls",
    "refusal": "content_filter",
}


def finish_reason(stop_reason: Any) -> str:
    return FINISH_REASONS.get(stop_reason, "stop") if isinstance(stop_reason, str) else "stop"


def openai_usage(usage: Any) -> dict[str, Any]:
    """OpenAI's usage object. Anthropic counts cached prompt tokens apart from `input_tokens`; OpenAI counts
    them in `prompt_tokens` and details them, so they are added back in (billing prices the whole prompt).
    A count that is not one reads as none."""
    usage = usage if isinstance(usage, dict) else {}
    cache_read = _count(usage, "cache_read_input_tokens")
    cache_creation = _count(usage, "cache_creation_input_tokens")
    prompt = _count(usage, "input_tokens") + cache_read + cache_creation
    completion = _count(usage, "output_tokens")
    return {
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": prompt + completion,
        "prompt_tokens_details": {"cached_tokens": cache_read, "cache_creation_tokens": cache_creation},
        # Anthropic counts thinking in `output_tokens` and does not break it out.
        "completion_tokens_details": {"reasoning_tokens": 0},
    }


def _count(usage: dict[str, Any], name: str) -> int:
    return token_count(usage.get(name)) or 0


def answer_id(payload: bytes) -> str:
    """The upstream's id for a whole answer (`msg_…`), kept for the ledger; printable and short, as a header is."""
    try:
        message = orjson.loads(payload)
    except orjson.JSONDecodeError:
        return ""
    return safe_id(message.get("id") if isinstance(message, dict) else None)


def safe_id(value: Any) -> str:
    if not isinstance(value, str) or not value.isascii() or not value.isprintable():
        return ""
    return value[:200]


def tool_call(block: dict[str, Any]) -> dict[str, Any]:
    call_id, name = block.get("id"), block.get("name")
    if not isinstance(call_id, str) or not isinstance(name, str):
        raise ValueError(MALFORMED)
    arguments = orjson.dumps(block.get("input") or {}).decode()
    return {"id": call_id, "type": "function", "function": {"name": name, "arguments": arguments}}


def _text(block: dict[str, Any]) -> str:
    text = block.get("text")
    return text if isinstance(text, str) else ""


def content_blocks(message: Any) -> list[dict[str, Any]]:
    """A message's content blocks; ValueError for a message, or content, that is not one."""
    if not isinstance(message, dict):
        raise ValueError(MALFORMED)
    blocks = message.get("content") or []
    if not isinstance(blocks, list) or not all(isinstance(block, dict) for block in blocks):
        raise ValueError(MALFORMED)
    return blocks


def chat_completion(target: Target, payload: bytes, *, created: int) -> bytes:
    """The chat completion for a whole Messages answer. Thinking blocks are the model's, not the answer's."""
    message = orjson.loads(payload)
    blocks = content_blocks(message)
    texts = [_text(block) for block in blocks if block.get("type") == "text"]
    calls = [tool_call(block) for block in blocks if block.get("type") == "tool_use"]
    answer: dict[str, Any] = {"role": "assistant", "content": "".join(texts) if texts else None, "refusal": None}
    if calls:
        answer["tool_calls"] = calls
    return orjson.dumps(
        {
            # OpenAI's ids look like this; Anthropic's own (`msg_…`) is the call's upstream id.
            "id": new_completion_id(),
            "object": "chat.completion",
            "created": created,
            "model": target.public_model,
            "choices": [
                {
                    "index": 0,
                    "message": answer,
                    "logprobs": None,
                    "finish_reason": finish_reason(message.get("stop_reason")),
                }
            ],
            "usage": openai_usage(message.get("usage")),
        }
    )
