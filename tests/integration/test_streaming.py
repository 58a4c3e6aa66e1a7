"""Streamed chat completions relayed from the fake upstream, with the sync, async and helper APIs of the SDK."""

from __future__ import annotations

import asyncio
import time

import pytest
from openai import OpenAI
from openai.types.chat import ChatCompletionChunk

from providers.models import ModelRoute
from tenants.tests.factories import IssuedKey
from tests.fakes.openai_upstream import Echo, FakeUpstream, Reply
from tests.servers import PorticoServer, Settle

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("committed_db")]

ANSWER = "The quick brown fox jumps over the lazy dog"
ASK = [{"role": "user", "content": "Tell me about the fox"}]


@pytest.fixture
def route(upstream: FakeUpstream, upstream_route: ModelRoute, key: IssuedKey, settle: Settle) -> ModelRoute:
    upstream.script(upstream_route.upstream_model, Reply(ANSWER, prompt_tokens=5))
    settle()
    return upstream_route


def _text(chunks: list[ChatCompletionChunk]) -> str:
    return "".join(chunk.choices[0].delta.content or "" for chunk in chunks if chunk.choices)


def _assert_a_whole_stream(chunks: list[ChatCompletionChunk], public_id: str) -> None:
    assert {chunk.model for chunk in chunks} == {public_id}
    assert chunks[0].choices[0].delta.role == "assistant"
    # One chunk per word, in order, between the role chunk and the finish chunk.
    assert [chunk.choices[0].delta.content for chunk in chunks[1:-2]] == [
        word if i == 0 else " " + word for i, word in enumerate(ANSWER.split())
    ]
    assert _text(chunks) == ANSWER
    assert chunks[-2].choices[0].finish_reason == "stop"
    assert chunks[-1].choices == []
    assert chunks[-1].usage is not None
    assert (chunks[-1].usage.prompt_tokens, chunks[-1].usage.completion_tokens) == (5, len(ANSWER.split()))


def test_the_sync_client_receives_the_whole_stream_in_order(client: OpenAI, route: ModelRoute) -> None:
    stream = client.chat.completions.create(
        model=route.public_id, messages=ASK, stream=True, stream_options={"include_usage": True}
    )
    with stream:
        chunks = list(stream)

    _assert_a_whole_stream(chunks, route.public_id)


async def test_the_async_client_receives_the_whole_stream_in_order(
    portico: PorticoServer, key: IssuedKey, route: ModelRoute
) -> None:
    async with portico.async_client(key.plaintext) as client:
        stream = await client.chat.completions.create(
            model=route.public_id, messages=ASK, stream=True, stream_options={"include_usage": True}
        )
        chunks = [chunk async for chunk in stream]

    _assert_a_whole_stream(chunks, route.public_id)


def test_without_include_usage_no_usage_chunk_is_sent(client: OpenAI, route: ModelRoute) -> None:
    with client.chat.completions.create(model=route.public_id, messages=ASK, stream=True) as stream:
        chunks = list(stream)

    assert chunks[-1].choices[0].finish_reason == "stop"
    assert all(chunk.usage is None for chunk in chunks)
    assert _text(chunks) == ANSWER


def test_the_stream_helper_accumulates_the_final_completion(client: OpenAI, route: ModelRoute) -> None:
    with client.chat.completions.stream(
        model=route.public_id, messages=ASK, stream_options={"include_usage": True}
    ) as stream:
        deltas = [event.delta for event in stream if event.type == "content.delta"]
        final = stream.get_final_completion()

    assert "".join(deltas) == ANSWER
    assert final.model == route.public_id
    assert final.choices[0].message.content == ANSWER
    assert final.choices[0].finish_reason == "stop"
    assert final.usage is not None
    assert final.usage.total_tokens == 5 + len(ANSWER.split())


def test_the_stream_is_answered_as_server_sent_events(client: OpenAI, route: ModelRoute) -> None:
    raw = client.chat.completions.with_raw_response.create(
        model=route.public_id, messages=ASK, stream=True, extra_headers={"X-Request-Id": "stream-req-1"}
    )
    with raw.parse() as stream:
        list(stream)

    assert raw.status_code == 200
    assert raw.headers["content-type"].startswith("text/event-stream")
    assert raw.headers["cache-control"] == "no-cache"
    assert raw.headers["x-accel-buffering"] == "no"  # so a reverse proxy does not buffer it either
    assert raw.headers["x-request-id"] == "stream-req-1"


def test_the_raw_stream_ends_with_done(portico: PorticoServer, key: IssuedKey, route: ModelRoute) -> None:
    body = {"model": route.public_id, "messages": ASK, "stream": True}
    with portico.http.stream(
        "POST", "/v1/chat/completions", json=body, headers={"Authorization": f"Bearer {key.plaintext}"}
    ) as response:
        text = response.read().decode()

    events = [block for block in text.split("\n\n") if block]
    assert all(event.startswith("data: ") for event in events)
    assert events[-1] == "data: [DONE]"
    assert text.endswith("\n\n")


def test_chunks_are_relayed_as_they_arrive_not_buffered(
    client: OpenAI, upstream: FakeUpstream, upstream_route: ModelRoute, settle: Settle
) -> None:
    gap = 0.3
    upstream.script(upstream_route.upstream_model, Reply("one two three", delay=gap))
    settle()

    started = time.monotonic()
    arrived = []
    with client.chat.completions.create(model=upstream_route.public_id, messages=ASK, stream=True) as stream:
        for _chunk in stream:
            arrived.append(time.monotonic())
    total = time.monotonic() - started

    [log] = upstream.answers(upstream_route.upstream_model)
    assert log.finished
    # Role, three words, finish; the upstream also sent the usage chunk Portico asks for, kept from the client.
    assert len(arrived) == len(log.sent_at) - 1 == 5
    # Each chunk reached the client before the upstream had even sent the next one.
    for received, next_sent in zip(arrived, log.sent_at[1:], strict=False):
        assert received < next_sent
    assert total >= 4 * gap
    assert arrived[0] - started < total / 2


@pytest.fixture
def echoing_route(upstream: FakeUpstream, upstream_route: ModelRoute, key: IssuedKey, settle: Settle) -> ModelRoute:
    upstream.script(upstream_route.upstream_model, Echo(delay=0.05))
    settle()
    return upstream_route


async def test_concurrent_streams_each_get_their_own_answer(
    portico: PorticoServer, key: IssuedKey, echoing_route: ModelRoute
) -> None:
    async with portico.async_client(key.plaintext) as client:

        async def ask(number: int) -> str:
            prompt = [{"role": "user", "content": f"request number {number}"}]
            stream = await client.chat.completions.create(model=echoing_route.public_id, messages=prompt, stream=True)
            return _text([chunk async for chunk in stream])

        answers = await asyncio.gather(*(ask(number) for number in range(24)))

    assert answers == [f"request number {number}" for number in range(24)]
