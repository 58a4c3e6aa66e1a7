"""The Cohere adapter's requests: OpenAI bodies in, Cohere API v2 bodies out, or a refusal naming the field."""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from providers.adapters.base import Operation, Target
from providers.adapters.cohere import CohereAdapter, UnsupportedParameter
from providers.adapters.kind_options import InvalidOptions
from providers.tests.factories import UPSTREAM_CREDENTIAL as CREDENTIAL
from providers.tests.factories import make_provider_info

PROVIDER = make_provider_info(kind="cohere", base_url="https://api.cohere.test", extra_headers={})
TARGET = Target(provider=PROVIDER, upstream_model="command-a-03-2025", public_model="house-model")
ADAPTER = CohereAdapter()
HELLO = [{"role": "user", "content": "Hello"}]
PARAMETERS = {"type": "object", "properties": {"city": {"type": "string"}}}
WEATHER = {"type": "function", "function": {"name": "get_weather", "parameters": PARAMETERS}}
CLOCK = {"type": "function", "function": {"name": "get_time", "description": "The time", "parameters": PARAMETERS}}
COHERE_WEATHER = {"type": "function", "function": {"name": "get_weather", "parameters": PARAMETERS}}
COHERE_CLOCK = {
    "type": "function",
    "function": {"name": "get_time", "parameters": PARAMETERS, "description": "The time"},
}


def sent(body: dict[str, Any], operation: Operation = "chat", target: Target = TARGET) -> dict[str, Any]:
    content = ADAPTER.request(operation, target, body).content
    assert isinstance(content, bytes)
    return dict(orjson.loads(content))


def test_chat_goes_to_v2_chat_with_the_credential_as_a_bearer_token() -> None:
    request = ADAPTER.request("chat", TARGET, {"model": "house-model", "messages": HELLO})

    assert (request.method, request.url) == ("POST", "https://api.cohere.test/v2/chat")
    assert request.headers["authorization"] == f"Bearer {CREDENTIAL}"
    assert request.headers["content-type"] == "application/json"


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        pytest.param({}, {}, id="nothing-extra"),
        pytest.param({"stream": True}, {"stream": True}, id="stream"),
        pytest.param({"max_tokens": 50}, {"max_tokens": 50}, id="max-tokens"),
        pytest.param({"max_completion_tokens": 70, "max_tokens": 50}, {"max_tokens": 70}, id="completion-cap-wins"),
        pytest.param({"temperature": 0.4, "seed": 3}, {"temperature": 0.4, "seed": 3}, id="temperature-seed"),
        pytest.param({"top_p": 0.8}, {"p": 0.8}, id="top-p-is-p"),
        pytest.param({"top_p": 1}, {}, id="top-p-1-is-no-cut"),
        pytest.param({"top_p": 0}, {"p": 0.01}, id="top-p-0-brought-into-range"),
        pytest.param({"stop": "END"}, {"stop_sequences": ["END"]}, id="stop-string"),
        pytest.param({"stop": ["A", "B"]}, {"stop_sequences": ["A", "B"]}, id="stop-list"),
        pytest.param({"frequency_penalty": 0.3}, {"frequency_penalty": 0.3}, id="frequency-penalty"),
        pytest.param({"response_format": {"type": "text"}}, {}, id="text-format"),
        pytest.param(
            {"response_format": {"type": "json_object"}}, {"response_format": {"type": "json_object"}}, id="json"
        ),
        pytest.param(
            {"response_format": {"type": "json_schema", "json_schema": {"name": "x", "schema": PARAMETERS}}},
            {"response_format": {"type": "json_object", "json_schema": PARAMETERS}},
            id="json-schema",
        ),
        pytest.param({"user": "u-1", "parallel_tool_calls": True}, {}, id="dropped"),
    ],
)
def test_openai_parameters_become_coheres(body: dict[str, Any], expected: dict[str, Any]) -> None:
    out = sent({"model": "house-model", "messages": HELLO, **body})

    assert out == {"model": "command-a-03-2025", "messages": HELLO, "stream": bool(body.get("stream")), **expected}


@pytest.mark.parametrize(
    ("choice", "expected_choice", "expected_tools"),
    [
        pytest.param(None, None, [COHERE_WEATHER, COHERE_CLOCK], id="unset"),
        pytest.param("auto", None, [COHERE_WEATHER, COHERE_CLOCK], id="auto"),
        pytest.param("required", "REQUIRED", [COHERE_WEATHER, COHERE_CLOCK], id="required"),
        pytest.param("none", "NONE", [COHERE_WEATHER, COHERE_CLOCK], id="none"),
        pytest.param({"type": "function", "function": {"name": "get_time"}}, "REQUIRED", [COHERE_CLOCK], id="named"),
    ],
)
def test_tools_and_tool_choice_become_coheres(
    choice: Any, expected_choice: str | None, expected_tools: list[dict[str, Any]]
) -> None:
    body: dict[str, Any] = {"model": "house-model", "messages": HELLO, "tools": [WEATHER, CLOCK]}
    if choice is not None:
        body["tool_choice"] = choice

    out = sent(body)

    assert out["tools"] == expected_tools
    assert out.get("tool_choice") == expected_choice
    assert "strict_tools" not in out


def test_a_strict_function_asks_cohere_for_strict_tools() -> None:
    strict = {"type": "function", "function": {**WEATHER["function"], "strict": True}}  # type: ignore[dict-item]

    out = sent({"model": "house-model", "messages": HELLO, "tools": [strict]})

    assert out["strict_tools"] is True
    assert out["tools"] == [COHERE_WEATHER]


def test_a_conversation_with_tool_calls_keeps_its_roles_the_plan_and_the_call_ids() -> None:
    messages = [
        {"role": "developer", "content": [{"type": "text", "text": "Be brief."}]},
        {"role": "user", "content": "Weather in Paris?"},
        {
            "role": "assistant",
            "content": "Looking it up.",
            "tool_calls": [
                {
                    "id": "call_1",
                    "type": "function",
                    "function": {"name": "get_weather", "arguments": '{"city":"Paris"}'},
                }
            ],
        },
        {"role": "tool", "tool_call_id": "call_1", "content": [{"type": "text", "text": "21 C"}]},
        {"role": "assistant", "content": "It is 21 C."},
    ]

    out = sent({"model": "house-model", "messages": messages})

    assert out["messages"] == [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "Weather in Paris?"},
        {
            "role": "assistant",
            "tool_calls": [
                {
                    "id": "call_1",
                    "type": "function",
                    "function": {"name": "get_weather", "arguments": '{"city":"Paris"}'},
                }
            ],
            "tool_plan": "Looking it up.",
        },
        {"role": "tool", "tool_call_id": "call_1", "content": "21 C"},
        {"role": "assistant", "content": "It is 21 C."},
    ]


def test_image_parts_become_v2_image_url_parts() -> None:
    content = [
        {"type": "text", "text": "What is this?"},
        {"type": "image_url", "image_url": {"url": "https://example.test/cat.png"}},
        {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0KGgo=", "detail": "high"}},
    ]

    out = sent({"model": "house-model", "messages": [{"role": "user", "content": content}]})

    assert out["messages"] == [
        {
            "role": "user",
            "content": [
                {"type": "text", "text": "What is this?"},
                {"type": "image_url", "image_url": {"url": "https://example.test/cat.png"}},
                {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0KGgo=", "detail": "high"}},
            ],
        }
    ]


@pytest.mark.parametrize(
    ("body", "param"),
    [
        pytest.param({"n": 3}, "n", id="several-choices"),
        pytest.param({"logprobs": True}, "logprobs", id="logprobs"),
        pytest.param({"top_logprobs": 2}, "top_logprobs", id="top-logprobs"),
        pytest.param({"modalities": ["text", "audio"]}, "modalities", id="audio"),
        pytest.param({"functions": []}, "functions", id="legacy-functions"),
        pytest.param({"presence_penalty": -0.5}, "presence_penalty", id="negative-penalty"),
        pytest.param({"tools": [WEATHER], "tool_choice": {"function": {"name": "nope"}}}, "tool_choice", id="unknown"),
        pytest.param({"tools": [{"type": "custom", "custom": {}}]}, "tools", id="custom-tool"),
        pytest.param(
            {"messages": [{"role": "user", "content": [{"type": "input_audio", "input_audio": {}}]}]},
            "messages[0].content[0]",
            id="audio-part",
        ),
        pytest.param(
            {"messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "file:///x"}}]}]},
            "messages[0].content[0].image_url.url",
            id="image-not-a-url",
        ),
        pytest.param(
            {
                "messages": [
                    {
                        "role": "assistant",
                        "tool_calls": [{"id": "c", "function": {"name": "f", "arguments": "[1]"}}],
                    }
                ]
            },
            "messages[0].tool_calls[0].function.arguments",
            id="arguments-not-an-object",
        ),
        pytest.param({"messages": [{"role": "function", "content": "x"}]}, "messages[0].role", id="function-role"),
    ],
)
def test_what_cohere_cannot_do_is_refused_by_name(body: dict[str, Any], param: str) -> None:
    with pytest.raises(UnsupportedParameter) as caught:
        sent({"model": "house-model", "messages": HELLO, **body})

    assert caught.value.param == param


def test_embeddings_go_to_v2_embed_with_floats_and_the_providers_input_type() -> None:
    query_provider = make_provider_info(
        kind="cohere", base_url="https://api.cohere.test", options={"embed_input_type": "search_query"}
    )
    query_target = Target(query_provider, upstream_model="embed-v4.0", public_model="house-embed")

    request = ADAPTER.request("embeddings", TARGET, {"model": "house-embed", "input": "one text"})
    default = sent({"model": "house-embed", "input": ["a", "b"], "dimensions": 512}, "embeddings")
    query = sent({"model": "house-embed", "input": "where?"}, "embeddings", query_target)

    assert request.url == "https://api.cohere.test/v2/embed"
    assert default == {
        "model": "command-a-03-2025",
        "texts": ["a", "b"],
        "input_type": "search_document",
        "embedding_types": ["float"],
        "output_dimension": 512,
    }
    assert query == {
        "model": "embed-v4.0",
        "texts": ["where?"],
        "input_type": "search_query",
        "embedding_types": ["float"],
    }


@pytest.mark.parametrize(
    "texts",
    [pytest.param([[1, 2, 3]], id="token-ids"), pytest.param(["x"] * 97, id="too-many")],
)
def test_embeddings_cohere_cannot_make_are_refused(texts: list[Any]) -> None:
    with pytest.raises(UnsupportedParameter) as caught:
        sent({"model": "house-embed", "input": texts}, "embeddings")

    assert caught.value.param == "input"


@pytest.mark.parametrize(
    ("options", "message"),
    [
        pytest.param({"embed_input_type": "summaries"}, "must be one of", id="unknown-input-type"),
        pytest.param({"embed_input_type": 3}, "must be a string", id="wrong-type"),
        pytest.param({"input_type": "search_query"}, "Unknown option", id="misspelt-key"),
    ],
)
def test_the_options_are_refused_unless_cohere_knows_them(options: dict[str, Any], message: str) -> None:
    with pytest.raises(InvalidOptions, match=message):
        ADAPTER.clean_options(options)


def test_known_options_are_kept_as_given() -> None:
    assert ADAPTER.clean_options({"embed_input_type": "clustering"}) == {"embed_input_type": "clustering"}
    assert ADAPTER.clean_options(None) == {}
