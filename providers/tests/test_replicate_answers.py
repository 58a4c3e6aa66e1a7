"""Finished predictions and Replicate's errors, in OpenAI's shapes."""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from providers.adapters.base import Target
from providers.adapters.replicate import ReplicateAdapter
from providers.adapters.replicate.answers import chat_completion, prediction_id
from providers.adapters.replicate.errors import FAILED_PREDICTION_STATUS
from providers.redaction import Redactor
from providers.tests.factories import make_provider_info
from tests.openai_schemas import assert_valid

ADAPTER = ReplicateAdapter()
TARGET = Target(make_provider_info(kind="replicate"), "meta/llama", "house-model")
USAGE_NAMES = ("prompt_tokens", "completion_tokens", "total_tokens")
CREATED_AT = "2024-07-22T20:33:28.123648Z"


def finished(**fields: Any) -> dict[str, Any]:
    return {
        "id": "gm3qorzdhgbfurvjtvhg6dckhu",
        "status": "succeeded",
        "created_at": CREATED_AT,
        "input": {"prompt": "Hello"},
        "output": ["Hi", " there", "!"],
        "metrics": {"predict_time": 0.4, "input_token_count": 12, "output_token_count": 3},
        **fields,
    }


def answer(**fields: Any) -> dict[str, Any]:
    body: dict[str, Any] = orjson.loads(ADAPTER.response("chat", TARGET, orjson.dumps(finished(**fields))))
    return body


def test_a_prediction_is_a_chat_completion_with_its_pieces_joined_and_its_metrics_as_usage() -> None:
    body = answer()

    assert_valid("CreateChatCompletionResponse", body)
    assert body["id"].startswith("chatcmpl-")
    assert (body["object"], body["model"], body["created"]) == ("chat.completion", "house-model", 1721680408)
    assert body["choices"] == [
        {
            "index": 0,
            "message": {"role": "assistant", "content": "Hi there!", "refusal": None},
            "logprobs": None,
            "finish_reason": "stop",
        }
    ]
    assert body["usage"] == {"prompt_tokens": 12, "completion_tokens": 3, "total_tokens": 15}


@pytest.mark.parametrize(
    ("metrics", "usage"),
    [
        ({"predict_time": 0.4}, None),
        (None, None),
        ({"input_token_count": 12}, None),
        ({"input_token_count": 12, "output_token_count": True}, None),
        ({"input_token_count": 0, "output_token_count": 0}, dict.fromkeys(USAGE_NAMES, 0)),
    ],
)
def test_metrics_without_both_counts_give_no_usage_so_the_gateway_counts(
    metrics: dict[str, Any] | None, usage: dict[str, int] | None
) -> None:
    assert answer(metrics=metrics).get("usage") == usage


def test_a_single_string_output_is_the_answer_and_no_output_is_empty() -> None:
    assert answer(output="Hi there!")["choices"][0]["message"]["content"] == "Hi there!"
    assert answer(output=None)["choices"][0]["message"]["content"] == ""


@pytest.mark.parametrize(("cap", "reason"), [(3, "length"), (2, "length"), (4, "stop"), (None, "stop")])
def test_an_answer_that_used_up_the_cap_asked_for_ended_for_length(cap: int | None, reason: str) -> None:
    body = chat_completion(orjson.dumps(finished()), "house-model", cap=cap)

    assert body["choices"][0]["finish_reason"] == reason


def test_the_cap_is_read_from_the_input_the_prediction_repeats() -> None:
    assert answer(input={"prompt": "Hello", "max_tokens": 3})["choices"][0]["finish_reason"] == "length"


def test_the_prediction_id_is_kept_for_the_ledger() -> None:
    assert ADAPTER.upstream_id(orjson.dumps(finished())) == "gm3qorzdhgbfurvjtvhg6dckhu"
    assert prediction_id(b"not json") == ""
    assert prediction_id(orjson.dumps(finished(id="bad\nid"))) == ""


def test_what_is_not_a_prediction_is_a_value_error() -> None:
    with pytest.raises(ValueError, match="not a Replicate prediction"):
        ADAPTER.response("chat", TARGET, b'{"output": ["Hi"]}')


def problem(status: int, detail: str, title: str = "Problem") -> bytes:
    return orjson.dumps({"title": title, "detail": detail, "status": status})


@pytest.mark.parametrize(
    ("status", "payload", "expected"),
    [
        (
            422,
            problem(422, "- input.top_p: Must be less than or equal to 1"),
            (400, "invalid_request_error", None, "- input.top_p: Must be less than or equal to 1"),
        ),
        (
            404,
            problem(404, "The requested resource could not be found."),
            (404, "invalid_request_error", "model_not_found", "The requested resource could not be found."),
        ),
        (
            429,
            problem(429, "Request was throttled. Expected available in 7 seconds."),
            (429, "requests", "rate_limit_exceeded", "Request was throttled. Expected available in 7 seconds."),
        ),
        (
            500,
            problem(500, "Internal server error"),
            (502, "api_error", None, "The upstream provider failed: Internal server error"),
        ),
        (
            503,
            b"<html>Service Unavailable</html>",
            (503, "api_error", None, "The upstream provider failed: The upstream provider answered with HTTP 503."),
        ),
        (
            400,
            orjson.dumps({"title": "Invalid version or not permitted"}),
            (400, "invalid_request_error", None, "Invalid version or not permitted"),
        ),
    ],
)
def test_a_problem_document_becomes_openais_error(status: int, payload: bytes, expected: tuple[Any, ...]) -> None:
    failure = ADAPTER.failure(status, payload, {"retry-after": "7"})

    assert (failure.status, failure.type, failure.code, failure.message) == expected
    assert failure.headers == {"retry-after": "7"}
    assert failure.param is None


@pytest.mark.parametrize(
    ("status", "code"), [(401, "upstream_auth_error"), (403, "upstream_auth_error"), (402, "upstream_billing_error")]
)
def test_a_refused_credential_or_account_is_the_operators_problem(status: int, code: str) -> None:
    failure = ADAPTER.failure(status, problem(status, "Invalid token r8_SECRETSECRETSECRET"), {})

    assert (failure.status, failure.type, failure.code, failure.reason) == (502, "api_error", code, code)
    assert "r8_" not in failure.message


def test_a_failed_or_canceled_prediction_is_a_bad_gateway_with_its_error_redacted() -> None:
    secret = "r8_SECRETSECRETSECRET0123"
    failed = orjson.dumps(finished(status="failed", error=f"token {secret} refused by a webhook", output=None))
    canceled = orjson.dumps(finished(status="canceled", output=None))

    one = ADAPTER.failure(FAILED_PREDICTION_STATUS, failed, {}, redactor=Redactor([secret]))
    other = ADAPTER.failure(FAILED_PREDICTION_STATUS, canceled, {})

    assert (one.status, one.type, one.code) == (502, "api_error", None)
    assert one.message == "The upstream provider failed: token [redacted] refused by a webhook"
    assert other.message == "The upstream provider failed: the prediction was canceled before it finished."


@pytest.mark.parametrize("status", [400, 404, 422, 429, 500, 503])
def test_no_field_of_an_error_quotes_the_providers_secrets(status: int) -> None:
    header_value = "acct-0123456789abcdef"
    info = make_provider_info(kind="replicate", extra_headers={"X-Account-Key": header_value})
    for secret in (info.credential, header_value):
        payload = problem(status, f"token Bearer {secret} refused", title=f"Bearer {secret}")

        failure = ADAPTER.failure(status, payload, {}, redactor=info.redactor)

        fields = [failure.message, failure.type, failure.code, failure.param]
        assert not any(secret[:20] in str(field) for field in fields)
        assert "[redacted]" in failure.message
