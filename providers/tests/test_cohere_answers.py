"""Cohere API v2 answers in, OpenAI's out: whole chat answers, embeddings, model lists and errors."""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from providers.adapters.base import FailedAnswer, Target
from providers.adapters.cohere import CohereAdapter
from providers.redaction import Redactor
from providers.tests.factories import make_provider_info

PROVIDER = make_provider_info(kind="cohere", base_url="https://api.cohere.test", extra_headers={})
TARGET = Target(provider=PROVIDER, upstream_model="command-a-03-2025", public_model="house-model")
ADAPTER = CohereAdapter(clock=lambda: 1_700_000_000.0)
USAGE = {"billed_units": {"input_tokens": 5, "output_tokens": 7}, "tokens": {"input_tokens": 71, "output_tokens": 7}}
CALL = {"id": "get_weather_1", "type": "function", "function": {"name": "get_weather", "arguments": '{"city":"Paris"}'}}


def answer(message: dict[str, Any], finish_reason: str = "COMPLETE", usage: Any = USAGE) -> bytes:
    return orjson.dumps({"id": "c14c80c3", "finish_reason": finish_reason, "message": message, "usage": usage})


def translated(payload: bytes) -> dict[str, Any]:
    return dict(orjson.loads(ADAPTER.response("chat", TARGET, payload)))


def test_a_text_answer_becomes_a_chat_completion() -> None:
    content = [
        {"type": "thinking", "thinking": "hmm"},
        {"type": "text", "text": "Hello"},
        {"type": "text", "text": "!"},
    ]

    body = translated(answer({"role": "assistant", "content": content}))

    assert body["id"].startswith("chatcmpl-")
    assert (body["object"], body["created"], body["model"]) == ("chat.completion", 1_700_000_000, "house-model")
    assert body["choices"] == [
        {
            "index": 0,
            "message": {"role": "assistant", "content": "Hello!", "refusal": None},
            "logprobs": None,
            "finish_reason": "stop",
        }
    ]
    assert body["usage"] == {"prompt_tokens": 71, "completion_tokens": 7, "total_tokens": 78}
    assert ADAPTER.upstream_id(answer({"role": "assistant"})) == "c14c80c3"


def test_a_tool_call_answer_has_the_plan_as_content_and_the_calls() -> None:
    message = {"role": "assistant", "tool_plan": "I will check.", "tool_calls": [CALL]}

    body = translated(answer(message, "TOOL_CALL"))

    [choice] = body["choices"]
    assert choice["message"] == {"role": "assistant", "content": "I will check.", "refusal": None, "tool_calls": [CALL]}
    assert choice["finish_reason"] == "tool_calls"


@pytest.mark.parametrize(
    ("reason", "expected"),
    [("COMPLETE", "stop"), ("STOP_SEQUENCE", "stop"), ("MAX_TOKENS", "length"), ("SOMETHING_NEW", "stop")],
)
def test_coheres_finish_reason_becomes_openais(reason: str, expected: str) -> None:
    body = translated(answer({"role": "assistant", "content": [{"type": "text", "text": "x"}]}, reason))

    assert body["choices"][0]["finish_reason"] == expected


@pytest.mark.parametrize(
    ("usage", "expected"),
    [
        pytest.param(USAGE, (71, 7), id="tokens-first"),
        pytest.param({"billed_units": {"input_tokens": 5, "output_tokens": 7}}, (5, 7), id="billed-units"),
        pytest.param(None, (0, 0), id="none"),
    ],
)
def test_usage_comes_from_tokens_else_billed_units(usage: Any, expected: tuple[int, int]) -> None:
    body = translated(answer({"role": "assistant", "content": []}, usage=usage))

    assert (body["usage"]["prompt_tokens"], body["usage"]["completion_tokens"]) == expected


def test_an_answer_that_is_not_coheres_raises_value_error() -> None:
    with pytest.raises(ValueError, match="not a Cohere chat answer"):
        ADAPTER.response("chat", TARGET, b'{"text": "a v1 answer"}')


@pytest.mark.parametrize("reason", ["ERROR", "TIMEOUT"])
def test_an_answer_whose_generation_failed_is_the_upstreams_failure_not_an_answer(reason: str) -> None:
    payload = answer({"role": "assistant", "content": [{"type": "text", "text": "partial"}]}, finish_reason=reason)

    with pytest.raises(FailedAnswer) as caught:
        ADAPTER.response("chat", TARGET, payload)

    failure = caught.value.failure
    assert (failure.status, failure.type, failure.code) == (502, "api_error", None)
    assert failure.message == f"The upstream provider failed: the generation ended with {reason}."


def test_a_failed_answer_passes_on_coheres_own_words_for_it() -> None:
    payload = orjson.loads(answer({"role": "assistant", "content": []}, finish_reason="ERROR"))
    payload["error"] = "internal model failure"

    with pytest.raises(FailedAnswer, match="The upstream provider failed: internal model failure"):
        ADAPTER.response("chat", TARGET, orjson.dumps(payload))


def test_embeddings_become_an_openai_list() -> None:
    payload = orjson.dumps(
        {
            "id": "e1",
            "embeddings": {"float": [[0.1, 0.2], [0.3, 0.4]]},
            "texts": ["a", "b"],
            "meta": {"billed_units": {"input_tokens": 4}},
            "response_type": "embeddings_by_type",
        }
    )

    body = orjson.loads(ADAPTER.response("embeddings", TARGET, payload))

    assert body == {
        "object": "list",
        "data": [
            {"object": "embedding", "index": 0, "embedding": [0.1, 0.2]},
            {"object": "embedding", "index": 1, "embedding": [0.3, 0.4]},
        ],
        "model": "house-model",
        "usage": {"prompt_tokens": 4, "total_tokens": 4},
    }


def test_the_model_list_is_read_from_v1_models() -> None:
    request = ADAPTER.models_request(PROVIDER)
    names = ADAPTER.model_ids(orjson.dumps({"models": [{"name": "command-a-03-2025"}, {"name": "embed-v4.0"}]}))

    assert (request.method, request.url) == ("GET", "https://api.cohere.test/v1/models?endpoint=chat&page_size=1000")
    assert names == ["command-a-03-2025", "embed-v4.0"]
    with pytest.raises(ValueError, match="not a Cohere model list"):
        ADAPTER.model_ids(b'{"data": []}')


@pytest.mark.parametrize(
    ("status", "expected"),
    [
        pytest.param(400, (400, "invalid_request_error", None), id="400"),
        pytest.param(401, (502, "api_error", "upstream_auth_error"), id="401"),
        pytest.param(498, (502, "api_error", "upstream_auth_error"), id="498-invalid-token"),
        pytest.param(402, (502, "api_error", "upstream_billing_error"), id="402"),
        pytest.param(404, (404, "invalid_request_error", "model_not_found"), id="404"),
        pytest.param(422, (400, "invalid_request_error", None), id="422"),
        pytest.param(429, (429, "requests", "rate_limit_exceeded"), id="429"),
        pytest.param(499, (502, "api_error", None), id="499-cancelled"),
        pytest.param(500, (502, "api_error", None), id="500"),
        pytest.param(503, (503, "api_error", None), id="503"),
    ],
)
def test_coheres_error_statuses_become_openais(status: int, expected: tuple[int, str, str | None]) -> None:
    failure = ADAPTER.failure(status, b'{"id": "x", "message": "went wrong"}', {"retry-after": "4"})

    assert (failure.status, failure.type, failure.code) == expected
    if failure.code != "upstream_billing_error":  # out of credit: waiting will not help
        assert failure.headers == {"retry-after": "4"}
    if failure.code not in ("upstream_auth_error", "upstream_billing_error"):
        assert "went wrong" in failure.message


def test_an_error_message_quoting_the_key_is_redacted() -> None:
    failure = ADAPTER.failure(
        400, b'{"message": "bad key sk-secret-123 given"}', {}, redactor=Redactor(("sk-secret-123",))
    )

    assert "sk-secret-123" not in failure.message
