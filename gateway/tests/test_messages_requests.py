"""What the Messages surface refuses, and how: validation, error bodies, the key headers (gateway.messages)."""

from __future__ import annotations

from typing import Any

import orjson
import pytest
from django.test import RequestFactory

from gateway.errors import (
    AuthenticationFailed,
    InvalidRequest,
    ModelNotFound,
    NoDeployment,
    QuotaExceeded,
    RateLimited,
    UpstreamTimeout,
)
from gateway.messages.auth import presented_key
from gateway.messages.errors import error_from_frame, error_response
from gateway.messages.validation import validate_count_request, validate_message_request

VALID: dict[str, Any] = {"model": "m", "max_tokens": 10, "messages": [{"role": "user", "content": "Hi"}]}


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"max_tokens": None}, "max_tokens: Field required"),
        ({"max_tokens": 0}, "max_tokens: Input should be greater than or equal to 1"),
        ({"model": 3}, "model: Input should be a valid string"),
        ({"messages": []}, "messages: at least one message is required"),
        (
            {"messages": [{"role": "system", "content": "x"}]},
            "messages.0.role: Input should be one of 'user', 'assistant'",
        ),
        ({"messages": [{"role": "user"}]}, "messages.0.content: Field required"),
        (
            {"messages": [{"role": "user", "content": [{"type": "text"}]}]},
            "messages.0.content.0.text: Input should be a valid string",
        ),
        (
            {"messages": [{"role": "user", "content": [{"type": "image", "source": {"type": "base64", "data": "x"}}]}]},
            "messages.0.content.0.source.media_type: Input should be a valid string",
        ),
        ({"temperature": 1.2}, "temperature: Input should be less than or equal to 1"),
        ({"top_k": -1}, "top_k: Input should be greater than or equal to 0"),
        ({"stop_sequences": "END"}, "stop_sequences: Input should be a valid list of strings"),
        ({"tools": [{"name": "f"}]}, "tools.0.input_schema: Field required"),
        ({"tool_choice": {"type": "tool"}}, "tool_choice.name: Input should be a valid string"),
        (
            {"system": [{"type": "image", "source": {"type": "url", "url": "u"}}]},
            "system.0.type: Input should be 'text'",
        ),
        (
            {"thinking": {"type": "sometimes"}},
            "thinking.type: Input should be one of 'enabled', 'disabled', 'adaptive'",
        ),
    ],
)
def test_it_refuses_what_anthropic_refuses_naming_the_field(change: dict[str, Any], message: str) -> None:
    body = {key: value for key, value in {**VALID, **change}.items() if value is not None}

    with pytest.raises(InvalidRequest) as refused:
        validate_message_request(body)

    assert str(refused.value) == message
    assert refused.value.status == 400


def test_it_accepts_a_full_request_and_unknown_fields() -> None:
    validate_message_request(
        {
            **VALID,
            "system": [{"type": "text", "text": "Be brief.", "cache_control": {"type": "ephemeral"}}],
            "tools": [{"name": "f", "input_schema": {"type": "object"}}, {"type": "web_search_20250305", "name": "w"}],
            "tool_choice": {"type": "tool", "name": "f"},
            "temperature": 1,
            "service_tier": "auto",
        }
    )


def test_count_tokens_needs_no_max_tokens() -> None:
    validate_count_request({"model": "m", "messages": [{"role": "user", "content": "Hi"}]})


@pytest.mark.parametrize(
    ("error", "status", "kind"),
    [
        (AuthenticationFailed("no"), 401, "authentication_error"),
        (ModelNotFound("m"), 404, "not_found_error"),
        (RateLimited("slow down"), 429, "rate_limit_error"),
        (QuotaExceeded("spent"), 429, "rate_limit_error"),
        (NoDeployment("m"), 503, "overloaded_error"),
        (UpstreamTimeout("late"), 504, "timeout_error"),
    ],
)
def test_an_error_has_anthropics_body_and_keeps_its_status(error: Exception, status: int, kind: str) -> None:
    response = error_response(error)  # type: ignore[arg-type]

    assert response.status_code == status
    assert orjson.loads(response.content) == {"type": "error", "error": {"type": kind, "message": str(error)}}


def test_an_error_keeps_its_headers() -> None:
    response = error_response(RateLimited("slow down", headers={"retry-after": "3"}))

    assert response["retry-after"] == "3"


@pytest.mark.parametrize(
    ("frame", "kind"),
    [
        (b'{"error":{"message":"m","type":"api_error","code":"upstream_timeout"}}', "timeout_error"),
        (b'{"error":{"message":"m","type":"api_error","code":"overloaded"}}', "overloaded_error"),
        (b'{"error":{"message":"m","type":"rate_limit_error","code":null}}', "rate_limit_error"),
        (b'{"error":{"message":"m","type":"server_error","code":null}}', "api_error"),
        (b"not json", "api_error"),
    ],
)
def test_an_openai_error_frame_becomes_an_error_event(frame: bytes, kind: str) -> None:
    assert error_from_frame(frame)["error"]["type"] == kind


@pytest.mark.parametrize(
    ("headers", "key"),
    [
        ({"HTTP_X_API_KEY": "pk-abc"}, "pk-abc"),
        ({"HTTP_AUTHORIZATION": "Bearer pk-abc"}, "pk-abc"),
        ({"HTTP_X_API_KEY": "pk-abc", "HTTP_AUTHORIZATION": "Bearer pk-other"}, "pk-abc"),
        ({"HTTP_AUTHORIZATION": "Basic xyz"}, ""),
        ({}, None),
    ],
)
def test_the_key_comes_from_x_api_key_or_a_bearer_token(headers: dict[str, str], key: str | None) -> None:
    assert presented_key(RequestFactory().post("/v1/messages", **headers)) == key  # type: ignore[arg-type]
