"""The Anthropic adapter's streams: recorded Messages streams in, OpenAI chunks out, event by event."""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from providers.adapters.anthropic import AnthropicAdapter, AnthropicStream
from providers.adapters.base import Target
from providers.redaction import Redactor
from providers.tests.factories import UPSTREAM_CREDENTIAL as CREDENTIAL
from providers.tests.factories import make_provider_info
from tests.fakes.anthropic_upstream import recording_events

TARGET = Target(make_provider_info(kind="anthropic"), upstream_model="claude-upstream", public_model="house-claude")
ADAPTER = AnthropicAdapter(clock=lambda: 1_750_000_000.0)


def translator(*, include_usage: bool = False) -> AnthropicStream:
    return ADAPTER.stream_translator("chat", TARGET, include_usage=include_usage, redactor=Redactor([CREDENTIAL]))


def data_of(recording: str) -> list[bytes]:
    """The `data:` payloads of a recording, as the relay hands them over."""
    return [
        line.removeprefix(b"data:").strip()
        for event in recording_events(recording)
        for line in event.split(b"\n")
        if line.startswith(b"data:")
    ]


def translate(recording: str, *, include_usage: bool = False) -> tuple[AnthropicStream, list[dict[str, Any]]]:
    stream = translator(include_usage=include_usage)
    chunks = [orjson.loads(out) for event in data_of(recording) for out in stream.feed(event)]
    return stream, chunks


def deltas(chunks: list[dict[str, Any]]) -> list[tuple[dict[str, Any], str | None]]:
    return [
        (chunk["choices"][0]["delta"], chunk["choices"][0]["finish_reason"]) for chunk in chunks if chunk["choices"]
    ]


def call(index: int, arguments: str) -> dict[str, Any]:
    return {"tool_calls": [{"index": index, "function": {"arguments": arguments}}]}


def opening(index: int, call_id: str, name: str) -> dict[str, Any]:
    call = {"index": index, "id": call_id, "type": "function", "function": {"name": name, "arguments": ""}}
    return {"tool_calls": [call]}


TOOL_CALL_DELTAS = [
    ({"role": "assistant", "content": ""}, None),
    ({"content": "I'll check both"}, None),
    ({"content": " cities at once."}, None),
    (opening(0, "toolu_01WeatherParis4kq", "get_weather"), None),
    (call(0, '{"city": "Par'), None),
    (call(0, 'is", "unit": "celsius"}'), None),
    (opening(1, "toolu_01WeatherTokyo8mz", "get_weather"), None),
    (call(1, '{"city": "Tokyo"'), None),
    (call(1, ', "unit": "celsius"}'), None),
    (opening(2, "toolu_01LocalTimeTokyo2x", "get_local_time"), None),
    (call(2, '{"timezone": "Asia/Tokyo"}'), None),
    ({}, "tool_calls"),
]
TOOL_CALL_USAGE = {
    "prompt_tokens": 2460,
    "completion_tokens": 131,
    "total_tokens": 2591,
    "prompt_tokens_details": {"cached_tokens": 2048, "cache_creation_tokens": 0},
    "completion_tokens_details": {"reasoning_tokens": 0},
}
# What the client sees of it: OpenAI's fields only (cache creation goes to the ledger and a header).
CLIENT_TOOL_CALL_USAGE = {**TOOL_CALL_USAGE, "prompt_tokens_details": {"cached_tokens": 2048}}


def test_parallel_tool_calls_stream_as_openai_tool_call_deltas() -> None:
    stream, chunks = translate("parallel_tool_calls")

    assert deltas(chunks) == TOOL_CALL_DELTAS
    assert all(chunk["choices"] for chunk in chunks), "no usage chunk unless the client asked for one"
    assert stream.done
    assert stream.usage == TOOL_CALL_USAGE


def test_a_client_that_asked_for_usage_gets_it_in_a_last_chunk_of_its_own() -> None:
    stream, chunks = translate("parallel_tool_calls", include_usage=True)

    assert deltas(chunks) == TOOL_CALL_DELTAS
    assert chunks[-1] == {
        "id": chunks[0]["id"],
        "object": "chat.completion.chunk",
        "created": 1_750_000_000,
        "model": "house-claude",
        "choices": [],
        "usage": CLIENT_TOOL_CALL_USAGE,
    }


def test_every_chunk_carries_the_openai_envelope() -> None:
    stream, chunks = translate("text_answer", include_usage=True)

    assert stream.upstream_id == "msg_01TextAnswer7Qw3sXkBv"
    assert chunks[0]["id"].startswith("chatcmpl-")
    assert "msg_" not in chunks[0]["id"]
    for chunk in chunks[:-1]:
        assert chunk["id"] == chunks[0]["id"]
        assert (chunk["object"], chunk["created"], chunk["model"]) == (
            "chat.completion.chunk",
            1_750_000_000,
            "house-claude",
        )
        assert [{**choice, "delta": None, "finish_reason": None} for choice in chunk["choices"]] == [
            {"index": 0, "delta": None, "logprobs": None, "finish_reason": None}
        ]


@pytest.mark.parametrize(
    ("recording", "expected", "usage"),
    [
        pytest.param(
            "text_answer",
            [
                ({"role": "assistant", "content": ""}, None),
                ({"content": "The capital"}, None),
                ({"content": " of France is"}, None),
                ({"content": " Paris."}, None),
                ({}, "stop"),
            ],
            (21, 9, 0, 0),
            id="text",
        ),
        pytest.param(
            "thinking",
            [
                ({"role": "assistant", "content": ""}, None),
                ({"content": "27 × 453"}, None),
                ({"content": " = 12,231."}, None),
                ({}, "stop"),
            ],
            (158, 57, 0, 120),
            id="thinking-not-relayed",
        ),
    ],
)
def test_recorded_streams_translate(
    recording: str, expected: list[tuple[dict[str, Any], str | None]], usage: tuple[int, int, int, int]
) -> None:
    stream, chunks = translate(recording)

    assert deltas(chunks) == expected
    assert stream.done
    assert stream.usage is not None
    details = stream.usage["prompt_tokens_details"]
    got = (stream.usage["prompt_tokens"], stream.usage["completion_tokens"], *details.values())
    assert got == usage


def test_usage_is_known_from_message_delta_and_done_only_at_message_stop() -> None:
    events = data_of("text_answer")
    stream = translator()

    seen = []
    for event in events:
        list(stream.feed(event))
        seen.append((orjson.loads(event)["type"], stream.usage is not None, stream.done))

    assert seen[-3:] == [
        ("content_block_stop", False, False),
        ("message_delta", True, False),
        ("message_stop", True, True),
    ]
    assert all(not usage and not done for _, usage, done in seen[:-2])


def test_a_stream_cut_off_midway_is_not_done() -> None:
    stream = translator(include_usage=True)

    for event in data_of("parallel_tool_calls")[:8]:
        list(stream.feed(event))

    assert not stream.done
    assert stream.usage is None


def test_an_overloaded_error_mid_stream_becomes_an_openai_error_payload() -> None:
    stream, chunks = translate("overloaded_midstream", include_usage=True)

    assert [delta for delta, _ in deltas(chunks[:-1])] == [
        {"role": "assistant", "content": ""},
        {"content": "Once upon"},
        {"content": " a time"},
    ]
    assert chunks[-1] == {
        "error": {
            "message": "The upstream provider failed: Overloaded",
            "type": "api_error",
            "param": None,
            "code": "overloaded",
        }
    }
    assert stream.failed
    assert not stream.done


@pytest.mark.parametrize(
    ("error", "expected"),
    [
        pytest.param(
            {"type": "rate_limit_error", "message": "Slow down"},
            {"message": "Slow down", "type": "requests", "param": None, "code": "rate_limit_exceeded"},
            id="rate-limit",
        ),
        pytest.param(
            {"type": "api_error", "message": "Internal server error"},
            {
                "message": "The upstream provider failed: Internal server error",
                "type": "api_error",
                "param": None,
                "code": None,
            },
            id="api-error",
        ),
        pytest.param(
            {"type": "invalid_request_error", "message": f"key {CREDENTIAL} is odd"},
            {"message": "key [redacted] is odd", "type": "invalid_request_error", "param": None, "code": None},
            id="credential-redacted",
        ),
        pytest.param(
            {"type": "authentication_error", "message": f"invalid x-api-key {CREDENTIAL[:10]}"},
            {
                "message": "The upstream provider refused the gateway's credentials; an operator must check the provider.",  # noqa: E501
                "type": "api_error",
                "param": None,
                "code": "upstream_auth_error",
            },
            id="auth-never-quoted",
        ),
        pytest.param(
            {"type": "brand_new_error", "message": "Hm"},
            {"message": "The upstream provider failed: Hm", "type": "api_error", "param": None, "code": None},
            id="unknown-type",
        ),
    ],
)
def test_error_events_are_mapped_like_error_answers(error: dict[str, Any], expected: dict[str, Any]) -> None:
    (payload,) = translator().feed(orjson.dumps({"type": "error", "error": error}))

    assert orjson.loads(payload) == {"error": expected}
    assert CREDENTIAL.encode() not in payload


@pytest.mark.parametrize(
    "event",
    [
        {"type": "ping"},
        {"type": "content_block_stop", "index": 0},
        {"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}},
        {"type": "content_block_start", "index": 0, "content_block": {"type": "redacted_thinking", "data": "Emw"}},
        {"type": "content_block_delta", "index": 0, "delta": {"type": "thinking_delta", "thinking": "Hmm"}},
        {"type": "content_block_delta", "index": 0, "delta": {"type": "signature_delta", "signature": "EqQB"}},
        {"type": "content_block_delta", "index": 0, "delta": {"type": "input_json_delta", "partial_json": ""}},
        {"type": "message_delta", "delta": {"stop_reason": "end_turn"}, "usage": {"output_tokens": 3}},
        {"type": "a_future_event"},
    ],
)
def test_events_with_nothing_to_say_produce_no_chunk(event: dict[str, Any]) -> None:
    assert list(translator().feed(orjson.dumps(event))) == []


@pytest.mark.parametrize(
    ("stop_reason", "finish_reason"),
    [("max_tokens", "length"), ("stop_sequence", "stop"), ("refusal", "content_filter"), ("pause_turn", "stop")],
)
def test_the_last_chunk_maps_the_stop_reason(stop_reason: str, finish_reason: str) -> None:
    stream = translator()
    list(stream.feed(orjson.dumps({"type": "message_delta", "delta": {"stop_reason": stop_reason}, "usage": {}})))

    (last,) = stream.feed(b'{"type":"message_stop"}')

    assert orjson.loads(last)["choices"][0] == {
        "index": 0,
        "delta": {},
        "logprobs": None,
        "finish_reason": finish_reason,
    }


@pytest.mark.parametrize("payload", [b"[]", b"[1, 2]", b'"message_stop"', b"42", b"null"])
def test_an_event_that_is_not_an_object_is_malformed(payload: bytes) -> None:
    with pytest.raises(ValueError, match="not an Anthropic stream event"):
        translator().feed(payload)
