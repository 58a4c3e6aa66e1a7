"""The cache key of an embeddings request: what changes the vectors, or who asks, makes another key."""

from __future__ import annotations

from typing import Any

import pytest

from gateway.response_cache.keys import cache_key

BODY: dict[str, Any] = {"model": "embed-test", "input": ["The food was good.", "Portico"], "encoding_format": "float"}


def key(
    body: dict[str, Any], *, tenant_id: int = 1, public_id: str = "embed-test", operation: str = "embeddings"
) -> str:
    return cache_key(tenant_id=tenant_id, public_id=public_id, operation=operation, body=body)


def test_no_encoding_format_is_the_same_request_as_float() -> None:
    without = {name: value for name, value in BODY.items() if name != "encoding_format"}

    assert key(without) == key(BODY)


def test_the_end_users_id_and_key_order_do_not_count() -> None:
    reordered = {"encoding_format": "float", "input": BODY["input"], "model": "embed-test", "user": "end-user-7"}

    assert key(reordered) == key(BODY)


@pytest.mark.parametrize(
    "change",
    [
        {"encoding_format": "base64"},
        {"dimensions": 256},
        {"input": ["The food was good."]},
        {"input": ["Portico", "The food was good."]},
        {"input": "The food was good."},
        {"input": [[791, 3691, 574, 1695, 13]]},
    ],
    ids=["base64", "dimensions", "fewer inputs", "inputs reordered", "a string, not a list", "tokens"],
)
def test_anything_that_changes_the_vectors_makes_another_key(change: dict[str, Any]) -> None:
    assert key({**BODY, **change}) != key(BODY)


def test_a_chat_default_is_not_applied_to_embeddings_nor_the_other_way() -> None:
    chat = {"model": "embed-test", "messages": [{"role": "user", "content": "Hi"}]}

    assert key(chat, operation="chat") != key({**chat, "encoding_format": "float"}, operation="chat")
    assert key(BODY) != key(BODY, operation="chat")


def test_it_is_never_shared_across_tenants_or_models() -> None:
    assert len({key(BODY), key(BODY, tenant_id=2), key(BODY, public_id="embed-other")}) == 3
    assert key(BODY, tenant_id=9).startswith("9:")
