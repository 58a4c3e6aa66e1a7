"""Streams on the Messages surface: chat chunks as Anthropic events, pass-through events, re-framing."""

from __future__ import annotations

from collections.abc import AsyncGenerator
from typing import Any

import orjson

from gateway.messages.events import ChunkEvents, frame_event
from gateway.messages.passthrough import AnthropicEvents, Outbound, upstream_request
from gateway.messages.reframe import reframed
from gateway.sse import EventStream
from providers.redaction import Redactor
from providers.tests.factories import make_provider_info


def _chunk(delta: dict[str, Any], finish: str | None = None, **choice: Any) -> dict[str, Any]:
    return {
        "object": "chat.completion.chunk",
        "choices": [{"index": 0, "delta": delta, "finish_reason": finish, **choice}],
    }


def _run(chunks: list[dict[str, Any]], *, thinking: bool = False) -> list[dict[str, Any]]:
    writer = ChunkEvents(message_id="msg_1", model="pub", stop_sequences=["END"], thinking=thinking, input_tokens=3)
    events = [event for chunk in chunks for event in writer.feed(chunk)]
    return events + writer.end()


def _shape(events: list[dict[str, Any]]) -> list[tuple[Any, ...]]:
    return [
        (event["type"], event.get("index"), (event.get("delta") or event.get("content_block") or {}).get("type"))
        for event in events
    ]


def test_text_chunks_make_one_text_block_between_start_and_stop() -> None:
    usage = {"object": "chat.completion.chunk", "choices": [], "usage": {"prompt_tokens": 9, "completion_tokens": 2}}

    events = _run(
        [
            _chunk({"role": "assistant", "content": ""}),
            _chunk({"content": "Hi"}),
            _chunk({"content": " there"}),
            _chunk({}, "stop"),
            usage,
        ]
    )

    assert _shape(events) == [
        ("message_start", None, None),
        ("ping", None, None),
        ("content_block_start", 0, "text"),
        ("content_block_delta", 0, "text_delta"),
        ("content_block_delta", 0, "text_delta"),
        ("content_block_stop", 0, None),
        ("message_delta", None, None),
        ("message_stop", None, None),
    ]
    assert events[0]["message"]["model"] == "pub"
    assert events[-2]["delta"] == {"stop_reason": "end_turn", "stop_sequence": None}
    assert events[-2]["usage"] == {
        "input_tokens": 9,
        "cache_creation_input_tokens": 0,
        "cache_read_input_tokens": 0,
        "output_tokens": 2,
    }


def test_reasoning_is_a_thinking_block_only_when_asked_for() -> None:
    chunks = [_chunk({"reasoning_content": "Hmm."}), _chunk({"content": "Yes."}), _chunk({}, "stop")]

    assert [shape for shape in _shape(_run(chunks, thinking=True)) if shape[0] == "content_block_start"] == [
        ("content_block_start", 0, "thinking"),
        ("content_block_start", 1, "text"),
    ]
    assert [shape for shape in _shape(_run(chunks)) if shape[0] == "content_block_start"] == [
        ("content_block_start", 0, "text")
    ]


def test_each_tool_call_is_a_tool_use_block_fed_its_arguments() -> None:
    def call(index: int, **fields: Any) -> dict[str, Any]:
        return _chunk({"tool_calls": [{"index": index, **fields}]})

    events = _run(
        [
            _chunk({"content": "Checking."}),
            call(0, id="a", function={"name": "f", "arguments": ""}),
            call(0, function={"arguments": '{"x":'}),
            call(1, id="b", function={"name": "g", "arguments": "{}"}),
            call(0, function={"arguments": "1}"}),  # interleaved: still the first call's block
            _chunk({}, "tool_calls"),
        ]
    )

    starts = [event["content_block"] for event in events if event["type"] == "content_block_start"]
    assert starts[1:] == [
        {"type": "tool_use", "id": "a", "name": "f", "input": {}},
        {"type": "tool_use", "id": "b", "name": "g", "input": {}},
    ]
    fragments = [
        (event["index"], event["delta"]["partial_json"])
        for event in events
        if event["type"] == "content_block_delta" and event["index"]
    ]
    assert fragments == [(1, '{"x":'), (2, "{}"), (1, "1}")]
    assert events[-2]["delta"]["stop_reason"] == "tool_use"


def test_a_named_stop_sequence_ends_the_message_with_it() -> None:
    events = _run([_chunk({"content": "Done"}), _chunk({}, "stop", stop_reason="END")])

    assert events[-2]["delta"] == {"stop_reason": "stop_sequence", "stop_sequence": "END"}
    assert events[-2]["usage"]["input_tokens"] == 3  # no usage chunk: the admission's estimate


def test_an_empty_stream_still_opens_and_closes_the_message() -> None:
    assert [event["type"] for event in _run([])] == ["message_start", "ping", "message_delta", "message_stop"]


def test_pass_through_events_are_relayed_with_the_public_model_and_usage_noted() -> None:
    translator = AnthropicEvents("pub", Redactor(["sk-ant-secret-123456"]))
    start = {
        "type": "message_start",
        "message": {"model": "claude-x", "usage": {"input_tokens": 5, "output_tokens": 1}},
    }
    delta = b'{"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"key sk-ant-secret-123456"}}'

    first = list(translator.feed(orjson.dumps(start)))
    second = list(translator.feed(delta))
    list(translator.feed(b'{"type":"message_delta","delta":{"stop_reason":"end_turn"},"usage":{"output_tokens":4}}'))
    list(translator.feed(b'{"type":"message_stop"}'))

    assert orjson.loads(first[0])["message"]["model"] == "pub"
    assert b"sk-ant-secret" not in second[0]
    assert translator.done
    assert not translator.failed
    assert translator.usage is not None
    assert (translator.usage["prompt_tokens"], translator.usage["completion_tokens"]) == (5, 4)


def test_an_upstream_error_event_marks_the_stream_failed() -> None:
    translator = AnthropicEvents("pub", Redactor([]))

    out = list(translator.feed(b'{"type":"error","error":{"type":"overloaded_error","message":"Overloaded"}}'))

    assert translator.failed
    assert orjson.loads(out[0])["error"]["type"] == "overloaded_error"


def test_the_pass_through_request_keeps_the_body_and_the_clients_anthropic_headers() -> None:
    provider = make_provider_info(
        kind="anthropic", base_url="https://api.anthropic.test/v1", extra_headers={"Anthropic-Beta": "ours"}
    )
    route: Any = type("Route", (), {"provider": provider, "upstream_model": "claude-up"})()

    request = upstream_request(route, Outbound({"model": "pub", "max_tokens": 5, "top_k": 2}, "2023-06-01", "theirs"))

    assert request.url == "https://api.anthropic.test/v1/messages"
    assert orjson.loads(request.content) == {"model": "claude-up", "max_tokens": 5, "top_k": 2}  # type: ignore[arg-type]
    assert request.headers["anthropic-beta"] == "ours,theirs"
    assert request.headers["x-api-key"] == provider.credential


async def _frames(*pieces: bytes) -> AsyncGenerator[bytes]:
    for piece in pieces:
        yield piece


async def _release() -> None:
    return None


async def _read(stream: EventStream) -> bytes:
    out = b"".join([piece async for piece in stream.events])
    await stream.aclose()
    return out


async def test_a_translated_stream_is_reframed_with_event_lines_and_an_error_event() -> None:
    inner = EventStream(
        _frames(
            b"data: " + orjson.dumps(_chunk({"content": "Hi"})) + b"\n\n",
            b'data: {"error":{"message":"gone","type":"api_error","code":"upstream_timeout"}}\n\n',
        ),
        release=_release,
    )
    writer = ChunkEvents(message_id="msg_1", model="pub", stop_sequences=[], thinking=False)

    raw = await _read(reframed(inner, writer))

    assert raw.split(b"\n\n")[0].startswith(b"event: message_start\ndata: ")
    assert raw.endswith(frame_event({"type": "error", "error": {"type": "timeout_error", "message": "gone"}}))


async def test_a_passed_through_stream_gets_its_event_lines_and_loses_done() -> None:
    inner = EventStream(
        _frames(b'data: {"type":"ping"}\n\ndata: {"type":"message_stop"}\n\n', b"data: [DONE]\n\n"), release=_release
    )

    raw = await _read(reframed(inner, None))

    assert raw == b'event: ping\ndata: {"type":"ping"}\n\nevent: message_stop\ndata: {"type":"message_stop"}\n\n'
