"""Portico's Responses API objects and stream events, checked against OpenAI's published schemas.

The SDKs read these leniently, so a field of the wrong type (a `user` of null, a usage missing a
required count) would only show with a strict client: each object is validated as the raw JSON.
"""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from gateway.responses.answers import response_from_chat, usage_from_chat
from gateway.responses.events import ChatToEvents
from tests.openai_schemas import assert_valid, schema

USAGE = {
    "prompt_tokens": 7,
    "completion_tokens": 3,
    "total_tokens": 10,
    "prompt_tokens_details": {"cached_tokens": 2, "cache_creation_tokens": 4},
}
CHAT = {
    "id": "chatcmpl-1",
    "object": "chat.completion",
    "created": 1,
    "model": "house-model",
    "choices": [
        {
            "index": 0,
            "message": {"role": "assistant", "content": "Hi there", "refusal": None},
            "logprobs": None,
            "finish_reason": "stop",
        }
    ],
    "usage": USAGE,
}


def _events(frames: bytes) -> list[dict[str, Any]]:
    return [orjson.loads(line[6:]) for line in frames.split(b"\n") if line.startswith(b"data: ")]


def _component(event_type: str) -> str:
    for choice in schema("ResponseStreamEvent")["anyOf"]:
        name = choice["$ref"].rsplit("/", 1)[1]
        if schema(name)["properties"]["type"].get("enum") == [event_type]:
            return name
    raise AssertionError(f"OpenAI's spec has no Responses stream event {event_type!r}")


@pytest.mark.parametrize("request_fields", [{}, {"user": "user-7"}], ids=["no user", "a user"])
def test_a_response_from_a_chat_completion_is_in_openais_schema(request_fields: dict[str, Any]) -> None:
    asked = {"model": "house-model", "input": "Hi", **request_fields}

    response = response_from_chat(CHAT, asked, response_id="resp_1", created_at=1)

    assert_valid("Response", response)
    assert response.get("user") == request_fields.get("user")
    assert response["usage"]["input_tokens_details"] == {"cached_tokens": 2, "cache_write_tokens": 4}


def test_a_usage_without_cache_writes_reports_none_written() -> None:
    usage = usage_from_chat({"prompt_tokens": 5, "completion_tokens": 1, "total_tokens": 6})

    assert usage is not None
    assert usage["input_tokens_details"] == {"cached_tokens": 0, "cache_write_tokens": 0}


def test_every_event_of_a_streamed_response_is_in_openais_schema() -> None:
    writer = ChatToEvents(
        {"model": "house-model", "input": "Hi"}, response_id="resp_1", model="house-model", created_at=1
    )
    call = {"index": 0, "id": "call_1", "function": {"name": "get_weather", "arguments": "{}"}}

    frames = writer.start()
    frames += writer.feed({"choices": [{"index": 0, "delta": {"content": "Hi"}}]})
    frames += writer.feed({"choices": [{"index": 0, "delta": {"tool_calls": [call]}, "finish_reason": "tool_calls"}]})
    frames += writer.feed({"choices": [], "usage": USAGE})
    frames += writer.finish()
    events = _events(frames)

    for event in events:
        assert_valid(_component(event["type"]), event)
    assert "usage" not in events[0]["response"]  # no usage yet: left out, as the spec has no null for it
    assert events[-1]["response"]["usage"]["total_tokens"] == 10


@pytest.mark.parametrize("code", ["upstream_unreachable", "rate_limit_exceeded", None])
def test_a_failed_stream_ends_with_events_in_openais_schema(code: str | None) -> None:
    writer = ChatToEvents(
        {"model": "house-model", "input": "Hi"}, response_id="resp_1", model="house-model", created_at=1
    )

    events = _events(writer.start() + writer.fail({"message": "gone", "type": "api_error", "code": code}))

    for event in events:
        assert_valid(_component(event["type"]), event)
    failed, error = events[-2:]
    assert failed["response"]["error"]["code"] == (
        "rate_limit_exceeded" if code == "rate_limit_exceeded" else "server_error"
    )
    assert error["code"] == (code or "api_error")  # the client's own error event keeps Portico's code
