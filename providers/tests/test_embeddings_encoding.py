"""Portico's own `encoding_format: "base64"`: the bytes OpenAI sends, as its SDK decodes them."""

from __future__ import annotations

import base64
import json
import struct
import sys
from array import array
from typing import Any

import httpx
import pytest
from openai import OpenAI

from providers.adapters.embeddings import encode_embeddings, encode_vector

VECTORS = [[0.0, 1.0, -2.5, 0.1], [3.4028234663852886e38, -1e-45, 0.333333]]
BODY: dict[str, Any] = {
    "object": "list",
    "data": [{"object": "embedding", "index": i, "embedding": vector} for i, vector in enumerate(VECTORS)],
    "model": "house-embed",
    "usage": {"prompt_tokens": 4, "total_tokens": 4},
}


def sdk_decode(encoded: str) -> list[float]:
    """What the openai SDK does without numpy: the bytes read as native float32 values (little-endian hosts)."""
    values = array("f")
    values.frombytes(base64.b64decode(encoded))
    if sys.byteorder == "big":
        values.byteswap()
    return values.tolist()


def test_each_vector_becomes_little_endian_float32_in_base64() -> None:
    encoded = encode_embeddings(BODY, "base64")

    for item, vector in zip(encoded["data"], VECTORS, strict=True):
        assert base64.b64decode(item["embedding"]) == struct.pack(f"<{len(vector)}f", *vector)


def test_the_sdk_reads_back_the_vectors_at_float32_precision() -> None:
    encoded = encode_embeddings(BODY, "base64")

    decoded = [sdk_decode(item["embedding"]) for item in encoded["data"]]

    assert decoded == [array("f", vector).tolist() for vector in VECTORS]
    assert decoded[0] == pytest.approx(VECTORS[0], rel=1e-7)


def test_everything_but_the_vectors_is_kept_and_the_given_body_is_untouched() -> None:
    encoded = encode_embeddings(BODY, "base64")

    assert {**encoded, "data": None} == {**BODY, "data": None}
    assert [{**item, "embedding": None} for item in encoded["data"]] == [
        {**item, "embedding": None} for item in BODY["data"]
    ]
    assert BODY["data"][0]["embedding"] == VECTORS[0]


@pytest.mark.parametrize("encoding_format", ["float", ""])
def test_any_other_format_leaves_the_body_as_it_is(encoding_format: str) -> None:
    assert encode_embeddings(BODY, encoding_format) is BODY


def test_vectors_already_encoded_upstream_are_left_alone() -> None:
    body = {"data": [{"index": 0, "embedding": "AAAAAA=="}]}

    assert encode_embeddings(body, "base64") == body


def test_an_empty_vector_is_an_empty_string() -> None:
    assert encode_vector([]) == ""


def test_the_openai_sdk_decodes_what_portico_encodes() -> None:
    def portico(request: httpx.Request) -> httpx.Response:
        # The SDK asks for base64 unless its caller chose a format, and decodes the answer itself.
        assert json.loads(request.content)["encoding_format"] == "base64"
        return httpx.Response(200, json=encode_embeddings(BODY, "base64"))

    with httpx.Client(transport=httpx.MockTransport(portico)) as http_client:
        client = OpenAI(api_key="sk-portico", base_url="http://portico.test/v1", http_client=http_client)
        answer = client.embeddings.create(model="house-embed", input=["a", "b"])

    assert [item.embedding for item in answer.data] == [array("f", vector).tolist() for vector in VECTORS]
