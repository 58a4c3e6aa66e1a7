"""The Anthropic adapter's answers: whole messages, model lists and error answers, in OpenAI's terms."""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from providers.adapters.anthropic import AnthropicAdapter
from providers.adapters.base import Target, UpstreamFailure
from providers.redaction import Redactor
from providers.tests.factories import UPSTREAM_CREDENTIAL as CREDENTIAL
from providers.tests.factories import make_provider_info

TARGET = Target(make_provider_info(kind="anthropic"), upstream_model="claude-upstream", public_model="house-claude")
NOW = 1_750_000_000.9
ADAPTER = AnthropicAdapter(clock=lambda: NOW)
USAGE = {"input_tokens": 25, "cache_creation_input_tokens": 0, "cache_read_input_tokens": 0, "output_tokens": 12}


def message(content: list[dict[str, Any]], stop_reason: str = "end_turn", **usage: int) -> bytes:
    return orjson.dumps(
        {
            "id": "msg_013Zva2CMHLNnXjNJJKqJ2EF",
            "type": "message",
            "role": "assistant",
            "model": "claude-sonnet-4-5-20250929",
            "content": content,
            "stop_reason": stop_reason,
            "stop_sequence": None,
            "usage": {**USAGE, **usage},
        }
    )


def answer(payload: bytes) -> dict[str, Any]:
    return orjson.loads(ADAPTER.response("chat", TARGET, payload))


def test_a_text_answer_becomes_a_chat_completion() -> None:
    body = answer(message([{"type": "text", "text": "Hi! My name is Claude."}]))

    assert body["id"].startswith("chatcmpl-")
    assert "msg_" not in body["id"], "Anthropic's own id is the call's upstream id, not the client's"
    assert body == {
        "id": body["id"],
        "object": "chat.completion",
        "created": 1_750_000_000,
        "model": "house-claude",
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": "Hi! My name is Claude.", "refusal": None},
                "logprobs": None,
                "finish_reason": "stop",
            }
        ],
        "usage": {
            "prompt_tokens": 25,
            "completion_tokens": 12,
            "total_tokens": 37,
            "prompt_tokens_details": {"cached_tokens": 0, "cache_creation_tokens": 0},
            "completion_tokens_details": {"reasoning_tokens": 0},
        },
    }


def test_tool_use_blocks_become_tool_calls_with_compact_json_arguments() -> None:
    content = [
        {"type": "text", "text": "Checking."},
        {"type": "tool_use", "id": "toolu_1", "name": "get_weather", "input": {"city": "Paris", "days": [1, 2]}},
        {"type": "tool_use", "id": "toolu_2", "name": "ping", "input": {}},
    ]

    choice = answer(message(content, "tool_use"))["choices"][0]

    assert choice["finish_reason"] == "tool_calls"
    assert choice["message"] == {
        "role": "assistant",
        "content": "Checking.",
        "refusal": None,
        "tool_calls": [
            {
                "id": "toolu_1",
                "type": "function",
                "function": {"name": "get_weather", "arguments": '{"city":"Paris","days":[1,2]}'},
            },
            {"id": "toolu_2", "type": "function", "function": {"name": "ping", "arguments": "{}"}},
        ],
    }


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        pytest.param([], None, id="no-blocks"),
        pytest.param([{"type": "tool_use", "id": "t", "name": "f", "input": {}}], None, id="only-a-tool-call"),
        pytest.param(
            [
                {"type": "thinking", "thinking": "Let me add these up.", "signature": "EqQB"},
                {"type": "redacted_thinking", "data": "EmwKAhgB"},
                {"type": "text", "text": "It is "},
                {"type": "text", "text": "42."},
            ],
            "It is 42.",
            id="thinking-skipped-texts-joined",
        ),
    ],
)
def test_the_content_is_the_text_blocks_only(content: list[dict[str, Any]], expected: str | None) -> None:
    assert answer(message(content))["choices"][0]["message"]["content"] == expected


@pytest.mark.parametrize(
    ("stop_reason", "finish_reason"),
    [
        ("end_turn", "stop"),
        ("stop_sequence", "stop"),
        ("pause_turn", "stop"),
        ("max_tokens", "length"),
        ("model_context_window_exceeded", "length"),
        ("tool_use", "tool_calls"),
        ("refusal", "content_filter"),
        ("something_new", "stop"),
        (None, "stop"),
    ],
)
def test_stop_reasons_become_finish_reasons(stop_reason: str | None, finish_reason: str) -> None:
    payload = message([{"type": "text", "text": "x"}], stop_reason)  # type: ignore[arg-type]

    assert answer(payload)["choices"][0]["finish_reason"] == finish_reason


@pytest.mark.parametrize(
    ("usage", "expected"),
    [
        pytest.param(
            {"input_tokens": 100, "cache_read_input_tokens": 2048, "cache_creation_input_tokens": 300},
            {"prompt_tokens": 2448, "total_tokens": 2460, "cached_tokens": 2048, "cache_creation_tokens": 300},
            id="cached-tokens-count-as-prompt",
        ),
        pytest.param(
            {"input_tokens": 7, "cache_read_input_tokens": None, "cache_creation_input_tokens": None},
            {"prompt_tokens": 7, "total_tokens": 19, "cached_tokens": 0, "cache_creation_tokens": 0},
            id="null-cache-counts",
        ),
    ],
)
def test_usage_counts_cached_prompt_tokens_in_the_prompt(usage: dict[str, Any], expected: dict[str, int]) -> None:
    body = answer(message([{"type": "text", "text": "x"}], **usage))

    got = body["usage"]
    assert {
        "prompt_tokens": got["prompt_tokens"],
        "total_tokens": got["total_tokens"],
        **got["prompt_tokens_details"],
    } == expected
    assert got["completion_tokens"] == 12


def test_model_ids_are_read_from_anthropics_model_list() -> None:
    payload = orjson.dumps(
        {
            "data": [
                {"type": "model", "id": "claude-sonnet-4-5-20250929", "display_name": "Claude Sonnet 4.5"},
                {"type": "model", "id": "claude-haiku-4-5-20251001", "display_name": "Claude Haiku 4.5"},
            ],
            "has_more": False,
            "first_id": "claude-sonnet-4-5-20250929",
            "last_id": "claude-haiku-4-5-20251001",
        }
    )

    assert ADAPTER.model_ids(payload) == ["claude-sonnet-4-5-20250929", "claude-haiku-4-5-20251001"]


@pytest.mark.parametrize("payload", [b"<html>", b'{"models": []}', b'{"data": [{"name": "x"}]}', b"[]"])
def test_anything_else_is_not_a_model_list(payload: bytes) -> None:
    with pytest.raises(ValueError, match="not an Anthropic model list"):
        ADAPTER.model_ids(payload)


def error(error_type: str, message: str = "upstream says no") -> bytes:
    return orjson.dumps({"type": "error", "error": {"type": error_type, "message": message}, "request_id": "req_1"})


AUTH_MESSAGE = "The upstream provider refused the gateway's credentials; an operator must check the provider."


@pytest.mark.parametrize(
    ("status", "error_type", "expected"),
    [
        (400, "invalid_request_error", UpstreamFailure(400, "upstream says no", "invalid_request_error")),
        (
            401,
            "authentication_error",
            UpstreamFailure(502, AUTH_MESSAGE, "api_error", "upstream_auth_error", reason="upstream_auth_error"),
        ),
        (
            403,
            "permission_error",
            UpstreamFailure(502, AUTH_MESSAGE, "api_error", "upstream_auth_error", reason="upstream_auth_error"),
        ),
        (404, "not_found_error", UpstreamFailure(404, "upstream says no", "invalid_request_error")),
        (413, "request_too_large", UpstreamFailure(413, "upstream says no", "invalid_request_error")),
        (429, "rate_limit_error", UpstreamFailure(429, "upstream says no", "requests", "rate_limit_exceeded")),
        (500, "api_error", UpstreamFailure(502, "The upstream provider failed: upstream says no", "api_error")),
        (
            529,
            "overloaded_error",
            UpstreamFailure(503, "The upstream provider failed: upstream says no", "api_error", "overloaded"),
        ),
        (
            503,
            "overloaded_error",
            UpstreamFailure(503, "The upstream provider failed: upstream says no", "api_error", "overloaded"),
        ),
        (504, "timeout_error", UpstreamFailure(504, "The upstream provider failed: upstream says no", "api_error")),
    ],
)
def test_error_answers_are_mapped(status: int, error_type: str, expected: UpstreamFailure) -> None:
    assert ADAPTER.failure(status, error(error_type), {}) == expected


def test_a_billing_error_is_an_operators_problem_and_is_not_quoted() -> None:
    failure = ADAPTER.failure(402, error("billing_error", "Your credit balance is too low."), {})

    assert (failure.status, failure.type, failure.code) == (502, "api_error", "upstream_billing_error")
    assert "credit" not in failure.message


@pytest.mark.parametrize("status", [401, 403])
def test_an_auth_error_never_quotes_the_upstream(status: int) -> None:
    failure = ADAPTER.failure(status, error("authentication_error", f"invalid x-api-key {CREDENTIAL[:12]}"), {})

    assert CREDENTIAL[:12] not in failure.message


def test_the_credential_is_redacted_from_a_quoted_message() -> None:
    failure = ADAPTER.failure(
        400, error("invalid_request_error", f"bad key {CREDENTIAL} in body"), {}, redactor=Redactor([CREDENTIAL])
    )

    assert failure.message == "bad key [redacted] in body"


@pytest.mark.parametrize(("status", "error_type"), [(429, "rate_limit_error"), (529, "overloaded_error")])
def test_retry_after_is_passed_on(status: int, error_type: str) -> None:
    headers = {"retry-after": "7", "anthropic-ratelimit-requests-remaining": "0"}

    assert ADAPTER.failure(status, error(error_type), headers).headers == {"retry-after": "7"}


@pytest.mark.parametrize(
    ("status", "payload", "expected_status"), [(500, b"<html>502 Bad Gateway</html>", 502), (400, b"", 400)]
)
def test_an_error_answer_that_is_not_json_still_maps(status: int, payload: bytes, expected_status: int) -> None:
    failure = ADAPTER.failure(status, payload, {})

    assert failure.status == expected_status
    assert f"HTTP {status}" in failure.message


def test_the_adapter_needs_no_transport_and_takes_no_uploads() -> None:
    assert ADAPTER.transport() is None
    with pytest.raises(NotImplementedError):
        ADAPTER.upload_request("transcriptions", TARGET, _nothing(), "multipart/form-data")


async def _nothing() -> Any:
    yield b""
