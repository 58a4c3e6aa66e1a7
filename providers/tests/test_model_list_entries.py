"""A model list's document into listed models: handles to kinds and base paths, prices to Decimal per million."""

from __future__ import annotations

import json
from decimal import Decimal
from typing import Any

import pytest
from django.core.exceptions import ValidationError

from providers.adapters import adapter_for
from providers.adapters.base import Target
from providers.model_lists.entries import ListUnreadable, parse_model_list
from providers.model_lists.handles import CHAT_PATHS, default_handle_kinds, validate_handle_kinds
from providers.tests.factories import make_provider_info

RULES = default_handle_kinds()


def entry(**fields: Any) -> dict[str, Any]:
    return {
        "model_version": "claude-3-7-sonnet-20250219",
        "model_family": "claude-3",
        "handle": "/anthropic/v1/messages",
        "prompt_price_1k": 0.003,
        "completion_price_1k": 0.015,
        **fields,
    }


def parse(*entries: Any) -> tuple[list[Any], list[Any]]:
    return parse_model_list(json.dumps(list(entries)).encode(), rules=RULES)


@pytest.mark.parametrize(
    ("handle", "kind", "base_path"),
    [
        ("/openai/v1/chat/completions", "openai", "/openai/v1"),
        ("/anthropic/v1/messages", "anthropic", "/anthropic/v1"),
        ("/bedrock/anthropic/v1/messages", "anthropic", "/bedrock/anthropic/v1"),
        ("/fireworks/inference/v1/chat/completions", "openai", "/fireworks/inference/v1"),
        ("/vllm/v1/chat/completions", "openai", "/vllm/v1"),
    ],
)
def test_it_maps_a_handle_to_its_kind_and_base_path(handle: str, kind: str, base_path: str) -> None:
    listed, errors = parse(entry(handle=handle))
    assert errors == []
    assert (listed[0].kind, listed[0].base_path, listed[0].handle) == (kind, base_path, handle)


@pytest.mark.parametrize("kind", sorted(CHAT_PATHS))
def test_each_kinds_adapter_appends_exactly_its_chat_path_to_the_base_url(kind: str) -> None:
    # The base path is the handle minus CHAT_PATHS[kind]: the adapter must put back exactly that.
    provider = make_provider_info(kind=kind, base_url="http://list.test/prefix")
    target = Target(provider=provider, upstream_model="m", public_model="m", max_output_tokens=16)
    body = {"model": "m", "messages": [{"role": "user", "content": "hi"}]}
    request = adapter_for(kind).request("chat", target, body)
    assert request.url == f"http://list.test/prefix{CHAT_PATHS[kind]}"


@pytest.mark.parametrize(
    ("handle", "message"),
    [
        ("/openai/v1/embeddings", "does not end with that kind's chat path"),
        ("/openai/v1/messages", "does not end with that kind's chat path"),
        ("/custom/v2/generate", "no rule of this source says which kind"),
        ("/chat/completions", "does not end with that kind's chat path"),
        ("openai/v1/chat/completions", "not a plain absolute path"),
        ("/openai/../v1/chat/completions", "not a plain absolute path"),
        ("/openai/v1/chat/completions?x=1", "not a plain absolute path"),
        ("/openai//v1/chat/completions", "not a plain absolute path"),
        ("", "handle is missing"),
    ],
)
def test_it_refuses_a_handle_of_unknown_shape_rather_than_guess(handle: str, message: str) -> None:
    listed, errors = parse(entry(handle=handle))
    assert listed == []
    assert message in errors[0].error


def test_prices_per_thousand_become_decimal_prices_per_million_without_float_arithmetic() -> None:
    payload = b'[{"model_version": "m", "handle": "/openai/v1/chat/completions",'
    payload += b' "prompt_price_1k": 0.0001, "completion_price_1k": 0.00060000000000000001}]'
    listed, _ = parse_model_list(payload, rules=RULES)
    # 0.00060000000000000001 * 1000 as a float would be 0.6000000000000001.
    assert listed[0].prices == (Decimal("0.100000"), Decimal("0.600000"))
    assert listed[0].family == ""


def test_an_integer_price_is_a_price() -> None:
    listed, errors = parse(entry(prompt_price_1k=1, completion_price_1k=0))
    assert errors == []
    assert listed[0].prices == (Decimal("1000"), Decimal("0"))


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"prompt_price_1k": -0.001}, "prompt_price_1k must not be negative"),
        ({"completion_price_1k": "0.015"}, "completion_price_1k must be a number"),
        ({"completion_price_1k": True}, "completion_price_1k must be a number"),
        ({"prompt_price_1k": None}, "prompt_price_1k must be a number"),
        ({"prompt_price_1k": 1000}, "prompt_price_1k is over"),
        ({"prompt_price_1k": 1e30}, "prompt_price_1k is out of range"),
        ({"model_version": ""}, "model_version must be"),
        ({"model_version": " padded"}, "model_version must be"),
        ({"model_version": "x" * 201}, "model_version must be"),
        ({"model_version": 7}, "model_version must be"),
        ({"model_family": ["claude"]}, "model_family must be"),
    ],
)
def test_it_reports_a_bad_entry_and_uses_the_others(fields: dict[str, Any], message: str) -> None:
    good = entry(model_version="good-model")
    listed, errors = parse(entry(**fields), good)
    assert [item.model_id for item in listed] == ["good-model"]
    assert len(errors) == 1
    assert errors[0].entry == 1
    assert message in errors[0].error


def test_a_missing_field_is_reported() -> None:
    broken = entry()
    del broken["completion_price_1k"]
    _, errors = parse(broken)
    assert errors[0].model == "claude-3-7-sonnet-20250219"
    assert "completion_price_1k must be a number" in errors[0].error


def test_an_entry_that_is_not_an_object_is_reported() -> None:
    _, errors = parse("claude", 3)
    assert [error.error for error in errors] == ["the entry is not a JSON object"] * 2


def test_a_model_listed_twice_is_used_once() -> None:
    listed, errors = parse(entry(), entry(prompt_price_1k=1))
    assert len(listed) == 1
    assert listed[0].input_per_million == Decimal("3.000000")
    assert errors[0].entry == 2
    assert "more than once" in errors[0].error


@pytest.mark.parametrize(
    ("payload", "message"),
    [
        (b"{not json", "not valid JSON"),
        (b'{"models": []}', "a JSON dict, not an array"),
        (b'"models"', "a JSON str, not an array"),
        (b'[{"model_version": "m", "prompt_price_1k": NaN}]', "NaN is not a number"),
        (b"[" * 100_000 + b"]" * 100_000, "not valid JSON"),
    ],
)
def test_a_document_that_is_not_a_json_array_is_unreadable_as_a_whole(payload: bytes, message: str) -> None:
    with pytest.raises(ListUnreadable, match=message):
        parse_model_list(payload, rules=RULES)


def test_a_sources_own_rules_decide_the_kind_first_match_wins() -> None:
    rules = [{"prefix": "/ollama/", "kind": "ollama"}, *RULES]
    listed, _ = parse_model_list(
        json.dumps([entry(handle="/ollama/api/chat")]).encode(),
        rules=rules,
    )
    assert (listed[0].kind, listed[0].base_path) == ("ollama", "/ollama")


@pytest.mark.parametrize(
    "rules",
    [
        {"prefix": "/openai/", "kind": "openai"},
        [{"prefix": "/openai/", "suffix": "/x", "kind": "openai"}],
        [{"prefix": "openai/", "kind": "openai"}],
        [{"prefix": "/azure/", "kind": "azure"}],
        [{"kind": "openai"}],
    ],
)
def test_it_refuses_rules_it_cannot_follow(rules: Any) -> None:
    with pytest.raises(ValidationError):
        validate_handle_kinds(rules)


def test_a_handle_that_names_another_model_than_the_entry_is_refused() -> None:
    handle = "/gemini/v1beta/models/gemini-2.5-flash:generateContent"
    listed, errors = parse(entry(model_version="gemini-2.5-pro", handle=handle))
    matching, none = parse(entry(model_version="gemini-2.5-flash", handle=handle))

    assert listed == []
    assert "calls gemini-2.5-flash, not gemini-2.5-pro" in errors[0].error
    assert [model.kind for model in matching] == ["gemini"]
    assert none == []
