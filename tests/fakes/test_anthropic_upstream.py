"""The fake Anthropic upstream speaks Anthropic's wire protocol, as the Anthropic adapter understands it."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from typing import Any

import httpx
import orjson
import pytest

from providers.adapters.anthropic import AnthropicAdapter
from providers.adapters.base import Target, UpstreamRequest
from providers.adapters.framing import EventSplitter
from providers.tests.factories import UPSTREAM_CREDENTIAL as CREDENTIAL
from providers.tests.factories import make_provider_info
from tests.fakes.anthropic_upstream import Fail, FakeAnthropic, Replay, Reply, recording_events

ADAPTER = AnthropicAdapter(clock=lambda: 1_750_000_000.0)


@pytest.fixture(scope="module")
def fake() -> Iterator[FakeAnthropic]:
    upstream = FakeAnthropic(api_key=CREDENTIAL)
    upstream.start()
    yield upstream
    upstream.stop()


def target_for(fake: FakeAnthropic, model: str) -> Target:
    provider = make_provider_info(kind="anthropic", base_url=fake.base_url, extra_headers={})
    return Target(provider, upstream_model=model, public_model="house-claude")


async def send(request: UpstreamRequest) -> httpx.Response:
    async with httpx.AsyncClient() as client:
        return await client.request(request.method, request.url, headers=request.headers, content=request.content)


async def stream_through(request: UpstreamRequest, target: Target) -> tuple[bytes, list[dict[str, Any]], bool]:
    """The raw stream, the chunks the adapter made of it as the relay would feed them, and whether it was done."""
    translator = ADAPTER.stream_translator("chat", target, include_usage=True)
    splitter, raw, chunks = EventSplitter(), b"", []
    async with (
        httpx.AsyncClient() as client,
        client.stream(request.method, request.url, headers=request.headers, content=request.content) as response,
    ):
        assert response.status_code == 200
        assert response.headers["content-type"] == "text/event-stream"
        async for piece in response.aiter_raw():
            raw += piece
            chunks += [orjson.loads(out) for data in splitter.feed(piece) for out in translator.feed(data)]
    return raw, chunks, translator.done


def chunks_from_file(recording: str, target: Target) -> list[dict[str, Any]]:
    translator = ADAPTER.stream_translator("chat", target, include_usage=True)
    splitter = EventSplitter()
    events = splitter.feed(b"\n\n".join(recording_events(recording)) + b"\n\n")
    return [orjson.loads(out) for data in events for out in translator.feed(data)]


async def test_a_recorded_stream_over_http_translates_exactly_as_the_file_does(fake: FakeAnthropic) -> None:
    fake.script("claude-tools", Replay("parallel_tool_calls"))
    target = target_for(fake, "claude-tools")
    body = {"messages": [{"role": "user", "content": "Weather?"}], "stream": True, "max_tokens": 300}

    raw, chunks, done = await stream_through(ADAPTER.request("chat", target, body), target)

    assert raw.startswith(b"event: message_start\ndata: {")
    # Each translation gives its completion an id of its own; the rest must be the same.
    expected = chunks_from_file("parallel_tool_calls", target)
    assert [{**chunk, "id": ""} for chunk in chunks] == [{**chunk, "id": ""} for chunk in expected]
    assert done
    (received,) = fake.received("claude-tools")
    assert received.body == {
        "model": "claude-tools",
        "max_tokens": 300,
        "messages": [{"role": "user", "content": [{"type": "text", "text": "Weather?"}]}],
        "stream": True,
    }
    assert (received.headers["x-api-key"], received.headers["anthropic-version"]) == (CREDENTIAL, "2023-06-01")


async def test_a_reply_streams_one_word_per_event(fake: FakeAnthropic) -> None:
    fake.script("claude-words", Reply("Bonjour tout le monde", input_tokens=5))
    target = target_for(fake, "claude-words")

    _, chunks, done = await stream_through(ADAPTER.request("chat", target, {"messages": [], "stream": True}), target)

    assert "".join(chunk["choices"][0]["delta"].get("content", "") for chunk in chunks if chunk["choices"]) == (
        "Bonjour tout le monde"
    )
    assert chunks[-1]["usage"]["prompt_tokens"] == 5
    assert chunks[-1]["usage"]["completion_tokens"] == 4
    assert done


async def test_a_stream_cut_midway_breaks_the_connection_without_message_stop(fake: FakeAnthropic) -> None:
    fake.script("claude-cut", Replay("text_answer", cut_after=4))
    target = target_for(fake, "claude-cut")

    with pytest.raises(httpx.RemoteProtocolError):
        await stream_through(ADAPTER.request("chat", target, {"messages": [], "stream": True}), target)

    (log,) = fake.answers("claude-cut")
    assert len(log.sent_at) == 4
    assert not log.finished


async def test_a_recording_not_streamed_is_answered_as_the_whole_message(fake: FakeAnthropic) -> None:
    fake.script("claude-whole", Replay("parallel_tool_calls"))
    target = target_for(fake, "claude-whole")

    response = await send(ADAPTER.request("chat", target, {"messages": []}))

    message = orjson.loads(ADAPTER.response("chat", target, response.content))["choices"][0]["message"]
    assert message["content"] == "I'll check both cities at once."
    assert [call["function"]["arguments"] for call in message["tool_calls"]] == [
        '{"city":"Paris","unit":"celsius"}',
        '{"city":"Tokyo","unit":"celsius"}',
        '{"timezone":"Asia/Tokyo"}',
    ]


async def test_an_error_answer_carries_anthropics_body_and_retry_after(fake: FakeAnthropic) -> None:
    fake.script("claude-busy", Fail(529, "overloaded_error", "Overloaded", headers={"retry-after": "3"}))
    target = target_for(fake, "claude-busy")

    response = await send(ADAPTER.request("chat", target, {"messages": []}))

    assert response.status_code == 529
    assert response.json()["error"] == {"type": "overloaded_error", "message": "Overloaded"}
    failure = ADAPTER.failure(response.status_code, response.content, response.headers)
    assert (failure.status, failure.code, failure.headers) == (503, "overloaded", {"retry-after": "3"})


@pytest.mark.parametrize(
    ("header", "value", "status", "error_type"),
    [
        pytest.param("x-api-key", "sk-ant-wrong", 401, "authentication_error", id="wrong-key"),
        pytest.param("anthropic-version", None, 400, "invalid_request_error", id="no-version"),
    ],
)
async def test_requests_anthropic_would_refuse_are_refused(
    fake: FakeAnthropic, header: str, value: str | None, status: int, error_type: str
) -> None:
    request = ADAPTER.request("chat", target_for(fake, "claude-refused"), {"messages": []})
    headers = {name: text for name, text in request.headers.items() if name != header}
    if value is not None:
        headers[header] = value

    response = await send(dataclasses.replace(request, headers=headers))

    assert response.status_code == status
    assert response.json()["error"]["type"] == error_type


async def test_the_model_list_names_the_scripted_models(fake: FakeAnthropic) -> None:
    fake.script("claude-listed", Reply())
    provider = target_for(fake, "claude-listed").provider

    response = await send(ADAPTER.models_request(provider))

    assert response.status_code == 200
    assert "claude-listed" in ADAPTER.model_ids(response.content)
    assert fake.received()[-1].path == "/v1/models?limit=1000"
