"""The Ollama adapter's answers: Ollama bodies and errors in, OpenAI's out."""

from __future__ import annotations

import re
from typing import Any

import orjson
import pytest

from providers.adapters.base import Target
from providers.adapters.ollama import OllamaAdapter
from providers.adapters.ollama.answers import chat_completion
from providers.redaction import Redactor
from providers.tests.factories import UPSTREAM_CREDENTIAL as CREDENTIAL
from providers.tests.factories import make_provider_info

PROVIDER = make_provider_info(kind="ollama", base_url="http://ollama.test:11434", extra_headers={})
TARGET = Target(provider=PROVIDER, upstream_model="llama3.2:3b", public_model="house-model")
ADAPTER = OllamaAdapter()

OLLAMA_ANSWER = {
    "model": "llama3.2:3b",
    "created_at": "2023-12-12T14:13:43.416799Z",
    "message": {"role": "assistant", "content": "Hello! How are you today?"},
    "done_reason": "stop",
    "done": True,
    "total_duration": 5191566416,
    "prompt_eval_count": 26,
    "eval_count": 298,
}
TOOL_ANSWER = {
    **OLLAMA_ANSWER,
    "message": {
        "role": "assistant",
        "content": "",
        "tool_calls": [
            {"function": {"name": "get_weather", "arguments": {"city": "Paris"}}},
            {"function": {"index": 1, "name": "get_time", "arguments": {}}},
        ],
    },
}


def completion(
    message: dict[str, Any], finish: str, prompt_tokens: int = 26, completion_tokens: int = 298
) -> dict[str, Any]:
    return {
        "id": "chatcmpl-test",
        "object": "chat.completion",
        "created": 1702390423,
        "model": "house-model",
        "choices": [{"index": 0, "message": message, "logprobs": None, "finish_reason": finish}],
        "usage": {
            "prompt_tokens": prompt_tokens,
            "completion_tokens": completion_tokens,
            "total_tokens": prompt_tokens + completion_tokens,
        },
    }


@pytest.mark.parametrize(
    ("answer", "expected"),
    [
        pytest.param(
            OLLAMA_ANSWER,
            completion({"role": "assistant", "content": "Hello! How are you today?", "refusal": None}, "stop"),
            id="text",
        ),
        pytest.param(
            {**OLLAMA_ANSWER, "done_reason": "length"},
            completion({"role": "assistant", "content": "Hello! How are you today?", "refusal": None}, "length"),
            id="cut by the token cap",
        ),
        pytest.param(
            {**OLLAMA_ANSWER, "prompt_eval_count": None, "eval_count": 3},
            completion({"role": "assistant", "content": "Hello! How are you today?", "refusal": None}, "stop", 0, 3),
            id="a prompt served from cache",
        ),
        pytest.param(
            TOOL_ANSWER,
            completion(
                {
                    "role": "assistant",
                    "content": None,
                    "refusal": None,
                    "tool_calls": [
                        {
                            "id": "ID",
                            "type": "function",
                            "function": {"name": "get_weather", "arguments": '{"city":"Paris"}'},
                        },
                        {"id": "ID", "type": "function", "function": {"name": "get_time", "arguments": "{}"}},
                    ],
                },
                "tool_calls",
            ),
            id="tool calls",
        ),
    ],
)
def test_an_ollama_chat_answer_becomes_a_chat_completion(answer: dict[str, Any], expected: dict[str, Any]) -> None:
    body = chat_completion(orjson.dumps(answer), "house-model", completion_id="chatcmpl-test")

    for call in body["choices"][0]["message"].get("tool_calls", ()):
        assert re.fullmatch(r"call_[0-9a-f]{24}", call["id"])
        call["id"] = "ID"
    assert body == expected


def test_the_adapter_answers_with_a_fresh_completion_id_and_the_public_model() -> None:
    first = orjson.loads(ADAPTER.response("chat", TARGET, orjson.dumps(OLLAMA_ANSWER)))
    second = orjson.loads(ADAPTER.response("chat", TARGET, orjson.dumps(OLLAMA_ANSWER)))

    assert re.fullmatch(r"chatcmpl-[0-9a-f]{24}", first["id"])
    assert first["id"] != second["id"]
    assert first["model"] == "house-model"


def test_an_answer_without_a_timestamp_is_dated_by_the_clock() -> None:
    answer = {key: value for key, value in OLLAMA_ANSWER.items() if key != "created_at"}

    assert chat_completion(orjson.dumps(answer), "m", clock=lambda: 1_700_000_000.7)["created"] == 1_700_000_000


def test_an_ollama_timestamp_with_nanoseconds_and_an_offset_is_read() -> None:
    answer = {**OLLAMA_ANSWER, "created_at": "2023-08-04T08:52:19.385406455-07:00"}

    assert chat_completion(orjson.dumps(answer), "m", clock=lambda: 0)["created"] == 1691164339


def test_an_ollama_embed_answer_becomes_an_embedding_list() -> None:
    answer = {"model": "nomic", "embeddings": [[0.1, -0.2], [0.3, 0.4]], "total_duration": 1, "prompt_eval_count": 8}

    body = orjson.loads(ADAPTER.response("embeddings", TARGET, orjson.dumps(answer)))

    assert body == {
        "object": "list",
        "data": [
            {"object": "embedding", "index": 0, "embedding": [0.1, -0.2]},
            {"object": "embedding", "index": 1, "embedding": [0.3, 0.4]},
        ],
        "model": "house-model",
        "usage": {"prompt_tokens": 8, "total_tokens": 8},
    }


@pytest.mark.parametrize(
    ("operation", "payload"),
    [("chat", b"not json"), ("chat", b'{"done": true}'), ("embeddings", b"[]"), ("embeddings", b'{"embedding": [1]}')],
)
def test_an_answer_of_the_wrong_shape_is_a_value_error(operation: str, payload: bytes) -> None:
    with pytest.raises(ValueError, match="not an Ollama"):
        ADAPTER.response(operation, TARGET, payload)  # type: ignore[arg-type]


def test_the_model_list_is_read_from_api_tags() -> None:
    request = ADAPTER.models_request(PROVIDER)
    payload = orjson.dumps({"models": [{"name": "llama3.2:3b", "model": "llama3.2:3b"}, {"model": "nomic:latest"}]})

    assert (request.method, request.url) == ("GET", "http://ollama.test:11434/api/tags")
    assert "content-type" not in request.headers
    assert ADAPTER.model_ids(payload) == ["llama3.2:3b", "nomic:latest"]
    with pytest.raises(ValueError, match="not an Ollama model list"):
        ADAPTER.model_ids(b'{"data": []}')


@pytest.mark.parametrize(
    ("status", "error", "expected"),
    [
        (400, "invalid options", (400, "invalid_request_error", None, "invalid options")),
        (
            404,
            'model "llama9" not found, try pulling it first',
            (404, "invalid_request_error", "model_not_found", 'model "llama9" not found, try pulling it first'),
        ),
        (429, "too many requests", (429, "requests", "rate_limit_exceeded", "too many requests")),
        (500, "runner crashed", (502, "api_error", None, "The upstream provider failed: runner crashed")),
        (
            503,
            "server busy, please try again",
            (502, "api_error", None, "The upstream provider failed: server busy, please try again"),
        ),
        (401, f"bad token {CREDENTIAL}", (502, "api_error", "upstream_auth_error", None)),
    ],
)
def test_ollama_errors_are_mapped_to_openai_errors(status: int, error: str, expected: tuple[Any, ...]) -> None:
    failure = ADAPTER.failure(
        status, orjson.dumps({"error": error}), {"retry-after": "2"}, redactor=Redactor([CREDENTIAL])
    )

    assert (failure.status, failure.type, failure.code) == expected[:3]
    if expected[3] is not None:
        assert failure.message == expected[3]
    assert CREDENTIAL not in failure.message
    assert failure.headers == {"retry-after": "2"}
