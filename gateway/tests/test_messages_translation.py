"""The Messages request as a chat request, and a chat completion as a message (gateway.messages)."""

from __future__ import annotations

from typing import Any

import pytest

from gateway.messages.answers import anthropic_usage, message_from_completion, stop_reason
from gateway.messages.requests import chat_request

TOOL = {"name": "get_weather", "description": "Weather", "input_schema": {"type": "object"}}
FUNCTION = {
    "type": "function",
    "function": {"name": "get_weather", "parameters": {"type": "object"}, "description": "Weather"},
}


def _chat(**body: Any) -> dict[str, Any]:
    return chat_request({"model": "m", "messages": [{"role": "user", "content": "Hi"}], **body}).body


@pytest.mark.parametrize(
    ("fields", "expected"),
    [
        ({"max_tokens": 50}, {"max_completion_tokens": 50}),
        ({"temperature": 0.2, "top_p": 0.9, "top_k": 3}, {"temperature": 0.2, "top_p": 0.9}),
        ({"stop_sequences": ["END", "STOP"]}, {"stop": ["END", "STOP"]}),
        ({"metadata": {"user_id": "u-1"}}, {"user": "u-1"}),
        ({"stream": True}, {"stream": True, "stream_options": {"include_usage": True}}),
        ({"thinking": {"type": "enabled", "budget_tokens": 1024}}, {}),
        ({"tools": [TOOL]}, {"tools": [FUNCTION]}),
        ({"tools": [TOOL], "tool_choice": {"type": "any"}}, {"tools": [FUNCTION], "tool_choice": "required"}),
        ({"tools": [TOOL], "tool_choice": {"type": "none"}}, {"tools": [FUNCTION], "tool_choice": "none"}),
        (
            {
                "tools": [TOOL],
                "tool_choice": {"type": "tool", "name": "get_weather", "disable_parallel_tool_use": True},
            },
            {
                "tools": [FUNCTION],
                "tool_choice": {"type": "function", "function": {"name": "get_weather"}},
                "parallel_tool_calls": False,
            },
        ),
        ({"tool_choice": {"type": "auto"}}, {}),  # OpenAI refuses a tool_choice without tools
    ],
)
def test_each_field_has_its_chat_name(fields: dict[str, Any], expected: dict[str, Any]) -> None:
    chat = _chat(**fields)

    assert {key: value for key, value in chat.items() if key not in ("model", "messages")} == expected


@pytest.mark.parametrize(
    ("system", "head"),
    [
        ("Be brief.", [{"role": "system", "content": "Be brief."}]),
        (
            [{"type": "text", "text": "One."}, {"type": "text", "text": "Two."}],
            [{"role": "system", "content": "One.\n\nTwo."}],
        ),
        ("", []),
    ],
)
def test_the_system_prompt_is_one_system_message(system: Any, head: list[dict[str, Any]]) -> None:
    assert _chat(system=system)["messages"] == [*head, {"role": "user", "content": "Hi"}]


def test_tool_uses_and_results_become_tool_calls_and_tool_messages() -> None:
    image = {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": "AAAA"}}
    messages = [
        {"role": "user", "content": "Weather?"},
        {
            "role": "assistant",
            "content": [
                {"type": "thinking", "thinking": "hmm", "signature": "s"},
                {"type": "text", "text": "Checking."},
                {"type": "tool_use", "id": "t1", "name": "get_weather", "input": {"city": "Paris"}},
            ],
        },
        {
            "role": "user",
            "content": [
                {"type": "text", "text": "Here:"},
                {"type": "tool_result", "tool_use_id": "t1", "content": [{"type": "text", "text": "sunny"}, image]},
            ],
        },
    ]

    translation = chat_request({"model": "m", "messages": messages})

    assert translation.refusal is None
    assert translation.body["messages"] == [
        {"role": "user", "content": "Weather?"},
        {
            "role": "assistant",
            "content": "Checking.",
            "tool_calls": [
                {"id": "t1", "type": "function", "function": {"name": "get_weather", "arguments": '{"city":"Paris"}'}}
            ],
        },
        {"role": "tool", "tool_call_id": "t1", "content": "sunny"},
        {
            "role": "user",
            "content": [
                {"type": "text", "text": "Here:"},
                {"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAA"}},
            ],
        },
    ]


@pytest.mark.parametrize(
    ("block", "part"),
    [
        (
            {"type": "image", "source": {"type": "url", "url": "https://x.test/a.png"}},
            {"type": "image_url", "image_url": {"url": "https://x.test/a.png"}},
        ),
        (
            {"type": "document", "source": {"type": "base64", "media_type": "application/pdf", "data": "JVBE"}},
            {"type": "file", "file": {"filename": "document.pdf", "file_data": "data:application/pdf;base64,JVBE"}},
        ),
        (
            {"type": "document", "source": {"type": "text", "media_type": "text/plain", "data": "Notes"}},
            {"type": "text", "text": "Notes"},
        ),
    ],
)
def test_images_and_documents_become_parts(block: dict[str, Any], part: dict[str, Any]) -> None:
    messages = [{"role": "user", "content": [{"type": "text", "text": "Look"}, block]}]

    assert chat_request({"model": "m", "messages": messages}).body["messages"][0]["content"][1] == part


@pytest.mark.parametrize(
    ("fields", "param"),
    [
        ({"tools": [{"type": "web_search_20250305", "name": "web_search"}]}, "tools.0"),
        (
            {
                "messages": [
                    {"role": "user", "content": [{"type": "document", "source": {"type": "url", "url": "https://x"}}]}
                ]
            },
            "messages.0.content.0",
        ),
        (
            {"messages": [{"role": "user", "content": [{"type": "search_result", "content": []}]}]},
            "messages.0.content.0",
        ),
    ],
)
def test_what_chat_cannot_say_is_left_out_and_noted(fields: dict[str, Any], param: str) -> None:
    translation = chat_request({"model": "m", "messages": [{"role": "user", "content": "Hi"}], **fields})

    assert translation.refusal is not None
    assert translation.refusal.param == param
    assert translation.refusal.status == 400
    assert "tools" not in translation.body


@pytest.mark.parametrize(
    ("choice", "stops", "expected"),
    [
        ({"finish_reason": "stop"}, [], ("end_turn", None)),
        ({"finish_reason": "length"}, [], ("max_tokens", None)),
        ({"finish_reason": "tool_calls"}, [], ("tool_use", None)),
        ({"finish_reason": "content_filter"}, [], ("refusal", None)),
        ({"finish_reason": "stop", "stop_reason": "END"}, ["END"], ("stop_sequence", "END")),
        ({"finish_reason": "stop", "matched_stop": "END"}, ["END"], ("stop_sequence", "END")),
        ({"finish_reason": "stop", "stop_reason": 128009}, ["END"], ("end_turn", None)),  # a token id: no sequence
        ({"finish_reason": None}, [], ("end_turn", None)),
    ],
)
def test_finish_reasons_become_stop_reasons(
    choice: dict[str, Any], stops: list[str], expected: tuple[str, str | None]
) -> None:
    assert stop_reason(choice, stops) == expected


def test_usage_counts_cached_tokens_apart_from_input_tokens() -> None:
    usage = {"prompt_tokens": 100, "completion_tokens": 7, "prompt_tokens_details": {"cached_tokens": 60}}

    assert anthropic_usage(usage) == {
        "input_tokens": 40,
        "cache_creation_input_tokens": 0,
        "cache_read_input_tokens": 60,
        "output_tokens": 7,
    }


@pytest.mark.parametrize("thinking", [True, False])
def test_a_completion_becomes_a_message(thinking: bool) -> None:
    call = {"id": "c1", "type": "function", "function": {"name": "get_weather", "arguments": '{"city": "Oslo"}'}}
    completion = {
        "choices": [
            {
                "message": {
                    "role": "assistant",
                    "content": "Let me check.",
                    "reasoning_content": "Oslo.",
                    "tool_calls": [call],
                },
                "finish_reason": "tool_calls",
            }
        ],
        "usage": {"prompt_tokens": 12, "completion_tokens": 9},
    }

    message = message_from_completion(completion, message_id="msg_1", model="pub", stop_sequences=[], thinking=thinking)

    blocks = [{"type": "thinking", "thinking": "Oslo.", "signature": ""}] if thinking else []
    assert message == {
        "id": "msg_1",
        "type": "message",
        "role": "assistant",
        "model": "pub",
        "content": [
            *blocks,
            {"type": "text", "text": "Let me check."},
            {"type": "tool_use", "id": "c1", "name": "get_weather", "input": {"city": "Oslo"}},
        ],
        "stop_reason": "tool_use",
        "stop_sequence": None,
        "usage": {
            "input_tokens": 12,
            "cache_creation_input_tokens": 0,
            "cache_read_input_tokens": 0,
            "output_tokens": 9,
        },
    }
