"""A client that leaves mid-stream cancels the upstream request: the fake sees its connection closed."""

from __future__ import annotations

import time

import openai
import pytest
from openai import OpenAI

from providers.models import ModelRoute
from tenants.tests.factories import IssuedKey
from tests.fakes.openai_upstream import FakeUpstream, Hang, Reply
from tests.servers import PorticoServer, Settle

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("committed_db")]

# Forty words a tenth of a second apart: a stream that would run for four seconds if nobody left.
LONG_ANSWER = " ".join(f"word{i}" for i in range(40))
NOTICE_WITHIN = 2.0
GO = [{"role": "user", "content": "go"}]


@pytest.fixture
def route(upstream: FakeUpstream, upstream_route: ModelRoute, key: IssuedKey, settle: Settle) -> ModelRoute:
    upstream.script(upstream_route.upstream_model, Reply(LONG_ANSWER, delay=0.1))
    settle()
    return upstream_route


def _assert_upstream_saw_the_client_leave(upstream: FakeUpstream, route: ModelRoute, left_at: float) -> None:
    [log] = upstream.answers(route.upstream_model)
    assert log.closed_early.wait(NOTICE_WITHIN), "the upstream request was not cancelled"
    assert not log.finished
    assert time.monotonic() - left_at < NOTICE_WITHIN
    assert len(log.sent_at) < 10


def test_closing_a_sync_stream_closes_the_upstream_connection(
    client: OpenAI, upstream: FakeUpstream, route: ModelRoute
) -> None:
    stream = client.chat.completions.create(model=route.public_id, messages=GO, stream=True)
    next(stream)
    next(stream)
    stream.close()
    left_at = time.monotonic()

    _assert_upstream_saw_the_client_leave(upstream, route, left_at)


async def test_closing_an_async_stream_closes_the_upstream_connection(
    portico: PorticoServer, key: IssuedKey, upstream: FakeUpstream, route: ModelRoute
) -> None:
    async with portico.async_client(key.plaintext) as client:
        stream = await client.chat.completions.create(model=route.public_id, messages=GO, stream=True)
        chunks = 0
        async for _chunk in stream:
            chunks += 1
            if chunks == 3:
                break
        await stream.close()
        left_at = time.monotonic()

    _assert_upstream_saw_the_client_leave(upstream, route, left_at)


def test_the_server_keeps_serving_after_a_client_left(
    client: OpenAI, upstream: FakeUpstream, route: ModelRoute
) -> None:
    stream = client.chat.completions.create(model=route.public_id, messages=GO, stream=True)
    next(stream)
    stream.close()

    models = client.models.list()

    assert [model.id for model in models] == [route.public_id]


def test_a_client_that_gives_up_on_a_hanging_request_cancels_it_upstream(
    portico: PorticoServer, key: IssuedKey, upstream: FakeUpstream, route: ModelRoute
) -> None:
    upstream.script(route.upstream_model, Hang())  # with the provider's default read timeout of minutes

    with portico.client(key.plaintext, timeout=0.5) as impatient, pytest.raises(openai.APITimeoutError):
        impatient.chat.completions.create(model=route.public_id, messages=GO)
    left_at = time.monotonic()

    _assert_upstream_saw_the_client_leave(upstream, route, left_at)
