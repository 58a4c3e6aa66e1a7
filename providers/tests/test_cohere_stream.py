"""Cohere API v2 stream events in, OpenAI chunks out: exact sequences."""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from providers.adapters.cohere import CohereStream
from providers.redaction import Redactor

CREATED = 1_700_000_000
USAGE = {"billed_units": {"input_tokens": 5, "output_tokens": 3}, "tokens": {"input_tokens": 71, "output_tokens": 3}}
OPENAI_USAGE = {"prompt_tokens": 71, "completion_tokens": 3, "total_tokens": 74}


def event(kind: str, **fields: Any) -> bytes:
    return orjson.dumps({"type": kind, **fields})


def start() -> bytes:
    message = {"role": "assistant", "content": [], "tool_plan": "", "tool_calls": [], "citations": []}
    return event("message-start", id="c14c80c3", delta={"message": message})


def text(piece: str, kind: str = "content-delta") -> bytes:
    return event(kind, index=0, delta={"message": {"content": {"text": piece}}})


def end(reason: str = "COMPLETE", usage: Any = USAGE, **extra: Any) -> bytes:
    return event("message-end", delta={"finish_reason": reason, "usage": usage, **extra})


def call_start(index: int, call_id: str, name: str) -> bytes:
    call = {"id": call_id, "type": "function", "function": {"name": name, "arguments": ""}}
    return event("tool-call-start", index=index, delta={"message": {"tool_calls": call}})


def call_delta(index: int, fragment: str) -> bytes:
    return event(
        "tool-call-delta", index=index, delta={"message": {"tool_calls": {"function": {"arguments": fragment}}}}
    )


def run(
    events: list[bytes], *, include_usage: bool = False, redactor: Redactor | None = None
) -> tuple[CohereStream, list[dict[str, Any]]]:
    stream = CohereStream(
        "house-model", created=CREATED, include_usage=include_usage, redactor=redactor or Redactor(())
    )
    out = [orjson.loads(payload) for each in events for payload in stream.feed(each)]
    return stream, out


def deltas(chunks: list[dict[str, Any]]) -> list[tuple[dict[str, Any], str | None]]:
    return [
        (chunk["choices"][0]["delta"], chunk["choices"][0]["finish_reason"]) for chunk in chunks if chunk["choices"]
    ]


def test_a_text_stream_becomes_content_deltas_then_the_finish() -> None:
    events = [
        start(),
        event("content-start", index=0, delta={"message": {"content": {"type": "text", "text": ""}}}),
        text("Hello"),
        text(" there"),
        event("content-end", index=0),
        end(),
    ]

    stream, chunks = run(events)

    assert deltas(chunks) == [
        ({"role": "assistant", "content": ""}, None),
        ({"content": "Hello"}, None),
        ({"content": " there"}, None),
        ({}, "stop"),
    ]
    assert {chunk["id"] for chunk in chunks} == {chunks[0]["id"]}
    assert chunks[0]["id"].startswith("chatcmpl-")
    assert {(chunk["object"], chunk["created"], chunk["model"]) for chunk in chunks} == {
        ("chat.completion.chunk", CREATED, "house-model")
    }
    assert all("usage" not in chunk for chunk in chunks)
    assert (stream.done, stream.failed, stream.usage, stream.upstream_id) == (True, False, OPENAI_USAGE, "c14c80c3")


def test_usage_is_a_last_chunk_only_when_asked_for_and_null_before_it() -> None:
    _, chunks = run([start(), text("Hi"), end()], include_usage=True)

    assert [chunk["usage"] for chunk in chunks] == [None, None, None, OPENAI_USAGE]
    assert chunks[-1]["choices"] == []


def test_a_stream_without_counts_leaves_usage_to_the_gateway() -> None:
    stream, chunks = run([start(), text("Hi"), end(usage=None)], include_usage=True)

    assert stream.usage is None
    assert chunks[-1]["choices"][0]["finish_reason"] == "stop"


def test_the_tool_plan_is_content_and_each_call_opens_then_gets_its_argument_fragments() -> None:
    events = [
        start(),
        event("tool-plan-delta", delta={"message": {"tool_plan": "I will"}}),
        event("tool-plan-delta", delta={"message": {"tool_plan": " check."}}),
        call_start(0, "get_weather_a", "get_weather"),
        call_delta(0, '{"city":'),
        call_delta(0, '"Paris"}'),
        event("tool-call-end", index=0),
        call_start(1, "get_time_b", "get_time"),
        call_delta(1, "{}"),
        event("tool-call-end", index=1),
        end("TOOL_CALL"),
    ]

    _, chunks = run(events)

    opened = {"type": "function", "function": {"name": "get_weather", "arguments": ""}}
    assert deltas(chunks) == [
        ({"role": "assistant", "content": ""}, None),
        ({"content": "I will"}, None),
        ({"content": " check."}, None),
        ({"tool_calls": [{"index": 0, "id": "get_weather_a", **opened}]}, None),
        ({"tool_calls": [{"index": 0, "function": {"arguments": '{"city":'}}]}, None),
        ({"tool_calls": [{"index": 0, "function": {"arguments": '"Paris"}'}}]}, None),
        (
            {
                "tool_calls": [
                    {
                        "index": 1,
                        "id": "get_time_b",
                        "type": "function",
                        "function": {"name": "get_time", "arguments": ""},
                    }
                ]
            },
            None,
        ),
        ({"tool_calls": [{"index": 1, "function": {"arguments": "{}"}}]}, None),
        ({}, "tool_calls"),
    ]


@pytest.mark.parametrize(
    ("reason", "expected"),
    [("COMPLETE", "stop"), ("STOP_SEQUENCE", "stop"), ("MAX_TOKENS", "length"), ("TOOL_CALL", "tool_calls")],
)
def test_the_finish_reason_is_openais(reason: str, expected: str) -> None:
    _, chunks = run([start(), text("Hi"), end(reason)])

    assert chunks[-1]["choices"][0]["finish_reason"] == expected


def test_thinking_and_citations_are_not_relayed() -> None:
    events = [
        start(),
        event("content-delta", index=0, delta={"message": {"content": {"thinking": "secret reasoning"}}}),
        event("citation-start", index=0, delta={"message": {"citations": {"start": 0, "end": 2, "text": "Hi"}}}),
        text("Hi", "content-delta"),
        end(),
    ]

    _, chunks = run(events)

    assert b"secret reasoning" not in b"".join(orjson.dumps(chunk) for chunk in chunks)
    assert [delta for delta, _ in deltas(chunks)][1:] == [{"content": "Hi"}, {}]


@pytest.mark.parametrize("reason", ["ERROR", "TIMEOUT"])
def test_a_failed_end_is_an_openai_error_payload_and_marks_the_stream_failed(reason: str) -> None:
    stream, chunks = run([start(), text("partial"), end(reason, usage=None)])

    assert chunks[-1] == {
        "error": {
            "message": f"The upstream provider failed: the generation ended with {reason}.",
            "type": "api_error",
            "param": None,
            "code": None,
        }
    }
    assert (stream.done, stream.failed) == (False, True)


def test_secrets_quoted_in_events_are_redacted() -> None:
    _, chunks = run(
        [start(), text("the key is sk-secret-123"), end("ERROR", error="bad sk-secret-123")],
        redactor=Redactor(("sk-secret-123",)),
    )

    assert b"sk-secret-123" not in b"".join(orjson.dumps(chunk) for chunk in chunks)
    assert "bad" in chunks[-1]["error"]["message"]


@pytest.mark.parametrize("payload", [b"[]", b"[1, 2]", b'"message-end"', b"42", b"null"])
def test_an_event_that_is_not_an_object_is_malformed(payload: bytes) -> None:
    with pytest.raises(ValueError, match="not a Cohere stream event"):
        run([start(), payload])
