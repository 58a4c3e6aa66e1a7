"""Whole answers, checked before they are relayed, whatever the kind.

A server that answers 200 with something other than the answer asked for (a JSON array, a number,
`"choices": "x"`, an embedding list whose items are not objects) must not reach the client as a
success, nor break the gateway code that reads the answer after the adapter: `whole_answer` raises
ValueError for it, which the relay turns into an upstream error (and another deployment may answer).
The relay parses each answer once, here, and reads the usage from what this returns.
"""

from __future__ import annotations

from typing import Any

import orjson

from providers.adapters.base import Operation

# The list each operation's answer holds; transcriptions (JSON, text, SRT or VTT) are relayed as sent.
ANSWER_LISTS: dict[str, str] = {
    "chat": "choices",
    "completions": "choices",
    "embeddings": "data",
    "moderations": "results",
    "images": "data",
}


def whole_answer(operation: Operation, payload: bytes) -> dict[str, Any]:
    """The parsed answer; raises ValueError for one that is not JSON, not an object, or lacks its list.

    An error body sent with HTTP 200 (`{"error": …}`) is returned as it is: it is the upstream's word.
    """
    body = orjson.loads(payload)  # orjson.JSONDecodeError is a ValueError
    if not isinstance(body, dict):
        raise ValueError(f"not an OpenAI {operation} answer")
    if "error" in body:
        return body
    name = ANSWER_LISTS.get(operation)
    if name is None:
        return body
    items = body.get(name)
    if not isinstance(items, list) or not all(isinstance(item, dict) for item in items):
        raise ValueError(f"not an OpenAI {operation} answer: its {name} is not a list of objects")
    return body
