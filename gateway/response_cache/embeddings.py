"""Stored embeddings: the answer kept byte for byte as its first client got it, with what a hit needs in front.

A chat hit is parsed and dumped again with a fresh id. An embeddings answer has
no id to renew, and its vectors (float lists, or OpenAI's base64 of float32)
must reach the next client exactly as they reached the first: so its bytes are
stored untouched, behind one line of JSON that holds the usage the hit is
charged for and the request id of the call that first got it (the hit's ledger
`upstream_id` points at that call's row). A hit reads that line and never
parses the vectors, which can be a megabyte of floats.

    {"usage":{"prompt_tokens":8,"total_tokens":8},"first":"req_…"}\\n{"object":"list","data":[…],…}

The line ends at the first newline: compact JSON (orjson's) never holds a raw one.
"""

from __future__ import annotations

from typing import Any

import orjson

_NEWLINE = b"\n"


def embeddings_answer(content: bytes) -> dict[str, Any] | None:
    """The answer, if it is a whole embeddings list: a vector (floats or base64) for every item; else None."""
    try:
        answer = orjson.loads(content)
    except orjson.JSONDecodeError:
        return None
    if not isinstance(answer, dict) or answer.get("object") != "list":
        return None
    data = answer.get("data")
    if not isinstance(data, list) or not data:
        return None
    for item in data:
        vector = item.get("embedding") if isinstance(item, dict) else None
        if not isinstance(vector, list | str) or not vector:
            return None
    return answer


def embeddings_entry(content: bytes, *, request_id: str) -> bytes | None:
    """What is stored for an embeddings answer (see the module docstring); None if it is not one to store."""
    answer = embeddings_answer(content)
    if answer is None:
        return None
    usage = answer.get("usage")
    head = {"usage": usage if isinstance(usage, dict) else None, "first": request_id}
    return orjson.dumps(head) + _NEWLINE + content


def embeddings_hit(entry: bytes) -> tuple[bytes, dict[str, Any] | None, str]:
    """The answer's bytes as first served, its usage, and the request id of the call that first got it."""
    line, _, content = entry.partition(_NEWLINE)
    head = orjson.loads(line)
    return content, head.get("usage"), str(head.get("first") or "")
