"""A streamed miss put back together: the same whole answer a non-streamed request would have had, or nothing."""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from gateway.response_cache.assembly import StreamAssembler, keep_streamed
from gateway.response_cache.replies import storable, stream_of
from gateway.sse import DONE, EventStream, frame

USAGE = {"prompt_tokens": 11, "completion_tokens": 8, "total_tokens": 19}
HEAD = {"id": "chatcmpl-1", "object": "chat.completion.chunk", "created": 5, "model": "gpt-test"}


def chunk(delta: dict[str, Any], finish: str | None = None, index: int = 0, logprobs: Any = None) -> bytes:
    choice = {"index": index, "delta": delta, "logprobs": logprobs, "finish_reason": finish}
    return frame(orjson.dumps({**HEAD, "choices": [choice]}))


def assembled(*pieces: bytes, operation: str = "chat", usage: dict[str, Any] | None = None) -> dict[str, Any] | None:
    assembler = StreamAssembler(operation)
    for piece in pieces:
        assembler.feed(piece)
    return assembler.answer(usage)


def test_the_content_of_a_stream_becomes_one_message() -> None:
    answer = assembled(
        chunk({"role": "assistant", "content": ""}),
        chunk({"content": "Hello "}) + chunk({"content": "there."}),  # several events in one piece
        chunk({}, "stop"),
        DONE,
        usage={**USAGE, "cache_creation_input_tokens": 3},
    )

    assert answer is not None
    assert answer["object"] == "chat.completion"
    assert answer["id"] == "chatcmpl-1"
    assert answer["choices"] == [
        {
            "index": 0,
            "message": {"role": "assistant", "content": "Hello there."},
            "logprobs": None,
            "finish_reason": "stop",
        }
    ]
    assert answer["usage"] == USAGE  # the call's usage, as a client would have been shown it
    assert storable("chat", orjson.dumps(answer))


def test_events_split_across_pieces_are_joined() -> None:
    whole = chunk({"role": "assistant", "content": "Split"}) + chunk({}, "stop") + DONE

    answer = assembled(whole[:10], whole[10:37], whole[37:])

    assert answer is not None
    assert answer["choices"][0]["message"]["content"] == "Split"


def test_tool_call_fragments_are_joined_by_index() -> None:
    first = {"index": 0, "id": "call_1", "type": "function", "function": {"name": "look", "arguments": '{"q":'}}
    answer = assembled(
        chunk({"role": "assistant", "content": None, "tool_calls": [first]}),
        chunk({"tool_calls": [{"index": 0, "function": {"name": "up", "arguments": ' "x"}'}}]}),
        chunk({"tool_calls": [{"index": 1, "id": "call_2", "type": "function", "function": {"name": "f"}}]}),
        chunk({}, "tool_calls"),
        frame(orjson.dumps({**HEAD, "choices": [], "usage": USAGE})),
        DONE,
    )

    assert answer is not None
    message = answer["choices"][0]["message"]
    assert message["content"] is None
    assert message["tool_calls"] == [
        {"id": "call_1", "type": "function", "function": {"name": "lookup", "arguments": '{"q": "x"}'}},
        {"id": "call_2", "type": "function", "function": {"name": "f", "arguments": ""}},
    ]
    assert answer["usage"] == USAGE  # the stream's own usage chunk


def test_a_stored_answer_streamed_again_assembles_to_itself() -> None:
    stored = {
        "id": "chatcmpl-9",
        "object": "chat.completion",
        "created": 7,
        "model": "gpt-test",
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": "One."},
                "logprobs": None,
                "finish_reason": "stop",
            },
            {
                "index": 1,
                "message": {"role": "assistant", "content": "Two."},
                "logprobs": None,
                "finish_reason": "length",
            },
        ],
        "usage": USAGE,
    }

    assert assembled(stream_of("chat", stored, include_usage=True)) == stored


def test_a_completions_stream_becomes_a_text_completion() -> None:
    def text(value: str, finish: str | None = None) -> bytes:
        body = {"id": "cmpl-1", "object": "text_completion", "created": 5, "model": "m"}
        return frame(orjson.dumps({**body, "choices": [{"index": 0, "text": value, "finish_reason": finish}]}))

    answer = assembled(text("Once "), text("upon"), text("", "length"), DONE, operation="completions")

    assert answer is not None
    assert answer["choices"] == [{"index": 0, "text": "Once upon", "logprobs": None, "finish_reason": "length"}]
    assert storable("completions", orjson.dumps(answer))


@pytest.mark.parametrize(
    "pieces",
    [
        (chunk({"content": "cut short"}),),
        (chunk({"content": "x"}), frame(b'{"error": {"message": "upstream failed"}}'), DONE),
        (chunk({"content": "x"}, logprobs={"content": [{"token": "x", "logprob": -0.1}]}), chunk({}, "stop"), DONE),
        (frame(b"not json"), DONE),
        (DONE,),
    ],
    ids=["no [DONE]", "an error event", "logprobs", "garbage", "no choices"],
)
def test_anything_short_of_a_complete_stream_gives_nothing(pieces: tuple[bytes, ...]) -> None:
    answer = assembled(*pieces)
    assert answer is None or not storable("chat", orjson.dumps(answer))


class FakeCall:
    operation = "chat"
    usage = USAGE


async def test_the_relayed_stream_is_untouched_and_kept_only_at_its_end() -> None:
    pieces = [chunk({"role": "assistant", "content": "Hi"}), chunk({}, "stop"), DONE]
    released: list[bool] = []

    async def events():  # type: ignore[no-untyped-def]
        for piece in pieces:
            yield piece

    async def release() -> None:
        released.append(True)

    kept: list[dict[str, Any]] = []

    async def keep(answer: dict[str, Any]) -> None:
        kept.append(answer)

    stream = EventStream(events(), release=release)
    keep_streamed(stream, FakeCall(), keep)  # type: ignore[arg-type]

    relayed = []
    async for piece in stream.events:
        relayed.append(piece)
        assert not kept
    await stream.aclose()

    assert relayed == pieces
    assert [answer["choices"][0]["message"]["content"] for answer in kept] == ["Hi"]
    assert released == [True]


async def test_a_stream_its_client_left_is_not_kept() -> None:
    async def events():  # type: ignore[no-untyped-def]
        yield chunk({"role": "assistant", "content": "Hi"})
        yield chunk({}, "stop")
        yield DONE

    kept: list[dict[str, Any]] = []

    async def keep(answer: dict[str, Any]) -> None:
        kept.append(answer)

    async def release() -> None:
        pass

    stream = EventStream(events(), release=release)
    keep_streamed(stream, FakeCall(), keep)  # type: ignore[arg-type]
    async for _piece in stream.events:
        break
    await stream.aclose()

    assert kept == []
