"""The cache key: the same request in any key order hashes alike; what changes the answer, or who asks, does not."""

from __future__ import annotations

from typing import Any

import pytest

from gateway.response_cache import client_directives
from gateway.response_cache.keys import cache_key

BODY: dict[str, Any] = {
    "model": "gpt-test",
    "messages": [{"role": "user", "content": "Say hello."}],
    "temperature": 0.7,
    "response_format": {"type": "json_schema", "json_schema": {"name": "x", "schema": {"a": 1, "b": 2}}},
}


def key(body: dict[str, Any], *, tenant_id: int = 1, public_id: str = "gpt-test", operation: str = "chat") -> str:
    return cache_key(tenant_id=tenant_id, public_id=public_id, operation=operation, body=body)


def test_it_ignores_the_order_of_keys_at_every_depth() -> None:
    reordered = {
        "response_format": {"json_schema": {"schema": {"b": 2, "a": 1}, "name": "x"}, "type": "json_schema"},
        "temperature": 0.7,
        "messages": [{"content": "Say hello.", "role": "user"}],
        "model": "gpt-test",
    }

    assert key(reordered) == key(BODY)


@pytest.mark.parametrize(
    "extra",
    [{"stream": True}, {"stream": True, "stream_options": {"include_usage": True}}, {"user": "end-user-42"}],
    ids=["stream", "stream options", "user"],
)
def test_it_ignores_what_cannot_change_the_answer(extra: dict[str, Any]) -> None:
    assert key({**BODY, **extra}) == key(BODY)


@pytest.mark.parametrize(
    "change",
    [
        {"temperature": 0.8},
        {"n": 2},
        {"seed": 7},
        {"max_tokens": 10},
        {"messages": [{"role": "user", "content": "Say hello!"}]},
        {"messages": [{"role": "user", "content": "Say hello."}, {"role": "user", "content": "Again."}]},
    ],
    ids=["temperature", "n", "seed", "max_tokens", "content", "another message"],
)
def test_anything_else_makes_another_key(change: dict[str, Any]) -> None:
    assert key({**BODY, **change}) != key(BODY)


def test_it_is_never_shared_across_tenants_models_or_operations() -> None:
    keys = {
        key(BODY),
        key(BODY, tenant_id=2),
        key(BODY, public_id="gpt-other"),
        key(BODY, operation="completions"),
    }

    assert len(keys) == 4


def test_it_leads_with_the_tenant_and_hides_the_request() -> None:
    found = key(BODY, tenant_id=31)

    tenant, digest = found.split(":")
    assert tenant == "31"
    assert len(digest) == 40  # blake2b, 20 bytes
    assert "hello" not in found


@pytest.mark.parametrize(
    ("header", "directives"),
    [
        ("", set()),
        ("no-cache", {"no-cache"}),
        ("No-Store", {"no-store"}),
        ("max-age=0, no-cache", {"no-cache"}),
        ("no-store,no-cache", {"no-cache", "no-store"}),
        ("max-age=60", set()),
    ],
)
def test_it_reads_the_clients_cache_control(header: str, directives: set[str]) -> None:
    assert client_directives(header) == directives
