"""Upstream trouble as the client sees it: OpenAI errors with sensible statuses, and nothing leaked.

Whatever goes wrong, the client never sees the provider's credential or a traceback.
"""

from __future__ import annotations

import itertools
import socket
import time
from collections.abc import AsyncIterable, Callable, Iterable, Iterator
from typing import Any

import openai
import pytest
from openai import OpenAI
from openai.types.chat import ChatCompletionChunk

from providers.models import ModelRoute
from providers.tests.factories import make_provider, make_route
from tenants.tests.factories import IssuedKey
from tests.fakes.openai_upstream import CloseBeforeAnswer, DropMidStream, Fail, FakeUpstream, Hang, Reply
from tests.servers import PorticoServer, Settle

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("committed_db")]

HI = [{"role": "user", "content": "hi"}]
LEAKS = ("Traceback", 'File "', "Error(", "aiohttp", "httpx")

RouteTo = Callable[..., ModelRoute]


@pytest.fixture
def route_to(upstream: FakeUpstream, upstream_credential: str, tag: str, key: IssuedKey, settle: Settle) -> RouteTo:
    """A route through a provider of its own, pointed at the fake unless told otherwise, with the given settings."""
    numbers = itertools.count(1)

    def route_to(*, base_url: str = upstream.base_url, **provider_fields: Any) -> ModelRoute:
        suffix = f"{tag}-{next(numbers)}"
        provider = make_provider(
            kind="openai", name=f"fake-{suffix}", base_url=base_url, credential=upstream_credential, **provider_fields
        )
        route = make_route(provider=provider, public_id=f"gpt-{suffix}", upstream_model=f"fake-{suffix}")
        settle()
        return route

    return route_to


@pytest.fixture
def route(route_to: RouteTo) -> ModelRoute:
    return route_to()


@pytest.fixture
def closed_port() -> Iterator[int]:
    """A port bound by nobody's listener: connecting to it is refused, and no one else can take it meanwhile."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        yield sock.getsockname()[1]


def _assert_nothing_leaks(text: str, credential: str) -> None:
    assert credential not in text
    assert credential[-8:] not in text
    for leak in LEAKS:
        assert leak not in text


def _drain(stream: Iterable[ChatCompletionChunk], into: list[ChatCompletionChunk]) -> None:
    for chunk in stream:
        into.append(chunk)


async def _drain_async(stream: AsyncIterable[ChatCompletionChunk], into: list[ChatCompletionChunk]) -> None:
    async for chunk in stream:
        into.append(chunk)


def _fail_with(client: OpenAI, route: ModelRoute, error: type[openai.APIStatusError], **options: Any) -> Any:
    with pytest.raises(error) as caught:
        client.chat.completions.create(model=route.public_id, messages=HI, **options)
    return caught.value


def test_an_upstream_400_passes_its_message_through(client: OpenAI, upstream: FakeUpstream, route: ModelRoute) -> None:
    message = "This model's maximum context length is 8 tokens, however you requested 9000 tokens."
    upstream.script(route.upstream_model, Fail(400, message, code="context_length_exceeded", param="messages"))

    error = _fail_with(client, route, openai.BadRequestError)

    assert error.status_code == 400
    assert error.body["message"] == message
    assert (error.type, error.code, error.param) == ("invalid_request_error", "context_length_exceeded", "messages")


@pytest.mark.parametrize("stream", [False, True], ids=["whole", "streamed"])
def test_an_upstream_401_is_a_502_that_does_not_leak_the_credential(
    portico: PorticoServer,
    client: OpenAI,
    upstream: FakeUpstream,
    route: ModelRoute,
    upstream_credential: str,
    stream: bool,
) -> None:
    upstream.script(
        route.upstream_model,
        Fail(401, f"Incorrect API key provided: {upstream_credential}.", code="invalid_api_key"),
    )

    error = _fail_with(client, route, openai.InternalServerError, stream=stream)

    assert error.status_code == 502
    assert (error.type, error.code) == ("api_error", "upstream_auth_error")
    _assert_nothing_leaks(error.response.text, upstream_credential)
    assert upstream_credential not in portico.log()


def test_an_upstream_429_is_a_rate_limit_error_with_retry_after(
    client: OpenAI, upstream: FakeUpstream, route: ModelRoute
) -> None:
    upstream.script(
        route.upstream_model,
        Fail(429, "Rate limit reached.", type="requests", code="rate_limit_exceeded", headers={"Retry-After": "7"}),
    )

    error = _fail_with(client, route, openai.RateLimitError)

    assert error.status_code == 429
    assert error.response.headers["retry-after"] == "7"
    assert (error.code, error.body["message"]) == ("rate_limit_exceeded", "Rate limit reached.")


def test_an_upstream_500_is_a_502(
    client: OpenAI, upstream: FakeUpstream, route: ModelRoute, upstream_credential: str
) -> None:
    upstream.script(route.upstream_model, Fail(500, "The server had an error.", type="server_error"))

    error = _fail_with(client, route, openai.InternalServerError)

    assert error.status_code == 502
    assert error.type == "api_error"
    assert "The server had an error." in error.body["message"]
    _assert_nothing_leaks(error.response.text, upstream_credential)


def test_an_upstream_503_stays_a_503(client: OpenAI, upstream: FakeUpstream, route: ModelRoute) -> None:
    upstream.script(route.upstream_model, Fail(503, "Overloaded.", type="server_error"))

    error = _fail_with(client, route, openai.InternalServerError)

    assert error.status_code == 503


@pytest.mark.parametrize("stream", [False, True], ids=["whole", "streamed"])
def test_a_hanging_upstream_is_a_504_after_the_read_timeout(
    client: OpenAI, upstream: FakeUpstream, route_to: RouteTo, upstream_credential: str, stream: bool
) -> None:
    route = route_to(read_timeout=0.5)
    upstream.script(route.upstream_model, Hang())

    started = time.monotonic()
    error = _fail_with(client, route, openai.InternalServerError, stream=stream)
    elapsed = time.monotonic() - started

    assert error.status_code == 504
    assert (error.type, error.code) == ("api_error", "upstream_timeout")
    assert 0.4 < elapsed < 3
    _assert_nothing_leaks(error.response.text, upstream_credential)
    [hung] = upstream.answers(route.upstream_model)
    assert hung.closed_early.wait(2), "Portico left the timed-out upstream request open"


@pytest.mark.parametrize("stream", [False, True], ids=["whole", "streamed"])
def test_a_refused_connection_is_a_502(
    client: OpenAI, route_to: RouteTo, closed_port: int, upstream_credential: str, stream: bool
) -> None:
    route = route_to(base_url=f"http://127.0.0.1:{closed_port}/v1")

    error = _fail_with(client, route, openai.InternalServerError, stream=stream)

    assert error.status_code == 502
    assert (error.type, error.code) == ("api_error", "upstream_unreachable")
    _assert_nothing_leaks(error.response.text, upstream_credential)
    assert str(closed_port) not in error.response.text


def test_a_connection_closed_before_answering_is_a_502(
    client: OpenAI, upstream: FakeUpstream, route: ModelRoute, upstream_credential: str
) -> None:
    upstream.script(route.upstream_model, CloseBeforeAnswer())

    error = _fail_with(client, route, openai.InternalServerError)

    assert error.status_code == 502
    assert error.code == "upstream_unreachable"
    _assert_nothing_leaks(error.response.text, upstream_credential)


def test_a_stream_dropped_midway_raises_an_api_error_in_the_sdk(
    client: OpenAI, upstream: FakeUpstream, route: ModelRoute
) -> None:
    upstream.script(route.upstream_model, DropMidStream(after=2))
    chunks: list[ChatCompletionChunk] = []

    with client.chat.completions.create(model=route.public_id, messages=HI, stream=True) as stream:
        with pytest.raises(openai.APIError) as caught:
            _drain(stream, chunks)

    assert len(chunks) == 2
    assert type(caught.value) is openai.APIError  # an error event in the stream, not an HTTP status
    assert (caught.value.type, caught.value.code) == ("api_error", "upstream_unreachable")


async def test_the_async_sdk_raises_on_a_dropped_stream_too(
    portico: PorticoServer, key: IssuedKey, upstream: FakeUpstream, route: ModelRoute
) -> None:
    upstream.script(route.upstream_model, DropMidStream(after=3))
    chunks: list[ChatCompletionChunk] = []

    async with portico.async_client(key.plaintext) as client:
        stream = await client.chat.completions.create(model=route.public_id, messages=HI, stream=True)
        with pytest.raises(openai.APIError) as caught:
            await _drain_async(stream, chunks)

    assert len(chunks) == 3
    assert caught.value.code == "upstream_unreachable"


def test_a_dropped_stream_ends_with_one_clean_error_event(
    portico: PorticoServer, key: IssuedKey, upstream: FakeUpstream, route: ModelRoute, upstream_credential: str
) -> None:
    upstream.script(route.upstream_model, DropMidStream(after=2))
    body = {"model": route.public_id, "messages": HI, "stream": True}

    with portico.http.stream(
        "POST", "/v1/chat/completions", json=body, headers={"Authorization": f"Bearer {key.plaintext}"}
    ) as response:
        text = response.read().decode()

    assert response.status_code == 200
    events = [block for block in text.split("\n\n") if block]
    assert len(events) == 3
    assert events[-1].startswith('data: {"error":')
    assert "[DONE]" not in text
    _assert_nothing_leaks(text, upstream_credential)


def test_a_stream_that_outlasts_the_total_timeout_ends_with_a_timeout_event(
    client: OpenAI, upstream: FakeUpstream, route_to: RouteTo
) -> None:
    route = route_to(total_timeout=0.5)
    upstream.script(route.upstream_model, Reply("one two three four five six", delay=0.2))
    chunks: list[ChatCompletionChunk] = []

    with client.chat.completions.create(model=route.public_id, messages=HI, stream=True) as stream:
        with pytest.raises(openai.APIError) as caught:
            _drain(stream, chunks)

    assert caught.value.code == "upstream_timeout"
    assert 1 <= len(chunks) < 8


def test_a_stream_that_stalls_past_the_read_timeout_ends_with_a_timeout_event(
    client: OpenAI, upstream: FakeUpstream, route_to: RouteTo
) -> None:
    route = route_to(read_timeout=0.5)
    upstream.script(route.upstream_model, Reply("never comes", delay=5))
    chunks: list[ChatCompletionChunk] = []

    with client.chat.completions.create(model=route.public_id, messages=HI, stream=True) as stream:
        with pytest.raises(openai.APIError) as caught:
            _drain(stream, chunks)

    assert len(chunks) == 1  # the role chunk, sent before the stall
    assert type(caught.value) is openai.APIError
    assert caught.value.code == "upstream_timeout"
    [stalled] = upstream.answers(route.upstream_model)
    assert stalled.closed_early.wait(2)
