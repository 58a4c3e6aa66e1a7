"""A finished Replicate prediction, as an OpenAI chat completion.

A language model's `output` is a list of string pieces (the tokens as it wrote them), joined
here; a model that answers with one string is taken as it is. Usage comes from the
prediction's `metrics` (`input_token_count`, `output_token_count`) when it has both; without
them the answer carries none and the gateway counts the tokens itself, as for any upstream
that reports no usage. Replicate gives no finish reason: an answer that used up the output cap
asked for ended for `length`, any other for `stop`.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import Any

import orjson

from providers.adapters.shapes import new_completion_id, token_count


def prediction(payload: bytes) -> dict[str, Any]:
    """The prediction object; ValueError if the payload is not one."""
    try:
        body = orjson.loads(payload)
    except orjson.JSONDecodeError as exc:
        raise ValueError("not a Replicate prediction") from exc
    if not isinstance(body, dict) or not isinstance(body.get("status"), str):
        raise ValueError("not a Replicate prediction")
    return body


def output_text(output: Any) -> str:
    if isinstance(output, str):
        return output
    if isinstance(output, list):
        return "".join(piece for piece in output if isinstance(piece, str))
    return ""


def usage(metrics: Any) -> dict[str, int] | None:
    """OpenAI's usage from the prediction's metrics, or None when they do not count both sides."""
    if not isinstance(metrics, dict):
        return None
    prompt, completion = token_count(metrics.get("input_token_count")), token_count(metrics.get("output_token_count"))
    if prompt is None or completion is None:
        return None
    return {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion}


def finish_reason(completion_tokens: int | None, cap: int | None) -> str:
    return "length" if cap and completion_tokens is not None and completion_tokens >= cap else "stop"


def created(answer: dict[str, Any]) -> int:
    """The prediction's `created_at` in Unix seconds, or now if it has none Portico can read."""
    value = answer.get("created_at")
    if isinstance(value, str):
        try:
            moment = datetime.fromisoformat(value)
        except ValueError:
            pass
        else:
            return int((moment if moment.tzinfo else moment.replace(tzinfo=UTC)).timestamp())
    return int(time.time())


def chat_completion(payload: bytes, public_model: str, *, cap: int | None = None) -> dict[str, Any]:
    answer = prediction(payload)
    reported = usage(answer.get("metrics"))
    completion_tokens = reported["completion_tokens"] if reported else None
    message = {"role": "assistant", "content": output_text(answer.get("output")), "refusal": None}
    body: dict[str, Any] = {
        "id": new_completion_id(),
        "object": "chat.completion",
        "created": created(answer),
        "model": public_model,
        "choices": [
            {"index": 0, "message": message, "logprobs": None, "finish_reason": finish_reason(completion_tokens, cap)}
        ],
    }
    if reported is not None:
        body["usage"] = reported
    return body


def prediction_id(payload: bytes) -> str:
    """The prediction's id, kept for the ledger; printable and short, as a header is."""
    try:
        value = prediction(payload).get("id")
    except ValueError:
        return ""
    if not isinstance(value, str) or not value.isascii() or not value.isprintable():
        return ""
    return value[:200]


def asked_cap(answer: dict[str, Any], name: str) -> int | None:
    """The output cap the prediction's input asked for (the prediction repeats its input), if it names one."""
    inputs = answer.get("input")
    cap = inputs.get(name) if isinstance(inputs, dict) else None
    return cap if isinstance(cap, int) and not isinstance(cap, bool) else None
