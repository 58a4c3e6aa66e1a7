"""Handles of the gemini, cohere and replicate kinds: their kind, their base path, and the adapter calling them back."""

from __future__ import annotations

import json
from typing import Any

import pytest
from django.core.exceptions import ValidationError

from providers.adapters import adapter_for
from providers.adapters.base import Target
from providers.model_lists.entries import parse_model_list
from providers.model_lists.handles import (
    HANDLE_KINDS,
    base_path,
    default_handle_kinds,
    join,
    model_mismatch,
    validate_handle_kinds,
)
from providers.tests.factories import make_provider_info

RULES = default_handle_kinds()
SOURCE = "http://list.test"


def parse(handle: str, model: str) -> tuple[list[Any], list[Any]]:
    entry = {"model_version": model, "handle": handle, "prompt_price_1k": 0.001, "completion_price_1k": 0.002}
    return parse_model_list(json.dumps([entry]).encode(), rules=RULES)


def called_url(kind: str, base: str, model: str) -> str:
    """The URL the kind's adapter calls for a chat, given the provider a list makes for `base`."""
    provider = make_provider_info(kind=kind, base_url=join(SOURCE, base))
    target = Target(provider=provider, upstream_model=model, public_model=model, max_output_tokens=16)
    body = {"model": model, "messages": [{"role": "user", "content": "hi"}]}
    return adapter_for(kind).request("chat", target, body).url


HANDLES = [
    ("/gemini/v1beta/models/gemini-2.5-flash:generateContent", "gemini-2.5-flash", "gemini", "/gemini"),
    ("/google/ai/v1beta/models/gemini-2.0-flash-001:generateContent", "gemini-2.0-flash-001", "gemini", "/google/ai"),
    ("/cohere/v2/chat", "command-a-03-2025", "cohere", "/cohere"),
    ("/eu/cohere/v2/chat", "command-r-08-2024", "cohere", "/eu/cohere"),
    (
        "/replicate/v1/models/meta/meta-llama-3-8b-instruct/predictions",
        "meta/meta-llama-3-8b-instruct",
        "replicate",
        "/replicate",
    ),
    ("/replicate/v1/predictions", "ibm-granite/granite-8b:0a1b2c3d4e", "replicate", "/replicate"),
]


@pytest.mark.parametrize(("handle", "model", "kind", "base"), HANDLES)
def test_a_handle_of_a_new_kind_gets_its_kind_and_base_path(handle: str, model: str, kind: str, base: str) -> None:
    listed, errors = parse(handle, model)

    assert errors == []
    assert (listed[0].kind, listed[0].base_path) == (kind, base)
    assert model_mismatch(handle, kind, model) == ""


@pytest.mark.parametrize(("handle", "model", "kind", "base"), HANDLES)
def test_the_adapter_calls_exactly_the_handle_from_the_base_path(handle: str, model: str, kind: str, base: str) -> None:
    assert called_url(kind, base_path(handle, kind), model) == SOURCE + handle


@pytest.mark.parametrize(
    ("handle", "message"),
    [
        # A stream's path, another API version, a model with a character the adapter would escape.
        ("/gemini/v1beta/models/gemini-2.5-flash:streamGenerateContent", "does not end with that kind's chat path"),
        ("/gemini/v1/models/gemini-2.5-flash:generateContent", "does not end with that kind's chat path"),
        ("/gemini/v1beta/models/tuned@1:generateContent", "does not end with that kind's chat path"),
        ("/gemini/v1beta/models/:generateContent", "does not end with that kind's chat path"),
        ("/v1beta/models/gemini-2.5-flash:generateContent", "does not end with that kind's chat path"),
        ("/gemini/v1beta/models/gemini-2.5-flash:embedContent", "does not end with that kind's chat path"),
        ("/cohere/v1/chat", "does not end with that kind's chat path"),
        ("/v2/chat", "does not end with that kind's chat path"),
        ("/replicate/v1/models/meta/predictions", "does not end with that kind's chat path"),
        ("/replicate/v1/deployments/acme/llama/predictions", "does not end with that kind's chat path"),
        # The adapter takes a trailing /v1 off a Replicate base URL, so this base would not call the handle.
        ("/replicate/v1/v1/predictions", "does not end with that kind's chat path"),
        ("/v1/predictions", "does not end with that kind's chat path"),
        ("/custom/v1/generate", "no rule of this source says which kind"),
    ],
)
def test_a_handle_of_unknown_shape_is_reported_not_guessed(handle: str, message: str) -> None:
    listed, errors = parse(handle, "some-model")

    assert listed == []
    assert message in errors[0].error


@pytest.mark.parametrize(
    ("handle", "kind", "model", "problem"),
    [
        ("/g/v1beta/models/gemini-2.5-pro:generateContent", "gemini", "gemini-2.5-flash", "calls gemini-2.5-pro"),
        ("/g/v1beta/models/gemini-2.5-pro:generateContent", "gemini", "models/gemini-2.5-pro", ""),
        ("/r/v1/models/meta/llama-3/predictions", "replicate", "meta/llama-2", "calls meta/llama-3, not meta/llama-2"),
        # A versioned model is run at /v1/predictions, never at the model's own path.
        ("/r/v1/models/meta/llama-3/predictions", "replicate", "meta/llama-3:abc", "calls meta/llama-3"),
        ("/r/v1/predictions", "replicate", "meta/llama-3", "the model must be named owner/name:version"),
        ("/r/v1/predictions", "replicate", "meta/llama-3:abc", ""),
        ("/cohere/v2/chat", "cohere", "anything", ""),
    ],
)
def test_a_handle_naming_another_model_than_the_entry_is_a_mismatch(
    handle: str, kind: str, model: str, problem: str
) -> None:
    found = model_mismatch(handle, kind, model)

    if problem:
        assert problem in found
        assert called_url(kind, base_path(handle, kind), model) != SOURCE + handle
    else:
        assert found == ""
        assert called_url(kind, base_path(handle, kind), model) == SOURCE + handle


@pytest.mark.parametrize("kind", ["gemini", "cohere", "replicate"])
def test_a_source_may_name_the_new_kinds_in_its_rules(kind: str) -> None:
    validate_handle_kinds([{"prefix": f"/{kind}/", "kind": kind}])

    assert kind in HANDLE_KINDS


def test_the_default_rules_are_rules_a_source_may_keep() -> None:
    validate_handle_kinds(RULES)


def test_a_suffix_may_be_a_google_method_but_a_prefix_is_a_path() -> None:
    validate_handle_kinds([{"suffix": ":generateContent", "kind": "gemini"}])

    for rule in ({"prefix": ":generateContent", "kind": "gemini"}, {"suffix": "generateContent", "kind": "gemini"}):
        with pytest.raises(ValidationError, match="must start with"):
            validate_handle_kinds([rule])
