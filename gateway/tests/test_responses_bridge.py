"""The Responses API's translation onto chat completions and back: requests, answers and stream events."""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from gateway.errors import InvalidRequest
from gateway.responses.answers import response_from_chat, usage_for_chat, usage_from_chat
from gateway.responses.events import ChatToEvents
from gateway.responses.passthrough import ResponsesPassThrough
from gateway.responses.requests import chat_body, validate_responses_request

CALL = {"type": "function_call", "call_id": "call_1", "name": "get_weather", "arguments": '{"city":"Paris"}'}


@pytest.mark.parametrize(
    ("request_fields", "chat_fields"),
    [
        ({"input": "Hi"}, {"messages": [{"role": "user", "content": "Hi"}]}),
        (
            {"input": "Hi", "instructions": "Be brief."},
            {"messages": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"}]},
        ),
        (
            {"input": [{"role": "user", "content": [{"type": "input_image", "image_url": "https://x/y.png"}]}]},
            {
                "messages": [
                    {"role": "user", "content": [{"type": "image_url", "image_url": {"url": "https://x/y.png"}}]}
                ]
            },
        ),
        (
            {
                "input": [
                    CALL,
                    {**CALL, "call_id": "call_2"},
                    {"type": "function_call_output", "call_id": "call_1", "output": "sunny"},
                ]
            },
            {
                "messages": [
                    {
                        "role": "assistant",
                        "content": None,
                        "tool_calls": [
                            {
                                "id": "call_1",
                                "type": "function",
                                "function": {"name": "get_weather", "arguments": '{"city":"Paris"}'},
                            },
                            {
                                "id": "call_2",
                                "type": "function",
                                "function": {"name": "get_weather", "arguments": '{"city":"Paris"}'},
                            },
                        ],
                    },
                    {"role": "tool", "tool_call_id": "call_1", "content": "sunny"},
                ]
            },
        ),
        (
            {
                "input": "Hi",
                "tools": [{"type": "function", "name": "f", "parameters": {}}],
                "tool_choice": {"type": "function", "name": "f"},
            },
            {
                "messages": [{"role": "user", "content": "Hi"}],
                "tools": [{"type": "function", "function": {"name": "f", "parameters": {}}}],
                "tool_choice": {"type": "function", "function": {"name": "f"}},
            },
        ),
        (
            {"input": "Hi", "max_output_tokens": 50, "text": {"format": {"type": "json_object"}}, "stream": True},
            {
                "messages": [{"role": "user", "content": "Hi"}],
                "max_completion_tokens": 50,
                "response_format": {"type": "json_object"},
                "stream": True,
                "stream_options": {"include_usage": True},
            },
        ),
    ],
)
def test_a_request_becomes_the_chat_body_it_stands_for(
    request_fields: dict[str, Any], chat_fields: dict[str, Any]
) -> None:
    body = {"model": "m", **request_fields}
    validate_responses_request(body)
    assert chat_body(body) == {"model": "m", **chat_fields}


@pytest.mark.parametrize(
    ("request_fields", "param"),
    [
        ({}, "input"),
        ({"input": "Hi", "previous_response_id": "resp_1"}, "previous_response_id"),
        ({"input": "Hi", "max_output_tokens": 3}, "max_output_tokens"),
        ({"input": [{"role": "tool", "content": "x"}]}, "input[0].role"),
        ({"input": [{"type": "reasoning"}]}, "input[0].type"),
        ({"input": "Hi", "tools": [{"type": "file_search"}]}, "tools[0].type"),
        # Values of the wrong type where an object's field is looked up, or a name is looked up in a table
        ({"input": [{"role": ["user"], "content": "x"}]}, "input[0].role"),
        ({"input": [{"role": {"role": "user"}, "content": "x"}]}, "input[0].role"),
        ({"input": "Hi", "reasoning": "high"}, "reasoning"),
        ({"input": "Hi", "reasoning": ["high"]}, "reasoning"),
        ({"input": "Hi", "metadata": 1}, "metadata"),
    ],
)
def test_what_chat_cannot_express_is_refused_naming_the_parameter(request_fields: dict[str, Any], param: str) -> None:
    body = {"model": "m", **request_fields}
    with pytest.raises(InvalidRequest) as refused:
        _bridge(body)
    assert refused.value.param == param


def test_a_chat_completion_becomes_a_response_with_its_calls_and_usage() -> None:
    chat = {
        "model": "m",
        "choices": [
            {
                "message": {
                    "role": "assistant",
                    "content": "Checking.",
                    "tool_calls": [{"id": "call_9", "function": {"name": "f", "arguments": "{}"}}],
                },
                "finish_reason": "tool_calls",
            }
        ],
        "usage": {
            "prompt_tokens": 7,
            "completion_tokens": 3,
            "total_tokens": 10,
            "prompt_tokens_details": {"cached_tokens": 2},
        },
    }
    response = response_from_chat(
        chat, {"model": "m", "input": "Hi", "store": False}, response_id="resp_x", created_at=5
    )

    assert (response["object"], response["id"], response["status"], response["store"]) == (
        "response",
        "resp_x",
        "completed",
        False,
    )
    message, call = response["output"]
    assert message["content"][0] == {"type": "output_text", "text": "Checking.", "annotations": [], "logprobs": []}
    assert (call["type"], call["call_id"], call["name"], call["arguments"]) == ("function_call", "call_9", "f", "{}")
    assert response["usage"]["input_tokens_details"] == {"cached_tokens": 2, "cache_write_tokens": 0}
    assert usage_for_chat(response["usage"])["prompt_tokens"] == 7  # type: ignore[index]


def test_a_chat_answer_cut_at_its_cap_is_incomplete() -> None:
    chat = {"choices": [{"message": {"content": "Trunc"}, "finish_reason": "length"}]}
    response = response_from_chat(chat, {"model": "m"}, response_id="resp_x", created_at=5)
    assert (response["status"], response["incomplete_details"]) == ("incomplete", {"reason": "max_output_tokens"})


def test_usage_reads_the_same_in_both_apis() -> None:
    usage = {"prompt_tokens": 4, "completion_tokens": 6, "total_tokens": 10}
    assert usage_for_chat(usage_from_chat(usage)) == {
        **usage,
        "prompt_tokens_details": {"cached_tokens": 0},
        "completion_tokens_details": {"reasoning_tokens": 0},
    }


def _bridge(body: dict[str, Any]) -> dict[str, Any]:
    validate_responses_request(body)
    return chat_body(body)


def _events(frames: bytes) -> list[dict[str, Any]]:
    """Each frame's data, checked to be named for its type."""
    events = []
    for block in frames.split(b"\n\n")[:-1]:
        name, data = block.split(b"\n")
        event = orjson.loads(data.removeprefix(b"data: "))
        assert name == b"event: " + event["type"].encode()
        events.append(event)
    return events


def test_a_chat_stream_becomes_the_typed_events_in_order() -> None:
    writer = ChatToEvents({"model": "m"}, response_id="resp_s", model="m", created_at=1)
    frames = writer.start()
    frames += writer.feed({"choices": [{"index": 0, "delta": {"role": "assistant", "content": "Hel"}}]})
    frames += writer.feed({"choices": [{"index": 0, "delta": {"content": "lo"}}]})
    call = {"index": 0, "id": "call_1", "function": {"name": "f", "arguments": '{"a"'}}
    frames += writer.feed({"choices": [{"index": 0, "delta": {"tool_calls": [call]}}]})
    frames += writer.feed(
        {"choices": [{"index": 0, "delta": {"tool_calls": [{"index": 0, "function": {"arguments": ":1}"}}]}}]}
    )
    frames += writer.feed({"choices": [{"index": 0, "delta": {}, "finish_reason": "tool_calls"}]})
    frames += writer.feed({"choices": [], "usage": {"prompt_tokens": 2, "completion_tokens": 3, "total_tokens": 5}})
    frames += writer.finish()
    events = _events(frames)

    assert [event["type"] for event in events] == [
        "response.created",
        "response.in_progress",
        "response.output_item.added",
        "response.content_part.added",
        "response.output_text.delta",
        "response.output_text.delta",
        "response.output_text.done",
        "response.content_part.done",
        "response.output_item.done",
        "response.output_item.added",
        "response.function_call_arguments.delta",
        "response.function_call_arguments.delta",
        "response.function_call_arguments.done",
        "response.output_item.done",
        "response.completed",
    ]
    assert [event["sequence_number"] for event in events] == list(range(len(events)))
    assert frames.startswith(b"event: response.created\ndata: ")
    final = events[-1]["response"]
    assert [item["type"] for item in final["output"]] == ["message", "function_call"]
    assert final["output"][1]["arguments"] == '{"a":1}'
    assert final["usage"]["total_tokens"] == 5


def test_a_broken_stream_ends_with_response_failed_then_an_error_event() -> None:
    writer = ChatToEvents({"model": "m"}, response_id="resp_s", model="m", created_at=1)
    events = _events(
        writer.start() + writer.fail({"message": "gone", "type": "api_error", "code": "upstream_unreachable"})
    )
    assert [event["type"] for event in events][-2:] == ["response.failed", "error"]
    # The spec's response error codes do not include Portico's own; the error event that follows keeps it.
    assert events[-2]["response"]["error"] == {"code": "server_error", "message": "gone"}
    assert (events[-1]["message"], events[-1]["code"]) == ("gone", "upstream_unreachable")


def test_a_passed_through_stream_is_renamed_and_its_end_and_usage_noted() -> None:
    translator = ResponsesPassThrough("public-model")
    created = orjson.dumps({"type": "response.created", "response": {"model": "upstream-model"}})
    done = orjson.dumps(
        {
            "type": "response.completed",
            "response": {"model": "upstream-model", "usage": {"input_tokens": 3, "output_tokens": 4}},
        }
    )

    [renamed] = translator.feed(created)
    assert orjson.loads(renamed)["response"]["model"] == "public-model"
    assert not translator.done
    list(translator.feed(done))
    assert translator.done
    assert translator.usage is not None
    assert (translator.usage["prompt_tokens"], translator.usage["completion_tokens"]) == (3, 4)
    assert list(translator.feed(orjson.dumps({"type": "error", "message": "x"})))
    assert translator.failed
