"""The built-in `mock` provider kind, end to end: no upstream, deterministic answers."""

from __future__ import annotations

import pytest
from openai import OpenAI

from providers.models import ModelRoute
from tenants.tests.factories import IssuedKey
from tests.servers import PorticoServer, Settle

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("committed_db")]

CONVERSATION = [
    {"role": "system", "content": "You are terse."},
    {"role": "user", "content": "first question"},
    {"role": "assistant", "content": "first answer"},
    {"role": "user", "content": "echo these five words please"},
]


@pytest.fixture
def route(echo_route: ModelRoute, key: IssuedKey, settle: Settle) -> ModelRoute:
    settle()
    return echo_route


def test_it_echoes_the_last_user_message(client: OpenAI, route: ModelRoute) -> None:
    completion = client.chat.completions.create(model=route.public_id, messages=CONVERSATION)

    assert completion.model == route.public_id
    assert completion.choices[0].message.content == "echo these five words please"
    assert completion.choices[0].finish_reason == "stop"


def test_it_reports_one_token_per_word(client: OpenAI, route: ModelRoute) -> None:
    completion = client.chat.completions.create(model=route.public_id, messages=CONVERSATION)

    assert completion.usage is not None
    assert completion.usage.prompt_tokens == 3 + 2 + 2 + 5
    assert completion.usage.completion_tokens == 5
    assert completion.usage.total_tokens == 17


def test_it_answers_the_same_way_twice(client: OpenAI, route: ModelRoute) -> None:
    first = client.chat.completions.create(model=route.public_id, messages=CONVERSATION)
    second = client.chat.completions.create(model=route.public_id, messages=CONVERSATION)

    assert first.choices[0].message == second.choices[0].message
    assert first.usage == second.usage


def test_it_streams_word_by_word_with_usage(client: OpenAI, route: ModelRoute) -> None:
    with client.chat.completions.create(
        model=route.public_id, messages=CONVERSATION, stream=True, stream_options={"include_usage": True}
    ) as stream:
        chunks = list(stream)

    words = [chunk.choices[0].delta.content for chunk in chunks if chunk.choices and chunk.choices[0].delta.content]
    assert words == ["echo", " these", " five", " words", " please"]
    assert {chunk.model for chunk in chunks} == {route.public_id}
    assert [chunk.choices[0].finish_reason for chunk in chunks if chunk.choices][-1] == "stop"
    assert chunks[-1].usage is not None
    assert chunks[-1].usage.completion_tokens == 5


async def test_the_async_client_streams_from_it_too(portico: PorticoServer, key: IssuedKey, route: ModelRoute) -> None:
    async with portico.async_client(key.plaintext) as client:
        stream = await client.chat.completions.create(
            model=route.public_id, messages=[{"role": "user", "content": "hi there"}], stream=True
        )
        text = "".join([chunk.choices[0].delta.content or "" async for chunk in stream if chunk.choices])

    assert text == "hi there"


def test_it_lists_the_mock_route(client: OpenAI, route: ModelRoute) -> None:
    assert [model.id for model in client.models.list()] == [route.public_id]
