"""The fake Cohere upstream speaks Cohere's API v2 as the Cohere adapter understands it: whole and streamed agree."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import orjson
import pytest

from providers.adapters.base import Target, UpstreamRequest
from providers.adapters.cohere import CohereAdapter
from providers.tests.factories import UPSTREAM_CREDENTIAL as CREDENTIAL
from providers.tests.factories import make_provider_info
from tests.fakes.cohere_upstream import DEFAULT_CALLS, DEFAULT_PLAN, CallTools, Fail, FakeCohere, Reply

ADAPTER = CohereAdapter(clock=lambda: 1_750_000_000.0)
HELLO = [{"role": "user", "content": "Hello"}]


@pytest.fixture(scope="module")
def fake() -> Iterator[FakeCohere]:
    upstream = FakeCohere(api_key=CREDENTIAL)
    upstream.start()
    yield upstream
    upstream.stop()


def target_for(fake: FakeCohere, model: str, credential: str = CREDENTIAL) -> Target:
    provider = make_provider_info(kind="cohere", base_url=fake.base_url, credential=credential, extra_headers={})
    return Target(provider, upstream_model=model, public_model="house-command")


def send(request: UpstreamRequest) -> httpx.Response:
    assert isinstance(request.content, bytes)
    with httpx.Client() as client:
        return client.request(request.method, request.url, headers=request.headers, content=request.content)


def streamed(fake: FakeCohere, model: str) -> list[dict[str, Any]]:
    """The OpenAI chunks the adapter makes of the fake's stream, its bytes fed in small pieces."""
    target = target_for(fake, model)
    response = send(ADAPTER.request("chat", target, {"model": "house-command", "messages": HELLO, "stream": True}))
    splitter, translator = ADAPTER.splitter(), ADAPTER.stream_translator("chat", target, include_usage=True)
    chunks = []
    for at in range(0, len(response.content), 7):
        for event in splitter.feed(response.content[at : at + 7]):
            chunks += [orjson.loads(payload) for payload in translator.feed(event)]
    assert translator.done
    return chunks


def whole(fake: FakeCohere, model: str) -> dict[str, Any]:
    target = target_for(fake, model)
    response = send(ADAPTER.request("chat", target, {"model": "house-command", "messages": HELLO}))
    assert response.status_code == 200
    return dict(orjson.loads(ADAPTER.response("chat", target, response.content)))


def test_a_text_answer_adds_up_to_the_same_answer_streamed_or_whole(fake: FakeCohere) -> None:
    fake.script("command-text", Reply("One two three", input_tokens=4))

    chunks = streamed(fake, "command-text")
    answer = whole(fake, "command-text")

    text = "".join(chunk["choices"][0]["delta"].get("content") or "" for chunk in chunks if chunk["choices"])
    assert text == answer["choices"][0]["message"]["content"] == "One two three"
    assert chunks[-1]["usage"] == answer["usage"] == {"prompt_tokens": 64, "completion_tokens": 3, "total_tokens": 67}


def test_tool_calls_add_up_to_the_same_calls_streamed_or_whole(fake: FakeCohere) -> None:
    fake.script("command-tools", CallTools())

    chunks = streamed(fake, "command-tools")
    answer = whole(fake, "command-tools")

    arguments: dict[int, str] = {}
    for chunk in chunks:
        for call in (chunk["choices"] or [{"delta": {}}])[0]["delta"].get("tool_calls") or ():
            arguments[call["index"]] = arguments.get(call["index"], "") + call["function"]["arguments"]
    calls = answer["choices"][0]["message"]["tool_calls"]
    assert [orjson.loads(text) for text in arguments.values()] == [args for _, _, args in DEFAULT_CALLS]
    assert [(call["id"], call["function"]["name"], orjson.loads(call["function"]["arguments"])) for call in calls] == [
        *DEFAULT_CALLS
    ]
    assert answer["choices"][0]["message"]["content"] == DEFAULT_PLAN
    assert chunks[-2]["choices"][0]["finish_reason"] == answer["choices"][0]["finish_reason"] == "tool_calls"


def test_the_fake_refuses_a_wrong_key_and_scripted_failures_with_coheres_error_body(fake: FakeCohere) -> None:
    fake.script("command-busy", Fail(429, "too many requests", {"retry-after": "2"}))

    wrong = send(ADAPTER.request("chat", target_for(fake, "command-x", "wrong"), {"messages": HELLO}))
    busy = send(ADAPTER.request("chat", target_for(fake, "command-busy"), {"messages": HELLO}))

    assert (wrong.status_code, wrong.json()["message"]) == (401, "invalid api token")
    assert (busy.status_code, busy.json()["message"], busy.headers["retry-after"]) == (429, "too many requests", "2")
    assert ADAPTER.failure(busy.status_code, busy.content, busy.headers).code == "rate_limit_exceeded"
