"""Stored embeddings: kept and served again byte for byte, floats or base64, with the usage and first call in front."""

from __future__ import annotations

import base64
import struct
from dataclasses import dataclass, field
from typing import Any

import orjson
import pytest

from gateway.response_cache.embeddings import embeddings_answer, embeddings_entry, embeddings_hit
from gateway.response_cache.hits import replayed

USAGE = {"prompt_tokens": 7, "total_tokens": 7}
VECTORS = [[0.015625, -1.5, 3.25, 0.1], [2.0, -0.333333, 1e-7, 42.0]]


def packed(vector: list[float]) -> str:
    return base64.b64encode(struct.pack(f"<{len(vector)}f", *vector)).decode()


def answer(vectors: list[Any], **fields: Any) -> dict[str, Any]:
    data = [{"object": "embedding", "index": index, "embedding": vector} for index, vector in enumerate(vectors)]
    return {"object": "list", "data": data, "model": "embed-test", "usage": USAGE, **fields}


@dataclass
class FakeCall:
    operation: str = "embeddings"
    streamed: bool = False
    body: dict[str, Any] = field(default_factory=dict)


@pytest.mark.parametrize(
    "content",
    [
        orjson.dumps(answer(VECTORS)),
        orjson.dumps(answer([packed(vector) for vector in VECTORS])),
        # An upstream's own spacing, key order and float spelling: kept as they came, newlines included.
        b'{\n  "usage": {"total_tokens": 7, "prompt_tokens": 7},\n  "object": "list",\n  "model": "embed-test",\n'
        b'  "data": [{"index": 0, "embedding": [1.50000, -0.0, 1E-7], "object": "embedding"}]\n}\n',
    ],
    ids=["floats", "base64", "as the upstream spelt it"],
)
def test_an_answer_comes_back_byte_for_byte(content: bytes) -> None:
    entry = embeddings_entry(content, request_id="req_first")

    assert entry is not None
    assert embeddings_hit(entry) == (content, USAGE, "req_first")


def test_an_answer_without_usage_is_kept_with_none() -> None:
    entry = embeddings_entry(orjson.dumps({k: v for k, v in answer(VECTORS).items() if k != "usage"}), request_id="r")

    assert entry is not None
    assert embeddings_hit(entry)[1:] == (None, "r")


@pytest.mark.parametrize(
    "content",
    [
        orjson.dumps({"error": {"message": "no", "type": "invalid_request_error"}}),
        orjson.dumps(answer([])),
        orjson.dumps(answer([[]])),
        orjson.dumps(answer([VECTORS[0], None])),
        orjson.dumps({**answer(VECTORS), "object": "chat.completion"}),
        orjson.dumps(answer(VECTORS, data="everything")),
        orjson.dumps([answer(VECTORS)]),
        b"<html>Bad gateway</html>",
    ],
    ids=[
        "an error",
        "no data",
        "an empty vector",
        "an item without a vector",
        "another object",
        "data not a list",
        "not an object",
        "not json",
    ],
)
def test_anything_else_is_not_stored(content: bytes) -> None:
    assert embeddings_answer(content) is None
    assert embeddings_entry(content, request_id="req_first") is None


def test_a_hit_replays_the_stored_bytes_and_a_chat_hit_still_gets_a_fresh_id() -> None:
    content = orjson.dumps(answer(VECTORS))
    entry = embeddings_entry(content, request_id="req_first")
    assert entry is not None
    chat = {
        "id": "chatcmpl-first",
        "object": "chat.completion",
        "created": 1,
        "model": "gpt-test",
        "choices": [{"index": 0, "message": {"role": "assistant", "content": "Hi"}, "finish_reason": "stop"}],
        "usage": USAGE,
    }

    embedded = replayed(FakeCall(), entry)  # type: ignore[arg-type]
    chatted, usage, first = replayed(FakeCall(operation="chat"), orjson.dumps(chat))  # type: ignore[arg-type]

    assert embedded == (content, USAGE, "req_first")
    assert (usage, first) == (USAGE, "chatcmpl-first")
    assert orjson.loads(chatted)["id"] != "chatcmpl-first"
