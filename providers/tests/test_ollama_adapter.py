"""The Ollama adapter's requests: OpenAI bodies in, Ollama bodies out, or a refusal naming the field."""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from providers.adapters.base import Target
from providers.adapters.ollama import OllamaAdapter, UnsupportedParameter
from providers.tests.factories import UPSTREAM_CREDENTIAL as CREDENTIAL
from providers.tests.factories import make_provider_info

PROVIDER = make_provider_info(kind="ollama", base_url="http://ollama.test:11434", extra_headers={})
TARGET = Target(provider=PROVIDER, upstream_model="llama3.2:3b", public_model="house-model")
ADAPTER = OllamaAdapter()
HELLO = [{"role": "user", "content": "Hello"}]
WEATHER_TOOL = {
    "type": "function",
    "function": {"name": "get_weather", "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}},
}
PNG = "iVBORw0KGgo="


def sent(operation: str, body: dict[str, Any]) -> dict[str, Any]:
    return orjson.loads(ADAPTER.request(operation, TARGET, body).content)  # type: ignore[arg-type]


def test_chat_goes_to_api_chat_with_the_credential_as_a_bearer_token() -> None:
    request = ADAPTER.request("chat", TARGET, {"model": "house-model", "messages": HELLO})

    assert (request.method, request.url) == ("POST", "http://ollama.test:11434/api/chat")
    assert request.headers["authorization"] == f"Bearer {CREDENTIAL}"
    assert request.headers["content-type"] == "application/json"


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        pytest.param(
            {"model": "house-model", "messages": HELLO},
            {"model": "llama3.2:3b", "messages": HELLO, "stream": False},
            id="stream is always explicit",
        ),
        pytest.param(
            {"messages": HELLO, "stream": True, "stream_options": {"include_usage": True}},
            {"model": "llama3.2:3b", "messages": HELLO, "stream": True},
            id="a stream",
        ),
        pytest.param(
            {
                "messages": HELLO,
                "temperature": 0.2,
                "top_p": 0.9,
                "seed": 7,
                "frequency_penalty": 0.5,
                "presence_penalty": -0.5,
                "max_tokens": 50,
                "stop": "END",
            },
            {
                "model": "llama3.2:3b",
                "messages": HELLO,
                "stream": False,
                "options": {
                    "temperature": 0.2,
                    "top_p": 0.9,
                    "seed": 7,
                    "frequency_penalty": 0.5,
                    "presence_penalty": -0.5,
                    "num_predict": 50,
                    "stop": ["END"],
                },
            },
            id="sampling options",
        ),
        pytest.param(
            {"messages": HELLO, "max_completion_tokens": 20, "max_tokens": 99, "stop": ["a", "b"], "temperature": 0},
            {
                "model": "llama3.2:3b",
                "messages": HELLO,
                "stream": False,
                "options": {"temperature": 0, "num_predict": 20, "stop": ["a", "b"]},
            },
            id="max_completion_tokens wins and a zero temperature is kept",
        ),
        pytest.param(
            {"messages": HELLO, "tools": [WEATHER_TOOL], "tool_choice": "auto"},
            {"model": "llama3.2:3b", "messages": HELLO, "stream": False, "tools": [WEATHER_TOOL]},
            id="tools",
        ),
        pytest.param(
            {"messages": HELLO, "tools": [WEATHER_TOOL], "tool_choice": "none"},
            {"model": "llama3.2:3b", "messages": HELLO, "stream": False},
            id="tool_choice none withholds the tools",
        ),
        pytest.param(
            {"messages": HELLO, "response_format": {"type": "json_object"}},
            {"model": "llama3.2:3b", "messages": HELLO, "stream": False, "format": "json"},
            id="json mode",
        ),
        pytest.param(
            {
                "messages": HELLO,
                "response_format": {
                    "type": "json_schema",
                    "json_schema": {"name": "age", "strict": True, "schema": {"type": "object"}},
                },
            },
            {"model": "llama3.2:3b", "messages": HELLO, "stream": False, "format": {"type": "object"}},
            id="json schema",
        ),
        pytest.param(
            {"messages": HELLO, "response_format": {"type": "text"}},
            {"model": "llama3.2:3b", "messages": HELLO, "stream": False},
            id="text format",
        ),
        pytest.param(
            {"messages": HELLO, "user": "u-1", "logit_bias": {"1": 2}, "parallel_tool_calls": True, "n": 1},
            {"model": "llama3.2:3b", "messages": HELLO, "stream": False},
            id="unknown fields dropped",
        ),
    ],
)
def test_a_chat_request_becomes_an_ollama_chat_body(body: dict[str, Any], expected: dict[str, Any]) -> None:
    assert sent("chat", body) == expected


@pytest.mark.parametrize(
    ("messages", "expected"),
    [
        pytest.param(
            [{"role": "developer", "content": "Be brief."}, {"role": "system", "content": "Be kind."}],
            [{"role": "system", "content": "Be brief."}, {"role": "system", "content": "Be kind."}],
            id="developer and system",
        ),
        pytest.param(
            [
                {
                    "role": "user",
                    "name": "ann",
                    "content": [{"type": "text", "text": "a"}, {"type": "text", "text": "b"}],
                }
            ],
            [{"role": "user", "content": "a\nb"}],
            id="text parts joined",
        ),
        pytest.param(
            [
                {
                    "role": "user",
                    "content": [
                        {"type": "text", "text": "What is this?"},
                        {"type": "image_url", "image_url": {"url": f"data:image/png;base64,{PNG}", "detail": "low"}},
                    ],
                }
            ],
            [{"role": "user", "content": "What is this?", "images": [PNG]}],
            id="a data-url image",
        ),
        pytest.param(
            [
                {
                    "role": "assistant",
                    "content": None,
                    "tool_calls": [
                        {
                            "id": "call_1",
                            "type": "function",
                            "function": {"name": "get_weather", "arguments": '{"city":"Paris"}'},
                        },
                        {"id": "call_2", "type": "function", "function": {"name": "get_time", "arguments": "{}"}},
                    ],
                },
                {"role": "tool", "tool_call_id": "call_2", "content": "12:00"},
                {"role": "tool", "tool_call_id": "call_1", "content": [{"type": "text", "text": "sunny"}]},
            ],
            [
                {
                    "role": "assistant",
                    "content": "",
                    "tool_calls": [
                        {"function": {"name": "get_weather", "arguments": {"city": "Paris"}}},
                        {"function": {"name": "get_time", "arguments": {}}},
                    ],
                },
                {"role": "tool", "content": "12:00", "tool_name": "get_time"},
                {"role": "tool", "content": "sunny", "tool_name": "get_weather"},
            ],
            id="tool calls and their results",
        ),
        pytest.param(
            [{"role": "tool", "tool_call_id": "call_unknown", "content": "42"}],
            [{"role": "tool", "content": "42"}],
            id="a tool result whose call is unknown",
        ),
        pytest.param(
            [{"role": "assistant", "content": [{"type": "refusal", "refusal": "I cannot."}], "refusal": "I cannot."}],
            [{"role": "assistant", "content": "I cannot."}],
            id="a refusal",
        ),
    ],
)
def test_messages_become_ollama_messages(messages: list[dict[str, Any]], expected: list[dict[str, Any]]) -> None:
    assert sent("chat", {"messages": messages})["messages"] == expected


def image(url: str) -> list[dict[str, Any]]:
    return [
        {"role": "user", "content": [{"type": "text", "text": "?"}, {"type": "image_url", "image_url": {"url": url}}]}
    ]


@pytest.mark.parametrize(
    ("operation", "body", "param"),
    [
        ("chat", {"messages": image("https://example.com/cat.png")}, "messages[0].content[1].image_url"),
        ("chat", {"messages": image("data:image/svg+xml;utf8,<svg/>")}, "messages[0].content[1].image_url"),
        (
            "chat",
            {"messages": [{"role": "user", "content": [{"type": "input_audio", "input_audio": {}}]}]},
            "messages[0].content[0].type",
        ),
        (
            "chat",
            {
                "messages": [
                    {"role": "assistant", "tool_calls": [{"id": "c", "function": {"name": "f", "arguments": "[1]"}}]}
                ]
            },
            "messages[0].tool_calls[0].function.arguments",
        ),
        ("chat", {"messages": [{"role": "function", "name": "f", "content": "x"}]}, "messages[0].role"),
        ("chat", {"messages": HELLO, "n": 2}, "n"),
        ("embeddings", {"input": [1, 2, 3]}, "input"),
        ("embeddings", {"input": [[1, 2], [3]]}, "input"),
        ("embeddings", {"input": ["ok", 5]}, "input"),
    ],
)
def test_what_ollama_cannot_honour_is_refused_naming_the_field(
    operation: str, body: dict[str, Any], param: str
) -> None:
    with pytest.raises(UnsupportedParameter) as refused:
        ADAPTER.request(operation, TARGET, body)  # type: ignore[arg-type]

    assert refused.value.param == param
    assert isinstance(refused.value, ValueError)


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        ({"input": "hi"}, {"model": "llama3.2:3b", "input": "hi", "truncate": True}),
        (
            {"input": ["a", "b"], "dimensions": 256, "encoding_format": "base64", "user": "u"},
            {"model": "llama3.2:3b", "input": ["a", "b"], "truncate": True, "dimensions": 256},
        ),
    ],
)
def test_an_embeddings_request_becomes_an_ollama_embed_body(body: dict[str, Any], expected: dict[str, Any]) -> None:
    request = ADAPTER.request("embeddings", TARGET, body)

    assert request.url == "http://ollama.test:11434/api/embed"
    assert orjson.loads(request.content) == expected


def test_ollama_speaks_chat_and_embeddings_as_ndjson() -> None:
    assert (ADAPTER.kind, ADAPTER.label, type(ADAPTER.splitter()).__name__) == ("ollama", "Ollama", "LineSplitter")
    assert ADAPTER.operations == {"chat", "embeddings"}
    assert ADAPTER.transport() is None
