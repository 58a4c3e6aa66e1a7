"""Legacy completions on chat-only providers: the request and the answers, whole and streamed."""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from providers.adapters.base import UnsupportedParameter
from providers.adapters.bridge import CompletionStream, chat_body, completion_from_chat
from providers.adapters.openai import PassThrough
from providers.redaction import Redactor


@pytest.mark.parametrize(
    ("legacy", "chat"),
    [
        (
            {"model": "m", "prompt": "Say hi"},
            {"model": "m", "max_tokens": 16, "messages": [{"role": "user", "content": "Say hi"}]},
        ),
        (
            {"model": "m", "prompt": ["Say hi"], "max_tokens": 5, "temperature": 0.2, "stop": ["\n"], "n": 2},
            {
                "model": "m",
                "max_tokens": 5,
                "temperature": 0.2,
                "stop": ["\n"],
                "n": 2,
                "messages": [{"role": "user", "content": "Say hi"}],
            },
        ),
        (
            {"model": "m", "prompt": "x", "stream": True, "stream_options": {"include_usage": True}, "seed": 7},
            {
                "model": "m",
                "stream": True,
                "stream_options": {"include_usage": True},
                "seed": 7,
                "max_tokens": 16,
                "messages": [{"role": "user", "content": "x"}],
            },
        ),
        (
            {"model": "m", "prompt": "x", "best_of": 1, "echo": False, "unknown": 1},
            {"model": "m", "max_tokens": 16, "messages": [{"role": "user", "content": "x"}]},
        ),
        (
            # The spec lets `prompt` be null; OpenAI then completes from an empty prompt.
            {"model": "m", "prompt": None},
            {"model": "m", "max_tokens": 16, "messages": [{"role": "user", "content": ""}]},
        ),
    ],
    ids=["defaults", "shared-fields", "stream", "harmless-legacy-fields", "null-prompt"],
)
def test_a_legacy_request_becomes_the_equivalent_chat_request(legacy: dict[str, Any], chat: dict[str, Any]) -> None:
    assert chat_body(legacy) == chat


@pytest.mark.parametrize(
    ("extra", "param"),
    [
        ({"echo": True}, "echo"),
        ({"suffix": "end"}, "suffix"),
        ({"logprobs": 2}, "logprobs"),
        ({"best_of": 3}, "best_of"),
        ({"prompt": ["one", "two"]}, "prompt"),
        ({"prompt": [1, 2, 3]}, "prompt"),
        ({"prompt": [[1, 2]]}, "prompt"),
    ],
)
def test_what_a_chat_model_cannot_do_is_refused_naming_the_parameter(extra: dict[str, Any], param: str) -> None:
    with pytest.raises(UnsupportedParameter) as refused:
        chat_body({"model": "m", "prompt": "x", **extra})

    assert refused.value.param == param


@pytest.mark.parametrize(
    "body",
    [[], "text", {"choices": "x"}, {"choices": ["x"]}, {"choices": [{"message": "Hi"}]}],
    ids=["a list", "a string", "choices not a list", "a choice not an object", "a message not an object"],
)
def test_what_is_no_chat_completion_is_a_value_error_for_the_relay(body: object) -> None:
    with pytest.raises(ValueError, match="not a chat completion"):
        completion_from_chat(orjson.dumps(body))


def test_a_chat_answer_becomes_a_text_completion() -> None:
    chat = {
        "id": "chatcmpl-abc",
        "object": "chat.completion",
        "created": 7,
        "model": "house",
        "choices": [
            {"index": 0, "message": {"role": "assistant", "content": "Hi"}, "finish_reason": "stop"},
            {"index": 1, "message": {"role": "assistant", "content": None}, "finish_reason": "length"},
        ],
        "usage": {"prompt_tokens": 3, "completion_tokens": 1, "total_tokens": 4},
        "system_fingerprint": "fp_1",
    }

    assert orjson.loads(completion_from_chat(orjson.dumps(chat))) == {
        "id": "cmpl-abc",
        "object": "text_completion",
        "created": 7,
        "model": "house",
        "choices": [
            {"text": "Hi", "index": 0, "logprobs": None, "finish_reason": "stop"},
            {"text": "", "index": 1, "logprobs": None, "finish_reason": "length"},
        ],
        "usage": {"prompt_tokens": 3, "completion_tokens": 1, "total_tokens": 4},
        "system_fingerprint": "fp_1",
    }


def _chunk(delta: dict[str, Any], finish: str | None = None, **extra: Any) -> bytes:
    choice = {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}
    body = {"id": "chatcmpl-abc", "object": "chat.completion.chunk", "created": 7, "model": "up", **extra}
    return orjson.dumps({**body, "choices": [choice]})


def test_a_chat_stream_becomes_text_completion_chunks_with_usage_when_asked() -> None:
    stream = CompletionStream(PassThrough("house", include_usage=True))
    usage = {"prompt_tokens": 3, "completion_tokens": 2, "total_tokens": 5}
    events = [
        _chunk({"role": "assistant", "content": ""}),
        _chunk({"content": "Hel"}),
        _chunk({"content": "lo"}),
        _chunk({}, "stop"),
        orjson.dumps(
            {"id": "chatcmpl-abc", "object": "chat.completion.chunk", "created": 7, "choices": [], "usage": usage}
        ),
        b"[DONE]",
    ]

    out = [orjson.loads(payload) for event in events for payload in stream.feed(event)]

    assert [(c["object"], c["id"], c["model"]) for c in out[:-1]] == [("text_completion", "cmpl-abc", "house")] * 3
    assert [choice["text"] for c in out[:-1] for choice in c["choices"]] == ["Hel", "lo", ""]
    assert out[-2]["choices"][0]["finish_reason"] == "stop"
    assert (out[-1]["choices"], out[-1]["usage"]) == ([], usage)
    assert (stream.done, stream.failed, stream.usage) == (True, False, usage)


def test_an_error_event_passes_through_the_bridge_and_marks_the_stream_failed() -> None:
    stream = CompletionStream(PassThrough("house", include_usage=False, redactor=Redactor(["sk-secret"])))
    error = {"error": {"message": "sk-secret overloaded", "type": "server_error", "param": None, "code": None}}

    (payload,) = stream.feed(orjson.dumps(error))

    assert orjson.loads(payload)["error"]["message"] == "[redacted] overloaded"
    assert (stream.failed, stream.done) == (True, False)
