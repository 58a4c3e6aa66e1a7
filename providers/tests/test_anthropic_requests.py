"""The Anthropic adapter's requests: where they go, and an OpenAI chat body in, the Messages body out."""

from __future__ import annotations

import dataclasses
from typing import Any

import orjson
import pytest

from providers.adapters.anthropic import API_VERSION, AnthropicAdapter, UnsupportedParameter
from providers.adapters.anthropic.requests import DEFAULT_MAX_TOKENS, JSON_INSTRUCTION
from providers.adapters.base import Target
from providers.tests.factories import UPSTREAM_CREDENTIAL as CREDENTIAL
from providers.tests.factories import make_provider_info

PROVIDER = make_provider_info(
    kind="anthropic", base_url="https://anthropic.test/v1", extra_headers={"anthropic-beta": "fine-grained-1"}
)
TARGET = Target(PROVIDER, upstream_model="claude-upstream", public_model="house-claude")
HI = [{"role": "user", "content": "Hi"}]
HI_BLOCKS = [{"role": "user", "content": [{"type": "text", "text": "Hi"}]}]
WEATHER = {"type": "function", "function": {"name": "get_weather", "parameters": {"type": "object"}}}


def upstream_body(body: dict[str, Any], target: Target = TARGET) -> dict[str, Any]:
    request = AnthropicAdapter().request("chat", target, body)
    assert isinstance(request.content, bytes)
    return orjson.loads(request.content)


def test_a_chat_request_posts_to_messages_with_the_key_the_version_and_the_extra_headers() -> None:
    request = AnthropicAdapter().request("chat", TARGET, {"model": "house-claude", "messages": HI})

    assert (request.method, request.url) == ("POST", "https://anthropic.test/v1/messages")
    assert request.headers["x-api-key"] == CREDENTIAL
    assert request.headers["anthropic-version"] == API_VERSION == "2023-06-01"
    assert request.headers["content-type"] == "application/json"
    assert request.headers["anthropic-beta"] == "fine-grained-1"
    assert "authorization" not in request.headers
    assert CREDENTIAL not in repr(request)


def test_a_provider_naming_an_api_version_sends_that_one() -> None:
    target = dataclasses.replace(TARGET, provider=dataclasses.replace(PROVIDER, api_version="2024-01-01"))

    request = AnthropicAdapter().request("chat", target, {"messages": HI})

    assert request.headers["anthropic-version"] == "2024-01-01"


def test_a_provider_without_a_credential_sends_no_key() -> None:
    target = dataclasses.replace(TARGET, provider=dataclasses.replace(PROVIDER, credential=""))

    assert "x-api-key" not in AnthropicAdapter().request("chat", target, {"messages": HI}).headers


def test_the_models_request_asks_for_one_full_page_with_the_same_headers() -> None:
    request = AnthropicAdapter().models_request(PROVIDER)

    assert (request.method, request.url) == ("GET", "https://anthropic.test/v1/models?limit=1000")
    assert request.headers["x-api-key"] == CREDENTIAL
    assert request.headers["anthropic-version"] == API_VERSION
    assert "content-type" not in request.headers


@pytest.mark.parametrize(
    ("fields", "expected"),
    [
        pytest.param({}, {}, id="nothing-but-messages"),
        pytest.param({"stop": "END"}, {"stop_sequences": ["END"]}, id="stop-string"),
        pytest.param({"stop": ["A", "B"]}, {"stop_sequences": ["A", "B"]}, id="stop-list"),
        pytest.param({"stop": None}, {}, id="stop-null"),
        pytest.param({"temperature": 0.7}, {"temperature": 0.7}, id="temperature-in-range"),
        pytest.param({"temperature": 1.6}, {"temperature": 1.0}, id="temperature-clamped-to-1"),
        pytest.param({"temperature": 0}, {"temperature": 0.0}, id="temperature-zero"),
        pytest.param({"top_p": 0.9, "top_k": 40}, {"top_p": 0.9, "top_k": 40}, id="top-p-and-k"),
        pytest.param({"temperature": 0.2, "top_p": 1}, {"temperature": 0.2}, id="top-p-of-1-not-sent"),
        pytest.param({"user": "user-42"}, {"metadata": {"user_id": "user-42"}}, id="user"),
        pytest.param({"safety_identifier": "sid-7"}, {"metadata": {"user_id": "sid-7"}}, id="safety-identifier"),
        pytest.param({"max_tokens": 100}, {"max_tokens": 100}, id="max-tokens"),
        pytest.param({"max_completion_tokens": 200, "max_tokens": 100}, {"max_tokens": 200}, id="max-completion"),
        pytest.param(
            {"stream": True, "stream_options": {"include_usage": True}}, {"stream": True}, id="stream-options-dropped"
        ),
        pytest.param({"stream": False}, {}, id="no-stream"),
        pytest.param({"response_format": {"type": "text"}}, {}, id="response-format-text"),
        pytest.param(
            {"response_format": {"type": "json_object"}}, {"system": JSON_INSTRUCTION}, id="response-format-json"
        ),
        pytest.param(
            {
                "seed": 7,
                "presence_penalty": 0.5,
                "frequency_penalty": 0.5,
                "logit_bias": {"50256": -100},
                "store": True,
                "service_tier": "auto",
                "metadata": {"team": "a"},
                "reasoning_effort": "low",
                "prediction": {"type": "content", "content": "x"},
                "n": 1,
                "logprobs": False,
                "parallel_tool_calls": False,
                "tool_choice": "auto",
            },
            {},
            id="unknown-and-inert-fields-dropped",
        ),
    ],
)
def test_each_option_is_translated(fields: dict[str, Any], expected: dict[str, Any]) -> None:
    body = {"model": "house-claude", "messages": HI, **fields}

    base = {"model": "claude-upstream", "max_tokens": DEFAULT_MAX_TOKENS, "messages": HI_BLOCKS}
    assert upstream_body(body) == {**base, **expected}


@pytest.mark.parametrize(
    ("body", "route_cap", "expected"),
    [
        ({}, None, 4096),
        ({}, 1000, 1000),
        ({"max_tokens": 50}, 1000, 50),
        ({"max_completion_tokens": 60}, None, 60),
    ],
)
def test_max_tokens_falls_back_to_the_route_cap_then_to_the_default(
    body: dict[str, Any], route_cap: int | None, expected: int
) -> None:
    target = dataclasses.replace(TARGET, max_output_tokens=route_cap)

    assert upstream_body({"messages": HI, **body}, target)["max_tokens"] == expected


@pytest.mark.parametrize(
    ("fields", "expected"),
    [
        pytest.param(
            {"tools": [WEATHER]},
            {"tools": [{"name": "get_weather", "input_schema": {"type": "object"}}]},
            id="tool",
        ),
        pytest.param(
            {"tools": [{"type": "function", "function": {"name": "ping", "description": "Ping it.", "strict": True}}]},
            {
                "tools": [
                    {"name": "ping", "description": "Ping it.", "input_schema": {"type": "object", "properties": {}}}
                ]
            },
            id="tool-without-parameters",
        ),
        pytest.param({"tool_choice": "auto"}, {"tool_choice": {"type": "auto"}}, id="choice-auto"),
        pytest.param({"tool_choice": "none"}, {"tool_choice": {"type": "none"}}, id="choice-none"),
        pytest.param({"tool_choice": "required"}, {"tool_choice": {"type": "any"}}, id="choice-required"),
        pytest.param(
            {"tool_choice": {"type": "function", "function": {"name": "get_weather"}}},
            {"tool_choice": {"type": "tool", "name": "get_weather"}},
            id="choice-named",
        ),
        pytest.param(
            {"parallel_tool_calls": False},
            {"tool_choice": {"type": "auto", "disable_parallel_tool_use": True}},
            id="serial-without-choice",
        ),
        pytest.param(
            {"parallel_tool_calls": False, "tool_choice": "required"},
            {"tool_choice": {"type": "any", "disable_parallel_tool_use": True}},
            id="serial-required",
        ),
        pytest.param(
            {"parallel_tool_calls": False, "tool_choice": "none"}, {"tool_choice": {"type": "none"}}, id="serial-none"
        ),
        pytest.param({"parallel_tool_calls": True}, {}, id="parallel-is-the-default"),
    ],
)
def test_tools_and_tool_choice_are_translated(fields: dict[str, Any], expected: dict[str, Any]) -> None:
    body = upstream_body({"messages": HI, "tools": [WEATHER], **fields})

    expected = {"tools": [{"name": "get_weather", "input_schema": {"type": "object"}}], **expected}
    assert {key: body[key] for key in ("tools", "tool_choice") if key in body} == expected


def text(value: str) -> dict[str, str]:
    return {"type": "text", "text": value}


def tool_call(call_id: str, name: str, arguments: str) -> dict[str, Any]:
    return {"id": call_id, "type": "function", "function": {"name": name, "arguments": arguments}}


@pytest.mark.parametrize(
    ("messages", "system", "expected"),
    [
        pytest.param(
            [
                {"role": "system", "content": "Be brief."},
                {"role": "user", "content": "Hi"},
                {"role": "developer", "content": [text("Answer in French."), text("Never apologise.")]},
            ],
            "Be brief.\n\nAnswer in French.\n\nNever apologise.",
            [{"role": "user", "content": [text("Hi")]}],
            id="system-and-developer-joined",
        ),
        pytest.param(
            [{"role": "user", "content": "One"}, {"role": "user", "content": [text("Two")]}],
            None,
            [{"role": "user", "content": [text("One"), text("Two")]}],
            id="consecutive-users-merged",
        ),
        pytest.param(
            [
                {"role": "user", "content": "Hi"},
                {"role": "assistant", "content": "Hello"},
                {"role": "assistant", "content": [text("again"), {"type": "refusal", "refusal": "No."}]},
            ],
            None,
            [
                {"role": "user", "content": [text("Hi")]},
                {"role": "assistant", "content": [text("Hello"), text("again"), text("No.")]},
            ],
            id="consecutive-assistants-merged-refusal-as-text",
        ),
        pytest.param(
            [
                {
                    "role": "user",
                    "content": [
                        text("What is this?"),
                        {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0K"}},
                    ],
                },  # noqa: E501
            ],
            None,
            [
                {
                    "role": "user",
                    "content": [
                        text("What is this?"),
                        {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": "iVBORw0K"}},
                    ],
                }
            ],
            id="image-data-url",
        ),
        pytest.param(
            [
                {
                    "role": "user",
                    "content": [{"type": "image_url", "image_url": {"url": "https://x.test/a.jpg", "detail": "high"}}],
                }
            ],  # noqa: E501
            None,
            [
                {
                    "role": "user",
                    "content": [{"type": "image", "source": {"type": "url", "url": "https://x.test/a.jpg"}}],
                }
            ],
            id="image-http-url",
        ),
        pytest.param(
            [
                {
                    "role": "user",
                    "content": [
                        {
                            "type": "file",
                            "file": {"filename": "a.pdf", "file_data": "data:application/pdf;base64,JVBERi0x"},
                        }
                    ],
                }
            ],  # noqa: E501
            None,
            [
                {
                    "role": "user",
                    "content": [
                        {
                            "type": "document",
                            "source": {"type": "base64", "media_type": "application/pdf", "data": "JVBERi0x"},
                        }
                    ],
                }
            ],
            id="pdf-data-url",
        ),
        pytest.param(
            [
                {"role": "user", "content": "Weather in Paris and Tokyo?"},
                {
                    "role": "assistant",
                    "content": None,
                    "tool_calls": [
                        tool_call("call_1", "get_weather", '{"city": "Paris"}'),
                        tool_call("call_2", "get_weather", '{"city":"Tokyo"}'),
                    ],
                },
                {"role": "tool", "tool_call_id": "call_1", "content": "18C"},
                {"role": "tool", "tool_call_id": "call_2", "content": [text("22C")]},
                {"role": "user", "content": "Thanks"},
            ],
            None,
            [
                {"role": "user", "content": [text("Weather in Paris and Tokyo?")]},
                {
                    "role": "assistant",
                    "content": [
                        {"type": "tool_use", "id": "call_1", "name": "get_weather", "input": {"city": "Paris"}},
                        {"type": "tool_use", "id": "call_2", "name": "get_weather", "input": {"city": "Tokyo"}},
                    ],
                },
                {
                    "role": "user",
                    "content": [
                        {"type": "tool_result", "tool_use_id": "call_1", "content": "18C"},
                        {"type": "tool_result", "tool_use_id": "call_2", "content": [text("22C")]},
                        text("Thanks"),
                    ],
                },
            ],
            id="tool-round-trip",
        ),
        pytest.param(
            [
                {"role": "user", "content": "Ping"},
                {"role": "assistant", "content": "", "tool_calls": [tool_call("call_9", "ping", "")]},
                {"role": "tool", "tool_call_id": "call_9", "content": ""},
            ],
            None,
            [
                {"role": "user", "content": [text("Ping")]},
                {"role": "assistant", "content": [{"type": "tool_use", "id": "call_9", "name": "ping", "input": {}}]},
                {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "call_9"}]},
            ],
            id="empty-text-and-empty-arguments",
        ),
        pytest.param(
            [
                {"role": "user", "content": "Hi", "name": "ann"},
                {"role": "assistant", "content": "Hello", "tool_calls": [tool_call("c", "f", "{}")]},
            ],
            None,
            [
                {"role": "user", "content": [text("Hi")]},
                {
                    "role": "assistant",
                    "content": [text("Hello"), {"type": "tool_use", "id": "c", "name": "f", "input": {}}],
                },  # noqa: E501
            ],
            id="text-before-tool-use-names-dropped",
        ),
    ],
)
def test_messages_are_translated(
    messages: list[dict[str, Any]], system: str | None, expected: list[dict[str, Any]]
) -> None:
    body = upstream_body({"messages": messages})

    assert body.get("system") == system
    assert body["messages"] == expected


@pytest.mark.parametrize(
    ("prefill", "expected"),
    [
        pytest.param("The answer is ", [{"role": "assistant", "content": [text("The answer is")]}], id="trimmed"),
        pytest.param(" \n", [], id="whitespace-only-left-out"),
    ],
)
def test_a_last_assistant_message_is_sent_as_prefill_without_trailing_whitespace(
    prefill: str, expected: list[dict[str, Any]]
) -> None:
    body = upstream_body({"messages": [*HI, {"role": "assistant", "content": prefill}]})

    assert body["messages"] == HI_BLOCKS + expected


def test_json_mode_adds_its_instruction_after_the_clients_system_text() -> None:
    body = upstream_body(
        {"messages": [{"role": "system", "content": "Be brief."}, *HI], "response_format": {"type": "json_object"}}
    )

    assert body["system"] == f"Be brief.\n\n{JSON_INSTRUCTION}"


@pytest.mark.parametrize(
    ("fields", "param"),
    [
        pytest.param({"n": 2}, "n", id="n"),
        pytest.param({"logprobs": True}, "logprobs", id="logprobs"),
        pytest.param({"top_logprobs": 3}, "top_logprobs", id="top-logprobs"),
        pytest.param({"modalities": ["text", "audio"]}, "modalities", id="audio-modality"),
        pytest.param({"audio": {"voice": "alloy", "format": "mp3"}}, "audio", id="audio"),
        pytest.param(
            {"response_format": {"type": "json_schema", "json_schema": {"name": "x"}}}, "response_format", id="schema"
        ),
        pytest.param({"functions": [{"name": "f"}]}, "functions", id="legacy-functions"),
        pytest.param({"function_call": "auto"}, "function_call", id="legacy-function-call"),
        pytest.param({"tools": [{"type": "custom", "custom": {"name": "grep"}}]}, "tools", id="custom-tool"),
        pytest.param({"tools": [WEATHER], "tool_choice": {"type": "allowed_tools"}}, "tool_choice", id="odd-choice"),
        pytest.param(
            {"messages": [{"role": "user", "content": [{"type": "input_audio", "input_audio": {"data": "x"}}]}]},
            "messages[0].content[0]",
            id="audio-input",
        ),
        pytest.param(
            {"messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "ftp://x/a"}}]}]},
            "messages[0].content[0].image_url.url",
            id="image-neither-http-nor-base64",
        ),
        pytest.param(
            {"messages": [{"role": "user", "content": [{"type": "file", "file": {"file_id": "file-1"}}]}]},
            "messages[0].content[0]",
            id="file-by-id",
        ),
        pytest.param(
            {"messages": [*HI, {"role": "assistant", "tool_calls": [tool_call("c", "f", '{"city": ')]}]},
            "messages[1].tool_calls[0].function.arguments",
            id="arguments-not-json",
        ),
        pytest.param(
            {"messages": [*HI, {"role": "assistant", "tool_calls": [tool_call("c", "f", "[1, 2]")]}]},
            "messages[1].tool_calls[0].function.arguments",
            id="arguments-not-an-object",
        ),
        pytest.param(
            {"messages": [*HI, {"role": "function", "name": "f", "content": "1"}]}, "messages[1]", id="function-role"
        ),
    ],
)
def test_what_anthropic_cannot_do_is_refused_naming_the_parameter(fields: dict[str, Any], param: str) -> None:
    with pytest.raises(UnsupportedParameter) as caught:
        upstream_body({"messages": HI, **fields})

    assert caught.value.param == param
    assert isinstance(caught.value, ValueError)
    assert str(caught.value) == caught.value.message


@pytest.mark.parametrize("operation", ["completions", "embeddings"])
def test_only_chat_is_native(operation: Any) -> None:
    adapter = AnthropicAdapter()

    assert adapter.operations == frozenset({"chat"})
    with pytest.raises(NotImplementedError):
        adapter.request(operation, TARGET, {"messages": HI})
