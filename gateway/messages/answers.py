"""An OpenAI chat completion, as an Anthropic message: content blocks, stop reason, usage.

Pure, and shared by whole answers and streams (gateway.messages.events).

- `reasoning_content` (or `reasoning`, as some OpenAI-compatible servers name it)
  becomes a thinking block, first, when the request enabled thinking; unasked,
  it is left out, as Anthropic sends no thinking then and clients read the first
  block as the answer's text.
- Finish reasons become stop reasons: stop -> end_turn, length -> max_tokens,
  tool_calls -> tool_use, content_filter -> refusal. OpenAI does not say which
  stop sequence ended an answer; servers that do (`stop_reason` in vLLM,
  `matched_stop` in SGLang) make it `stop_sequence` with the sequence.
- OpenAI counts cached prompt tokens inside `prompt_tokens`; Anthropic counts them
  apart from `input_tokens`, so they are taken out again.
"""

from __future__ import annotations

from typing import Any

import orjson

STOP_REASONS = {
    "stop": "end_turn",
    "length": "max_tokens",
    "tool_calls": "tool_use",
    "function_call": "tool_use",
    "content_filter": "refusal",
}


def stop_reason(choice: dict[str, Any], stop_sequences: list[str]) -> tuple[str, str | None]:
    """The stop reason, and the stop sequence that ended the answer when the server named one."""
    finish = choice.get("finish_reason")
    matched = choice.get("stop_reason") or choice.get("matched_stop")
    if finish == "stop" and isinstance(matched, str) and matched in stop_sequences:
        return "stop_sequence", matched
    return STOP_REASONS.get(finish or "", "end_turn"), None


def anthropic_usage(usage: dict[str, Any] | None) -> dict[str, int]:
    usage = usage or {}
    details = usage.get("prompt_tokens_details") or {}
    cached = int(details.get("cached_tokens") or 0)
    created = int(details.get("cache_creation_tokens") or 0)
    prompt = int(usage.get("prompt_tokens") or 0)
    return {
        "input_tokens": max(prompt - cached - created, 0),
        "cache_creation_input_tokens": created,
        "cache_read_input_tokens": cached,
        "output_tokens": int(usage.get("completion_tokens") or 0),
    }


def reasoning_of(message: dict[str, Any]) -> str:
    reasoning = message.get("reasoning_content") or message.get("reasoning")
    return reasoning if isinstance(reasoning, str) else ""


def tool_input(arguments: Any) -> dict[str, Any]:
    """A tool call's arguments as the object Anthropic's `input` is; {} for what is not one (a cut-off call)."""
    try:
        parsed = orjson.loads(arguments or "{}")
    except (orjson.JSONDecodeError, TypeError):
        return {}
    return parsed if isinstance(parsed, dict) else {}


def message_from_completion(
    completion: dict[str, Any], *, message_id: str, model: str, stop_sequences: list[str], thinking: bool
) -> dict[str, Any]:
    choices = completion.get("choices") or [{}]
    choice = choices[0]
    message = choice.get("message") or {}
    content: list[dict[str, Any]] = []
    if thinking and (reasoning := reasoning_of(message)):
        content.append({"type": "thinking", "thinking": reasoning, "signature": ""})
    text = message.get("content") or message.get("refusal")
    if isinstance(text, str) and text:
        content.append({"type": "text", "text": text})
    for call in message.get("tool_calls") or ():
        function = call.get("function") or {}
        arguments = tool_input(function.get("arguments"))
        content.append({"type": "tool_use", "id": call.get("id"), "name": function.get("name"), "input": arguments})
    reason, sequence = stop_reason(choice, stop_sequences)
    return {
        "id": message_id,
        "type": "message",
        "role": "assistant",
        "model": model,
        "content": content,
        "stop_reason": reason,
        "stop_sequence": sequence,
        "usage": anthropic_usage(completion.get("usage")),
    }
