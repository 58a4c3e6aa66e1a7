"""Stored answers: only complete ones are stored; a hit is the same answer with a new id, whole or as chunks
that the official SDK reads back into the same message."""

from __future__ import annotations

from typing import Any

import orjson
import pytest
from openai.types import Completion
from openai.types.chat import ChatCompletion, ChatCompletionChunk

from gateway.response_cache.replies import fresh_answer, storable, stream_of

USAGE = {"prompt_tokens": 11, "completion_tokens": 8, "total_tokens": 19}


def chat_answer(*choices: dict[str, Any]) -> dict[str, Any]:
    return {
        "id": "chatcmpl-first",
        "object": "chat.completion",
        "created": 1_700_000_000,
        "model": "gpt-test",
        "system_fingerprint": "fp_1",
        "choices": list(choices)
        or [{"index": 0, "message": {"role": "assistant", "content": "Hello there."}, "finish_reason": "stop"}],
        "usage": USAGE,
    }


def events(body: bytes) -> list[bytes]:
    assert body.endswith(b"data: [DONE]\n\n")
    return [block.removeprefix(b"data: ") for block in body.split(b"\n\n")[:-2]]


@pytest.mark.parametrize("finish", ["stop", "length", "tool_calls"])
def test_a_finished_answer_is_storable(finish: str) -> None:
    answer = chat_answer({"index": 0, "message": {"role": "assistant", "content": "x"}, "finish_reason": finish})
    assert storable("chat", orjson.dumps(answer))


@pytest.mark.parametrize(
    "answer",
    [
        chat_answer({"index": 0, "message": {"role": "assistant", "content": "x"}, "finish_reason": "content_filter"}),
        chat_answer({"index": 0, "message": {"role": "assistant", "content": "x"}, "finish_reason": None}),
        {**chat_answer(), "choices": []},
        {**chat_answer(), "object": "queue.job"},
        {"error": {"message": "no"}},
    ],
    ids=["content filter", "unfinished", "no choices", "another object", "an error"],
)
def test_anything_else_is_not(answer: dict[str, Any]) -> None:
    assert not storable("chat", orjson.dumps(answer))


def test_a_chat_answer_is_not_stored_as_a_completion_nor_is_garbage() -> None:
    assert not storable("completions", orjson.dumps(chat_answer()))
    assert not storable("chat", b"not json")


def test_a_hit_gets_a_new_id_and_time_and_keeps_the_rest() -> None:
    stored = orjson.dumps(chat_answer())

    answer, first_id = fresh_answer("chat", stored)
    again, _ = fresh_answer("chat", stored)

    assert first_id == "chatcmpl-first"
    assert answer["id"].startswith("chatcmpl-")
    assert answer["id"] not in (first_id, again["id"])
    assert answer["created"] > 1_700_000_000
    assert ChatCompletion.model_validate(answer).choices[0].message.content == "Hello there."
    assert {k: v for k, v in answer.items() if k not in ("id", "created")} == {
        k: v for k, v in chat_answer().items() if k not in ("id", "created")
    }


def test_a_streamed_hit_is_the_chunks_of_the_same_message() -> None:
    answer, _ = fresh_answer("chat", orjson.dumps(chat_answer()))

    chunks = [
        ChatCompletionChunk.model_validate_json(data) for data in events(stream_of("chat", answer, include_usage=False))
    ]

    assert [chunk.choices[0].delta.role for chunk in chunks] == ["assistant", None, None]
    assert "".join(chunk.choices[0].delta.content or "" for chunk in chunks) == "Hello there."
    assert [chunk.choices[0].finish_reason for chunk in chunks] == [None, None, "stop"]
    assert {chunk.id for chunk in chunks} == {answer["id"]}
    assert all(chunk.usage is None for chunk in chunks)


def test_usage_is_streamed_last_only_when_asked_for() -> None:
    answer, _ = fresh_answer("chat", orjson.dumps(chat_answer()))

    *_, last = [
        ChatCompletionChunk.model_validate_json(data) for data in events(stream_of("chat", answer, include_usage=True))
    ]

    assert last.choices == []
    assert last.usage is not None
    assert (last.usage.prompt_tokens, last.usage.completion_tokens) == (11, 8)


def test_tool_calls_and_several_choices_stream_back_whole() -> None:
    call = {"id": "call_1", "type": "function", "function": {"name": "lookup", "arguments": '{"q": "x"}'}}
    answer, _ = fresh_answer(
        "chat",
        orjson.dumps(
            chat_answer(
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": None, "tool_calls": [call]},
                    "finish_reason": "tool_calls",
                },
                {"index": 1, "message": {"role": "assistant", "content": "Second."}, "finish_reason": "length"},
            )
        ),
    )

    chunks = [
        ChatCompletionChunk.model_validate_json(data) for data in events(stream_of("chat", answer, include_usage=False))
    ]

    first = [chunk.choices[0] for chunk in chunks if chunk.choices[0].index == 0]
    second = [chunk.choices[0] for chunk in chunks if chunk.choices[0].index == 1]
    [tool] = [part for choice in first for part in choice.delta.tool_calls or ()]
    assert (tool.index, tool.id, tool.function and tool.function.name) == (0, "call_1", "lookup")
    assert first[-1].finish_reason == "tool_calls"
    assert "".join(choice.delta.content or "" for choice in second) == "Second."
    assert second[-1].finish_reason == "length"


def test_a_completion_streams_as_text_chunks() -> None:
    stored = {
        "id": "cmpl-first",
        "object": "text_completion",
        "created": 1,
        "model": "gpt-test",
        "choices": [{"index": 0, "text": "Once upon", "logprobs": None, "finish_reason": "length"}],
        "usage": USAGE,
    }
    assert storable("completions", orjson.dumps(stored))
    answer, _ = fresh_answer("completions", orjson.dumps(stored))

    # The SDK reads legacy stream chunks without validating them (their finish_reason is null until the end).
    chunks = [orjson.loads(data) for data in events(stream_of("completions", answer, include_usage=True))]

    assert answer["id"].startswith("cmpl-")
    assert {chunk["object"] for chunk in chunks} == {"text_completion"}
    assert "".join(choice["text"] for chunk in chunks for choice in chunk["choices"]) == "Once upon"
    assert [chunk["choices"][0]["finish_reason"] for chunk in chunks[:2]] == [None, "length"]
    assert Completion.model_validate(chunks[-1]).usage == Completion.model_validate(stored).usage
