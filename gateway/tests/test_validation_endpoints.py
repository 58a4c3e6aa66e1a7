"""Checks of the other JSON endpoints (legacy completions, embeddings, moderations, images), OpenAI-worded."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from gateway.errors import InvalidRequest
from gateway.validation import (
    validate_completion_request,
    validate_embedding_request,
    validate_image_request,
    validate_moderation_request,
)

Validator = Callable[[dict[str, Any]], None]

REFUSED: list[tuple[str, Validator, dict[str, Any], str, str]] = [
    ("completion without model", validate_completion_request, {"prompt": "x"}, "model", "missing_required_parameter"),
    ("completion without prompt", validate_completion_request, {"model": "m"}, "prompt", "missing_required_parameter"),
    (
        "completion prompt of objects",
        validate_completion_request,
        {"model": "m", "prompt": [{}]},
        "prompt",
        "invalid_type",
    ),
    (
        "completion empty prompt list",
        validate_completion_request,
        {"model": "m", "prompt": []},
        "prompt",
        "empty_array",
    ),
    (
        "completion logprobs above 5",
        validate_completion_request,
        {"model": "m", "prompt": "x", "logprobs": 6},
        "logprobs",
        "integer_above_max_value",
    ),
    (
        "completion echo not boolean",
        validate_completion_request,
        {"model": "m", "prompt": "x", "echo": "yes"},
        "echo",
        "invalid_type",
    ),
    (
        "completion stream_options without stream",
        validate_completion_request,
        {"model": "m", "prompt": "x", "stream_options": {"include_usage": True}},
        "stream_options",
        "invalid_value",
    ),
    ("embedding without input", validate_embedding_request, {"model": "m"}, "input", "missing_required_parameter"),
    ("embedding of a number", validate_embedding_request, {"model": "m", "input": 3}, "input", "invalid_type"),
    ("embedding mixed list", validate_embedding_request, {"model": "m", "input": ["a", 1]}, "input", "invalid_type"),
    (
        "embedding unknown encoding",
        validate_embedding_request,
        {"model": "m", "input": "a", "encoding_format": "hex"},
        "encoding_format",
        "invalid_value",
    ),
    (
        "embedding zero dimensions",
        validate_embedding_request,
        {"model": "m", "input": "a", "dimensions": 0},
        "dimensions",
        "integer_below_min_value",
    ),
    ("moderation without input", validate_moderation_request, {}, "input", "missing_required_parameter"),
    ("moderation model not a string", validate_moderation_request, {"model": 1, "input": "x"}, "model", "invalid_type"),
    ("image without prompt", validate_image_request, {"model": "m"}, "prompt", "missing_required_parameter"),
    ("image n above 10", validate_image_request, {"prompt": "cat", "n": 11}, "n", "integer_above_max_value"),
]


@pytest.mark.parametrize(
    ("validator", "body", "param", "code"), [case[1:] for case in REFUSED], ids=[case[0] for case in REFUSED]
)
def test_it_refuses_what_openai_refuses(validator: Validator, body: dict[str, Any], param: str, code: str) -> None:
    with pytest.raises(InvalidRequest) as refused:
        validator(body)

    assert (refused.value.param, refused.value.code, refused.value.status) == (param, code, 400)


ACCEPTED: list[tuple[str, Validator, dict[str, Any]]] = [
    ("completion of a string", validate_completion_request, {"model": "m", "prompt": "x", "max_tokens": 0}),
    ("completion of token arrays", validate_completion_request, {"model": "m", "prompt": [[1, 2], [3]]}),
    (
        "completion stream with usage",
        validate_completion_request,
        {"model": "m", "prompt": "x", "stream": True, "stream_options": {}},
    ),
    (
        "embedding of strings",
        validate_embedding_request,
        {"model": "m", "input": ["a", "b"], "encoding_format": "base64"},
    ),
    ("embedding of tokens", validate_embedding_request, {"model": "m", "input": [1, 2, 3], "dimensions": 256}),
    ("moderation without model", validate_moderation_request, {"input": ["a", "b"]}),
    ("moderation of parts", validate_moderation_request, {"input": [{"type": "text", "text": "x"}]}),
    ("image without model", validate_image_request, {"prompt": "a cat", "size": "1024x1024", "future": 1}),
]


@pytest.mark.parametrize(("validator", "body"), [case[1:] for case in ACCEPTED], ids=[case[0] for case in ACCEPTED])
def test_it_accepts_valid_requests_and_unknown_fields(validator: Validator, body: dict[str, Any]) -> None:
    validator(body)


@pytest.mark.parametrize("validator", [validate_embedding_request, validate_moderation_request, validate_image_request])
def test_endpoints_that_answer_whole_refuse_stream(validator: Validator) -> None:
    with pytest.raises(InvalidRequest) as refused:
        validator({"model": "m", "input": "x", "prompt": "x", "stream": True})

    assert (refused.value.param, refused.value.code) == ("stream", "invalid_value")
