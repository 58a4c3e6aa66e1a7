"""Usage reports that cannot be right, upstream rate limits, and what the OpenAI-style streams do with them."""

from __future__ import annotations

import dataclasses
from typing import Any

import httpx
import orjson
import pytest

from providers.adapters.base import Target
from providers.adapters.ollama import OllamaChatStream
from providers.adapters.openai import OpenAIAdapter
from providers.adapters.wire import client_usage, openai_failure, usage_is_plausible, wrote_output
from providers.tests.factories import make_provider_info

TARGET = Target(make_provider_info(), "gpt-upstream", "house-model")


@pytest.mark.parametrize(
    ("usage", "wrote", "plausible"),
    [
        ({"prompt_tokens": 9, "completion_tokens": 3}, True, True),
        ({"prompt_tokens": 9, "completion_tokens": 0}, False, True),  # an empty answer costs nothing
        ({"prompt_tokens": 9, "completion_tokens": 0}, True, False),
        ({"prompt_tokens": 0, "completion_tokens": 3}, True, False),
        ({"completion_tokens": 3}, True, False),
        (None, False, False),
    ],
)
def test_a_usage_report_is_believed_unless_it_cannot_be_right(usage: Any, wrote: bool, plausible: bool) -> None:
    assert usage_is_plausible(usage, wrote_output=wrote) is plausible


@pytest.mark.parametrize(
    ("event", "wrote"),
    [
        (b'{"choices":[{"delta":{"role":"assistant","content":""}}]}', False),
        (b'{"choices":[{"delta":{"content":"Hi"}}]}', True),
        (b'{"choices": [{"delta": {"content": "Hi"}}]}', True),
        (b'{"choices":[{"delta":{"tool_calls":[{"index":0}]}}]}', True),
        (b'{"choices":[{"text":"legacy"}]}', True),
    ],
)
def test_output_is_seen_in_a_chunk(event: bytes, wrote: bool) -> None:
    assert wrote_output(event) is wrote


def feed(translator: Any, *chunks: dict[str, Any]) -> list[dict[str, Any]]:
    return [orjson.loads(out) for chunk in chunks for out in translator.feed(orjson.dumps(chunk))]


def content(text: str) -> dict[str, Any]:
    choice = {"index": 0, "delta": {"content": text}, "logprobs": None, "finish_reason": None}
    return {"id": "c", "object": "chat.completion.chunk", "created": 1, "model": "gpt-upstream", "choices": [choice]}


@pytest.mark.parametrize("include_usage", [False, True])
def test_a_stream_usage_of_zeros_is_kept_from_the_client_and_the_call(include_usage: bool) -> None:
    translator = OpenAIAdapter().stream_translator("chat", TARGET, include_usage=include_usage)
    zeros = {**content(""), "choices": [], "usage": {"prompt_tokens": 0, "completion_tokens": 0, "total_tokens": 0}}

    out = feed(translator, content("Hi"), zeros)

    assert [chunk.get("usage") for chunk in out] == [None]
    assert translator.usage is None  # the gateway counts, and sends its own usage chunk if one was asked for


def test_a_believable_stream_usage_reaches_a_client_that_asked() -> None:
    translator = OpenAIAdapter().stream_translator("chat", TARGET, include_usage=True)
    usage = {"prompt_tokens": 5, "completion_tokens": 1, "total_tokens": 6}

    out = feed(translator, content("Hi"), {**content(""), "choices": [], "usage": usage})

    assert out[-1]["usage"] == usage
    assert translator.usage == usage


def test_usage_on_the_finishing_chunk_is_noted_and_the_choice_relayed() -> None:
    translator = OpenAIAdapter().stream_translator("chat", TARGET, include_usage=False)
    usage = {"prompt_tokens": 5, "completion_tokens": 1, "total_tokens": 6}
    last = content("")
    last["choices"][0].update(delta={}, finish_reason="stop")

    (relayed,) = feed(translator, {**last, "usage": usage})

    assert "usage" not in relayed
    assert relayed["choices"][0]["finish_reason"] == "stop"
    assert translator.usage == usage


def test_an_exact_provider_gets_no_shaping() -> None:
    exact = dataclasses.replace(TARGET, provider=dataclasses.replace(TARGET.provider, exact_shapes=True))
    loose = {"id": "c", "model": "gpt-upstream", "choices": [{"index": 0, "delta": {"content": "Hi"}}]}

    (relayed,) = feed(OpenAIAdapter().stream_translator("chat", exact, include_usage=False), loose)

    assert relayed == {**loose, "model": "house-model"}


def test_ollama_leaving_out_its_prompt_count_is_counted_by_the_gateway() -> None:
    stream = OllamaChatStream("house-model", include_usage=True)
    lines = [{"message": {"content": "Hi"}, "done": False}, {"done": True, "done_reason": "stop", "eval_count": 1}]

    out = [orjson.loads(chunk) for line in lines for chunk in stream.feed(orjson.dumps(line))]

    assert stream.usage is None
    assert all(chunk["usage"] is None for chunk in out), "no usage chunk of its own: the gateway sends the count"


@pytest.mark.parametrize(
    ("upstream_type", "headers", "expected"),
    [
        ("server_error", {}, "requests"),
        ("insufficient_quota", {}, "requests"),
        ("tokens", {}, "tokens"),
        (None, {"x-ratelimit-remaining-tokens": "0", "x-ratelimit-remaining-requests": "12"}, "tokens"),
        (None, {"anthropic-ratelimit-tokens-remaining": "0"}, "tokens"),
    ],
)
def test_every_upstream_429_is_openais_rate_limit_error(
    upstream_type: str | None, headers: dict[str, str], expected: str
) -> None:
    payload = orjson.dumps({"error": {"message": "Slow down.", "type": upstream_type, "code": "x", "param": "y"}})

    failure = openai_failure(429, payload, httpx.Headers({**headers, "retry-after": "2"}))

    assert (failure.status, failure.type, failure.code, failure.param) == (429, expected, "rate_limit_exceeded", None)
    assert (failure.message, failure.headers) == ("Slow down.", {"retry-after": "2"})


def test_the_client_never_sees_cache_creation_in_usage() -> None:
    usage = {"prompt_tokens": 9, "prompt_tokens_details": {"cached_tokens": 4, "cache_creation_tokens": 5}}

    assert client_usage(usage) == {"prompt_tokens": 9, "prompt_tokens_details": {"cached_tokens": 4}}
    assert usage["prompt_tokens_details"]["cache_creation_tokens"] == 5, "the call's own report keeps it"
