"""Every integer parameter OpenAI bounds, at its extremes: refused with OpenAI's range error, or accepted."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from gateway.errors import InvalidRequest
from gateway.validation import (
    INT64_MAX,
    INT64_MIN,
    MAX_OUTPUT_TOKENS,
    validate_chat_request,
    validate_completion_request,
    validate_embedding_request,
    validate_image_request,
    validate_output_cap,
)

Validator = Callable[[dict[str, Any]], None]
Body = Callable[[Any], dict[str, Any]]
MESSAGES = [{"role": "user", "content": "Hello"}]


def chat(param: str, **extra: Any) -> Body:
    return lambda value: {"model": "m", "messages": MESSAGES, param: value, **extra}


def completion(param: str) -> Body:
    return lambda value: {"model": "m", "prompt": "Hello", param: value}


def bias(make: Callable[[], dict[str, Any]]) -> Body:
    return lambda value: {**make(), "logit_bias": {"50256": value}}


# (validator, body with the value in place, the param OpenAI names, its least and greatest value)
PARAMETERS: list[tuple[str, Validator, Body, str, int, int]] = [
    ("chat n", validate_chat_request, chat("n"), "n", 1, 128),
    ("chat max_tokens", validate_chat_request, chat("max_tokens"), "max_tokens", 1, INT64_MAX),
    (
        "chat max_completion_tokens",
        validate_chat_request,
        chat("max_completion_tokens"),
        "max_completion_tokens",
        1,
        INT64_MAX,
    ),
    ("chat top_logprobs", validate_chat_request, chat("top_logprobs", logprobs=True), "top_logprobs", 0, 20),
    ("chat seed", validate_chat_request, chat("seed"), "seed", INT64_MIN, INT64_MAX),
    (
        "chat logit_bias",
        validate_chat_request,
        bias(lambda: {"model": "m", "messages": MESSAGES}),
        "logit_bias",
        -100,
        100,
    ),
    ("completions n", validate_completion_request, completion("n"), "n", 1, 128),
    ("completions best_of", validate_completion_request, completion("best_of"), "best_of", 0, 20),
    ("completions max_tokens", validate_completion_request, completion("max_tokens"), "max_tokens", 0, INT64_MAX),
    ("completions logprobs", validate_completion_request, completion("logprobs"), "logprobs", 0, 5),
    ("completions seed", validate_completion_request, completion("seed"), "seed", INT64_MIN, INT64_MAX),
    (
        "completions logit_bias",
        validate_completion_request,
        bias(lambda: {"model": "m", "prompt": "Hello"}),
        "logit_bias",
        -100,
        100,
    ),
    (
        "embeddings dimensions",
        validate_embedding_request,
        lambda value: {"model": "m", "input": "Hello", "dimensions": value},
        "dimensions",
        1,
        INT64_MAX,
    ),
    ("images n", validate_image_request, lambda value: {"prompt": "a cat", "n": value}, "n", 1, 10),
    (
        "images output_compression",
        validate_image_request,
        lambda value: {"prompt": "a cat", "output_compression": value},
        "output_compression",
        0,
        100,
    ),
    (
        "images partial_images",
        validate_image_request,
        lambda value: {"prompt": "a cat", "partial_images": value},
        "partial_images",
        0,
        3,
    ),
]
# What a client may send where an integer is expected; 2**64 and beyond reach the validators as floats (orjson).
EXTREMES: list[Any] = [2**64 - 1, 2**63, INT64_MAX, INT64_MIN, -1, 0, 1.5, 1.0, float(2**64), -1e300]

CASES = [
    pytest.param(validator, body(value), param, low, high, value, id=f"{name}={value!r}")
    for name, validator, body, param, low, high in PARAMETERS
    for value in EXTREMES
]


def expected_code(value: Any, low: int, high: int) -> str | None:
    if not isinstance(value, int):
        return "invalid_type"
    if value < low:
        return "integer_below_min_value"
    if value > high:
        return "integer_above_max_value"
    return None


@pytest.mark.parametrize(("validator", "body", "param", "low", "high", "value"), CASES)
def test_it_refuses_an_integer_out_of_range_naming_it(
    validator: Validator, body: dict[str, Any], param: str, low: int, high: int, value: Any
) -> None:
    code = expected_code(value, low, high)
    if code is None:
        validator(body)
        return
    with pytest.raises(InvalidRequest) as caught:
        validator(body)

    assert (caught.value.status, caught.value.type, caught.value.param, caught.value.code) == (
        400,
        "invalid_request_error",
        param,
        code,
    )


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (
            chat("seed")(2**63),
            "Invalid 'seed': integer above maximum value. "
            "Expected a value <= 9223372036854775807, but got 9223372036854775808 instead.",
        ),
        (
            chat("seed")(-(2**63) - 1),
            "Invalid 'seed': integer below minimum value. "
            "Expected a value >= -9223372036854775808, but got -9223372036854775809 instead.",
        ),
        (
            chat("max_tokens")(2**64 - 1),
            "Invalid 'max_tokens': integer above maximum value. "
            "Expected a value <= 9223372036854775807, but got 18446744073709551615 instead.",
        ),
        (
            bias(lambda: {"model": "m", "messages": MESSAGES})(200),
            "Invalid 'logit_bias': integer above maximum value. Expected a value <= 100, but got 200 instead.",
        ),
    ],
    ids=["seed above", "seed below", "max_tokens above 64 bits", "logit_bias above"],
)
def test_it_writes_large_integers_in_full_as_openai_does(body: dict[str, Any], message: str) -> None:
    with pytest.raises(InvalidRequest) as caught:
        validate_chat_request(body)

    assert caught.value.message == message


def test_it_refuses_a_logit_bias_key_that_is_not_a_token_id() -> None:
    with pytest.raises(InvalidRequest) as caught:
        validate_chat_request({"model": "m", "messages": MESSAGES, "logit_bias": {"-1": 5}})

    assert caught.value.param == "logit_bias"
    assert (
        caught.value.message == "Invalid key in 'logit_bias': -1. You should only be submitting non-negative integers."
    )


@pytest.mark.parametrize("param", ["max_tokens", "max_completion_tokens"])
def test_it_refuses_an_output_cap_above_the_models_as_openai_does(param: str) -> None:
    validate_output_cap({param: 16384}, 16384)
    with pytest.raises(InvalidRequest) as caught:
        validate_output_cap({param: 99999}, 16384)

    error = caught.value.body()["error"]
    assert error == {
        "message": f"{param} is too large: 99999. This model supports at most 16384 completion tokens, "
        "whereas you provided 99999.",
        "type": "invalid_request_error",
        "param": param,
        "code": None,
    }


@pytest.mark.parametrize("declared", [None, 2**62], ids=["undeclared", "declared beyond the cap"])
def test_an_output_cap_is_bounded_even_when_the_model_declares_none(declared: int | None) -> None:
    validate_output_cap({"max_tokens": MAX_OUTPUT_TOKENS}, declared)
    with pytest.raises(InvalidRequest) as caught:
        validate_output_cap({"max_tokens": MAX_OUTPUT_TOKENS + 1}, declared)

    assert caught.value.param == "max_tokens"


def test_a_null_prompt_is_openais_default_prompt_but_a_missing_one_is_missing() -> None:
    validate_completion_request({"model": "m", "prompt": None})
    with pytest.raises(InvalidRequest) as caught:
        validate_completion_request({"model": "m"})

    assert (caught.value.param, caught.value.code) == ("prompt", "missing_required_parameter")
