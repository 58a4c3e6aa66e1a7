"""The Gemini adapter's streams: SSE events of GenerateContentResponse in, OpenAI chunks out, event by event."""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from providers.adapters.base import Target
from providers.adapters.framing import EventSplitter
from providers.adapters.gemini import GeminiAdapter, GeminiStream
from providers.redaction import Redactor
from providers.tests.factories import UPSTREAM_CREDENTIAL as CREDENTIAL
from providers.tests.factories import make_provider_info
from tests.fakes.gemini_upstream import CallTools, Reply, reply_events, tool_events
from tests.openai_schemas import assert_valid

TARGET = Target(make_provider_info(kind="gemini", base_url="https://g.test"), "gemini-2.5-flash", "house-gemini")
ADAPTER = GeminiAdapter(clock=lambda: 1_750_000_000.0)


def translator(*, include_usage: bool = False) -> GeminiStream:
    return ADAPTER.stream_translator("chat", TARGET, include_usage=include_usage, redactor=Redactor([CREDENTIAL]))


def wire(events: list[dict[str, Any]]) -> bytes:
    """The events as Gemini frames them on the wire."""
    return b"".join(b"data: " + orjson.dumps(event) + b"\r\n\r\n" for event in events)


def translate(
    events: list[dict[str, Any]], *, include_usage: bool = False
) -> tuple[GeminiStream, list[dict[str, Any]]]:
    """Split the wire bytes a few at a time, as they may arrive, and translate each event."""
    stream, splitter = translator(include_usage=include_usage), ADAPTER.splitter()
    chunks: list[dict[str, Any]] = []
    data = wire(events)
    for start in range(0, len(data), 7):
        for event in splitter.feed(data[start : start + 7]):
            chunks.extend(orjson.loads(out) for out in stream.feed(event))
    for chunk in chunks:
        assert_valid("CreateChatCompletionStreamResponse", chunk)
    return stream, chunks


def deltas(chunks: list[dict[str, Any]]) -> list[tuple[int, dict[str, Any], str | None]]:
    return [
        (choice["index"], choice["delta"], choice["finish_reason"]) for chunk in chunks for choice in chunk["choices"]
    ]


def test_the_splitter_is_sse() -> None:
    assert isinstance(ADAPTER.splitter(), EventSplitter)


def test_a_text_stream_is_a_role_chunk_the_words_and_the_finish() -> None:
    stream, chunks = translate(reply_events(Reply("Hello there friend", prompt_tokens=9), 1))

    assert deltas(chunks) == [
        (0, {"role": "assistant", "content": ""}, None),
        (0, {"content": "Hello"}, None),
        (0, {"content": " there"}, None),
        (0, {"content": " friend"}, None),
        (0, {}, "stop"),
    ]
    assert {(chunk["id"], chunk["created"], chunk["model"]) for chunk in chunks} == {
        (chunks[0]["id"], 1_750_000_000, "house-gemini")
    }
    assert (stream.done, stream.failed, stream.upstream_id) == (True, False, "fakeGeminiResponse01")
    assert stream.usage is not None
    assert (stream.usage["prompt_tokens"], stream.usage["completion_tokens"]) == (9, 3)


def test_the_usage_chunk_comes_last_only_when_asked_for() -> None:
    events = reply_events(Reply("One two", prompt_tokens=9, thoughts_tokens=4, cached_tokens=5), 1)

    _, asked = translate(events, include_usage=True)
    _, unasked = translate(events)

    assert asked[-1]["choices"] == []
    assert asked[-1]["usage"] == {
        "prompt_tokens": 9,
        "completion_tokens": 6,
        "total_tokens": 15,
        "prompt_tokens_details": {"cached_tokens": 5},
        "completion_tokens_details": {"reasoning_tokens": 4},
    }
    assert all("usage" not in chunk for chunk in asked[:-1])
    assert all("usage" not in chunk for chunk in unasked)
    assert len(asked) == len(unasked) + 1


def test_thoughts_are_not_relayed() -> None:
    _, chunks = translate(reply_events(Reply("Sunny", thoughts_tokens=12), 1))

    assert b"12231" not in orjson.dumps(chunks)
    assert [delta.get("content") for _, delta, _ in deltas(chunks)] == ["", "Sunny", None]


def test_function_calls_come_whole_numbered_per_choice_and_finish_with_tool_calls() -> None:
    _, chunks = translate(tool_events(CallTools(text="Checking.", signature="sig==")))

    out = deltas(chunks)
    assert out[:2] == [(0, {"role": "assistant", "content": ""}, None), (0, {"content": "Checking."}, None)]
    calls = [delta["tool_calls"][0] for _, delta, _ in out[2:4]]
    assert [(call["index"], call["type"], call["function"]) for call in calls] == [
        (0, "function", {"name": "get_weather", "arguments": '{"city":"Paris","unit":"celsius"}'}),
        (1, "function", {"name": "get_weather", "arguments": '{"city":"Tokyo","unit":"celsius"}'}),
    ]
    assert calls[0]["id"] != calls[1]["id"]
    assert calls[0]["extra_content"] == {"google": {"thought_signature": "sig=="}}
    assert out[4] == (0, {}, "tool_calls")


def test_several_candidates_stream_as_several_choices_and_the_stream_ends_when_all_finish() -> None:
    events = reply_events(Reply("A B"), 2)
    stream = translator(include_usage=True)

    first = [orjson.loads(out) for out in stream.feed(orjson.dumps(events[0]))]
    done_after_first = stream.done
    last = [orjson.loads(out) for out in stream.feed(orjson.dumps(events[1]))]

    assert [(i, d) for i, d, _ in deltas(first)] == [
        (0, {"role": "assistant", "content": ""}),
        (0, {"content": "A"}),
        (1, {"role": "assistant", "content": ""}),
        (1, {"content": "A"}),
    ]
    assert done_after_first is False
    assert deltas(last) == [
        (0, {"content": " B"}, None),
        (0, {}, "stop"),
        (1, {"content": " B"}, None),
        (1, {}, "stop"),
    ]
    assert last[-1]["usage"]["completion_tokens"] == 4
    assert stream.done


@pytest.mark.parametrize(("reason", "finish"), [("MAX_TOKENS", "length"), ("SAFETY", "content_filter")])
def test_the_finish_reason_is_mapped(reason: str, finish: str) -> None:
    _, chunks = translate(reply_events(Reply("Cut short", finish_reason=reason), 1))

    assert deltas(chunks)[-1] == (0, {}, finish)


def test_a_blocked_prompt_ends_the_stream_at_once_with_the_content_filter() -> None:
    event = {"promptFeedback": {"blockReason": "PROHIBITED_CONTENT"}, "usageMetadata": {"promptTokenCount": 8}}

    stream, chunks = translate([event], include_usage=True)

    assert deltas(chunks) == [(0, {"role": "assistant", "content": ""}, None), (0, {}, "content_filter")]
    assert chunks[-1]["usage"]["prompt_tokens"] == 8
    assert stream.done


def test_a_stream_without_a_finish_is_not_done() -> None:
    stream, chunks = translate(reply_events(Reply("never ends here"), 1)[:2])

    assert "".join(delta.get("content") or "" for _, delta, _ in deltas(chunks)) == "never ends"
    assert (stream.done, stream.failed) == (False, False)


def test_an_implausible_count_is_left_to_the_gateway() -> None:
    event = {"candidates": [{"content": {"parts": [{"text": "Hi"}]}, "finishReason": "STOP"}]}

    stream, chunks = translate([event], include_usage=True)

    assert stream.done
    assert stream.usage is None
    assert all(chunk["choices"] for chunk in chunks)  # the gateway sends its own usage chunk


def test_an_error_event_is_relayed_as_openais_error_and_marks_the_stream_failed() -> None:
    stream = translator()
    error = {"error": {"code": 503, "message": f"Overloaded (key {CREDENTIAL})", "status": "UNAVAILABLE"}}

    [payload] = stream.feed(orjson.dumps(error))

    assert stream.failed
    body = orjson.loads(payload)
    assert body == {
        "error": {
            "message": body["error"]["message"],
            "type": "api_error",
            "param": None,
            "code": None,
        }
    }
    assert "Overloaded" in body["error"]["message"]
    assert CREDENTIAL not in body["error"]["message"]


def test_text_quoting_the_key_is_redacted() -> None:
    event = {"candidates": [{"content": {"parts": [{"text": f"the key is {CREDENTIAL}"}]}, "index": 0}]}

    out = b"".join(translator().feed(orjson.dumps(event)))

    assert CREDENTIAL.encode() not in out
    assert b"the key is" in out


def test_an_event_that_is_not_an_object_is_malformed() -> None:
    with pytest.raises(ValueError, match="not a Gemini stream event"):
        translator().feed(b"[1, 2]")
