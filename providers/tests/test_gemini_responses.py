"""The Gemini adapter's whole answers: GenerateContentResponse and embeddings in, OpenAI's bodies out."""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from providers.adapters.base import Target
from providers.adapters.gemini import GeminiAdapter
from providers.tests.factories import make_provider_info
from tests.openai_schemas import assert_valid

TARGET = Target(make_provider_info(kind="gemini", base_url="https://g.test"), "gemini-2.5-flash", "house-gemini")
ADAPTER = GeminiAdapter(clock=lambda: 1_750_000_000.0)
USAGE = {"promptTokenCount": 12, "candidatesTokenCount": 5, "totalTokenCount": 17}


def answer(*candidates: dict[str, Any], **fields: Any) -> bytes:
    return orjson.dumps({"candidates": list(candidates), "usageMetadata": USAGE, "responseId": "resp-1", **fields})


def candidate(*parts: dict[str, Any], finish: str = "STOP", index: int = 0) -> dict[str, Any]:
    return {"content": {"role": "model", "parts": list(parts)}, "finishReason": finish, "index": index}


def translated(payload: bytes) -> dict[str, Any]:
    body: dict[str, Any] = orjson.loads(ADAPTER.response("chat", TARGET, payload))
    assert_valid("CreateChatCompletionResponse", body)
    return body


def test_a_text_answer_is_an_openai_chat_completion() -> None:
    body = translated(answer(candidate({"text": "Hello"}, {"text": " there."})))

    assert body["id"].startswith("chatcmpl-")
    assert (body["object"], body["created"], body["model"]) == ("chat.completion", 1_750_000_000, "house-gemini")
    assert body["choices"] == [
        {
            "index": 0,
            "message": {"role": "assistant", "content": "Hello there.", "refusal": None},
            "logprobs": None,
            "finish_reason": "stop",
        }
    ]
    assert body["usage"] == {
        "prompt_tokens": 12,
        "completion_tokens": 5,
        "total_tokens": 17,
        "prompt_tokens_details": {"cached_tokens": 0},
        "completion_tokens_details": {"reasoning_tokens": 0},
    }
    assert ADAPTER.upstream_id(answer(candidate({"text": "Hi"}))) == "resp-1"


@pytest.mark.parametrize(
    ("reason", "finish"),
    [
        ("STOP", "stop"),
        ("MAX_TOKENS", "length"),
        ("SAFETY", "content_filter"),
        ("RECITATION", "content_filter"),
        ("BLOCKLIST", "content_filter"),
        ("PROHIBITED_CONTENT", "content_filter"),
        ("SPII", "content_filter"),
        ("OTHER", "stop"),
        ("FINISH_REASON_UNSPECIFIED", "stop"),
        ("A_REASON_FROM_NEXT_YEAR", "stop"),
    ],
)
def test_geminis_finish_reason_becomes_openais(reason: str, finish: str) -> None:
    body = translated(answer(candidate({"text": "Hi"}, finish=reason)))

    assert body["choices"][0]["finish_reason"] == finish


def test_function_calls_become_tool_calls_with_ids_and_the_thought_signature_rides_along() -> None:
    parts: list[dict[str, Any]] = [
        {"text": "Planning the call.", "thought": True},
        {"functionCall": {"name": "lookup", "args": {"q": "x"}}, "thoughtSignature": "sig=="},
        {"functionCall": {"name": "now", "id": "gemini-call-7"}},
    ]

    [choice] = translated(answer(candidate(*parts)))["choices"]

    [first, second] = choice["message"]["tool_calls"]
    assert choice["message"]["content"] is None  # the thought is not the answer
    assert choice["finish_reason"] == "tool_calls"
    assert first["id"].startswith("call_")
    assert len(first["id"]) == 29
    assert first["function"] == {"name": "lookup", "arguments": '{"q":"x"}'}
    assert first["extra_content"] == {"google": {"thought_signature": "sig=="}}
    assert second == {"id": "gemini-call-7", "type": "function", "function": {"name": "now", "arguments": "{}"}}


def test_several_candidates_are_several_choices() -> None:
    body = translated(answer(candidate({"text": "One"}), candidate({"text": "Two"}, finish="MAX_TOKENS", index=1)))

    assert [(c["index"], c["message"]["content"], c["finish_reason"]) for c in body["choices"]] == [
        (0, "One", "stop"),
        (1, "Two", "length"),
    ]


def test_a_blocked_prompt_is_an_empty_answer_stopped_by_the_content_filter() -> None:
    payload = orjson.dumps({"promptFeedback": {"blockReason": "SAFETY"}, "usageMetadata": {"promptTokenCount": 7}})

    body = translated(payload)

    assert body["choices"] == [
        {
            "index": 0,
            "message": {"role": "assistant", "content": None, "refusal": None},
            "logprobs": None,
            "finish_reason": "content_filter",
        }
    ]
    assert (body["usage"]["prompt_tokens"], body["usage"]["completion_tokens"]) == (7, 0)


def test_thinking_counts_as_completion_and_cached_tokens_stay_in_the_prompt() -> None:
    usage = {
        "promptTokenCount": 1000,
        "cachedContentTokenCount": 800,
        "candidatesTokenCount": 50,
        "thoughtsTokenCount": 120,
        "toolUsePromptTokenCount": 30,
        "totalTokenCount": 1200,
    }

    body = translated(answer(candidate({"text": "Hi"}), usageMetadata=usage))

    assert body["usage"] == {
        "prompt_tokens": 1030,
        "completion_tokens": 170,
        "total_tokens": 1200,
        "prompt_tokens_details": {"cached_tokens": 800},
        "completion_tokens_details": {"reasoning_tokens": 120},
    }


@pytest.mark.parametrize("payload", [b"not json", b"[]", b'"text"'])
def test_a_payload_that_is_not_an_answer_raises_value_error(payload: bytes) -> None:
    with pytest.raises(ValueError, match="not a Gemini answer"):
        ADAPTER.response("chat", TARGET, payload)
    assert ADAPTER.upstream_id(payload) == ""


@pytest.mark.parametrize(
    ("payload", "data", "usage"),
    [
        (
            {"embedding": {"values": [0.5, -1.0]}},
            [{"object": "embedding", "index": 0, "embedding": [0.5, -1.0]}],
            None,
        ),
        (
            {"embeddings": [{"values": [1.0]}, {"values": [2.0]}], "usageMetadata": {"promptTokenCount": 6}},
            [
                {"object": "embedding", "index": 0, "embedding": [1.0]},
                {"object": "embedding", "index": 1, "embedding": [2.0]},
            ],
            {"prompt_tokens": 6, "total_tokens": 6},
        ),
    ],
    ids=["embed-content", "batch-embed-contents"],
)
def test_embeddings_answers_become_an_openai_embedding_list(
    payload: dict[str, Any], data: list[dict[str, Any]], usage: dict[str, int] | None
) -> None:
    body = orjson.loads(ADAPTER.response("embeddings", TARGET, orjson.dumps(payload)))

    assert (body["object"], body["model"], body["data"]) == ("list", "house-gemini", data)
    assert body.get("usage") == usage  # none from Gemini: the gateway counts


@pytest.mark.parametrize("payload", [b"nope", b'{"embeddings": "x"}', b'{"embeddings": [1, 2]}'])
def test_an_embeddings_payload_that_is_not_one_raises_value_error(payload: bytes) -> None:
    with pytest.raises(ValueError, match="not a Gemini embeddings answer"):
        ADAPTER.response("embeddings", TARGET, payload)
