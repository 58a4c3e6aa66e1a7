"""What an OpenAI-compatible server sends that is not an answer: a clean ValueError, never a crash or a relay.

The relay turns a ValueError from `response()`, from its own check of the whole answer that comes out
(`whole_answer`), or from a stream translator's `feed()` into an upstream error (a 502 before the first byte,
which another deployment may make good; the stream's error event after it). Each case runs with the chat
shapes enforced and with a server declared exact (`exact_shapes`), whose answers and chunks go through unparsed.
"""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from providers.adapters.answers import whole_answer
from providers.adapters.azure import AzureOpenAIAdapter
from providers.adapters.base import Operation, Target
from providers.adapters.openai import OpenAIAdapter
from providers.tests.factories import make_provider_info

ADAPTERS = {"openai": OpenAIAdapter(), "azure": AzureOpenAIAdapter()}
# Stream events that are JSON but no chunk (the first one, an array holding a usage report, used to crash the
# relay with an AttributeError), and one that is not JSON at all.
NOT_CHUNKS = (
    b'[{"usage":{"prompt_tokens":1}}]',
    b"[]",
    b"3",
    b'"usage"',
    b"null",
    b'{"usage":{"prompt_tokens":1}',
    b'{"choices":"x","usage":{"prompt_tokens":1,"completion_tokens":1}}',
)
GOOD_CHUNK = {
    "id": "chatcmpl-1",
    "object": "chat.completion.chunk",
    "created": 1_700_000_000,
    "model": "upstream-model",
    "choices": [{"index": 0, "delta": {"role": "assistant", "content": "Hi"}, "logprobs": None, "finish_reason": None}],
}
ANSWER = {
    "id": "chatcmpl-1",
    "object": "chat.completion",
    "created": 1_700_000_000,
    "model": "upstream-model",
    "choices": [
        {
            "index": 0,
            "message": {"role": "assistant", "content": "Hi", "refusal": None},
            "logprobs": None,
            "finish_reason": "stop",
        }
    ],
    "usage": {"prompt_tokens": 3, "completion_tokens": 1, "total_tokens": 4},
}


def _relayed(kind: str, operation: Operation, target: Target, payload: bytes) -> dict[str, Any]:
    """A whole answer as gateway.relay's `attempt` reads it: the kind's answer, then its shape checked."""
    return whole_answer(operation, ADAPTERS[kind].response(operation, target, payload))


def _target(kind: str, *, exact_shapes: bool) -> Target:
    provider = make_provider_info(kind=kind, base_url="http://upstream.test", exact_shapes=exact_shapes)
    return Target(provider, "upstream-model", "house-model")


def _with_message(**message: Any) -> dict[str, Any]:
    choice = {**ANSWER["choices"][0], "message": {**ANSWER["choices"][0]["message"], **message}}
    return {**ANSWER, "choices": [choice]}


@pytest.mark.parametrize("exact_shapes", [False, True], ids=["shaped", "exact"])
@pytest.mark.parametrize("kind", ADAPTERS)
@pytest.mark.parametrize("event", NOT_CHUNKS)
def test_a_stream_event_that_is_no_chunk_is_a_value_error(kind: str, exact_shapes: bool, event: bytes) -> None:
    adapter = ADAPTERS[kind]
    translator = adapter.stream_translator("chat", _target(kind, exact_shapes=exact_shapes), include_usage=True)
    assert list(translator.feed(orjson.dumps(GOOD_CHUNK)))  # a stream that began well

    # ValueError is the relay's cue; the AttributeError an array used to raise reached the client as a 500.
    with pytest.raises(ValueError, match="not|unexpected end"):
        list(translator.feed(event))


@pytest.mark.parametrize("kind", ADAPTERS)
def test_a_legacy_completion_stream_event_that_is_no_chunk_is_a_value_error(kind: str) -> None:
    translator = ADAPTERS[kind].stream_translator("completions", _target(kind, exact_shapes=False), include_usage=False)

    with pytest.raises(ValueError, match="not an OpenAI stream event"):
        list(translator.feed(b'[{"usage":{"prompt_tokens":1}}]'))


BROKEN_ANSWERS: dict[str, tuple[Operation, Any]] = {
    "a chat answer that is a list": ("chat", [ANSWER]),
    "a chat answer that is a number": ("chat", 3),
    "a chat answer that is null": ("chat", None),
    "choices that are text": ("chat", {**ANSWER, "choices": "x"}),
    "choices that are not objects": ("chat", {**ANSWER, "choices": ["x"]}),
    "no choices at all": ("chat", {key: value for key, value in ANSWER.items() if key != "choices"}),
    "a legacy completion with choices that are an object": (
        "completions",
        {"object": "text_completion", "choices": {}},
    ),
    "embeddings that are text": ("embeddings", {"object": "list", "data": "x"}),
    "embeddings that are not objects": ("embeddings", {"object": "list", "data": [[0.5, 0.25]]}),
    "moderation results that are null": ("moderations", {"id": "modr-1", "results": None}),
    "images that are a list of lists": ("images", {"created": 1, "data": [["x"]]}),
}


@pytest.mark.parametrize("exact_shapes", [False, True], ids=["shaped", "exact"])
@pytest.mark.parametrize(
    ("kind", "case"),
    [
        (kind, case)
        for kind, adapter in ADAPTERS.items()
        for case, (operation, _) in BROKEN_ANSWERS.items()
        if operation in adapter.operations
    ],
)
def test_a_whole_answer_that_is_not_the_one_asked_for_is_a_value_error(
    kind: str, exact_shapes: bool, case: str
) -> None:
    operation, body = BROKEN_ANSWERS[case]

    with pytest.raises(ValueError, match="not an OpenAI|not a chat completion"):
        _relayed(kind, operation, _target(kind, exact_shapes=exact_shapes), orjson.dumps(body))


@pytest.mark.parametrize("calls", ["get_weather", {"id": "call_1"}, 3], ids=["text", "an object", "a number"])
@pytest.mark.parametrize("kind", ADAPTERS)
def test_tool_calls_that_are_not_a_list_are_a_value_error(kind: str, calls: Any) -> None:
    payload = orjson.dumps(_with_message(tool_calls=calls))

    with pytest.raises(ValueError, match="tool calls are not a list"):
        ADAPTERS[kind].response("chat", _target(kind, exact_shapes=False), payload)


@pytest.mark.parametrize("kind", ADAPTERS)
def test_tool_calls_that_are_not_a_list_in_a_chunk_are_a_value_error(kind: str) -> None:
    choice = {**GOOD_CHUNK["choices"][0], "delta": {"tool_calls": "get_weather"}}
    translator = ADAPTERS[kind].stream_translator("chat", _target(kind, exact_shapes=False), include_usage=True)

    with pytest.raises(ValueError, match="tool calls are not a list"):
        list(translator.feed(orjson.dumps({**GOOD_CHUNK, "choices": [choice]})))


@pytest.mark.parametrize("kind", ADAPTERS)
def test_an_answer_and_a_stream_of_the_right_shape_still_go_through(kind: str) -> None:
    target = _target(kind, exact_shapes=False)
    adapter = ADAPTERS[kind]
    translator = adapter.stream_translator("chat", target, include_usage=True)

    body = orjson.loads(adapter.response("chat", target, orjson.dumps(ANSWER)))
    chunks = [orjson.loads(chunk) for chunk in translator.feed(orjson.dumps(GOOD_CHUNK))]
    list(translator.feed(b"[DONE]"))

    assert (body["model"], body["choices"][0]["message"]["content"]) == ("house-model", "Hi")
    assert [chunk["choices"][0]["delta"]["content"] for chunk in chunks] == ["Hi"]
    assert translator.done
    assert not translator.failed


@pytest.mark.parametrize("kind", ADAPTERS)
def test_an_empty_stream_event_is_skipped_not_relayed(kind: str) -> None:
    translator = ADAPTERS[kind].stream_translator("chat", _target(kind, exact_shapes=True), include_usage=False)

    assert list(translator.feed(b"")) == []
    assert list(translator.feed(b"  ")) == []
