"""Non-streamed chat completions through an `openai`-kind provider in front of the fake upstream."""

from __future__ import annotations

import pytest
from openai import OpenAI

from providers.models import ModelRoute
from tenants.tests.factories import IssuedKey
from tests.fakes.openai_upstream import FakeUpstream, Reply
from tests.servers import Settle

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("committed_db")]

HELLO = [{"role": "user", "content": "Say hello"}]


@pytest.fixture
def route(upstream: FakeUpstream, upstream_route: ModelRoute, key: IssuedKey, settle: Settle) -> ModelRoute:
    upstream.script(upstream_route.upstream_model, Reply("Hello, tenant!", prompt_tokens=9))
    settle()
    return upstream_route


def test_it_returns_the_upstream_answer_under_the_public_model_id(client: OpenAI, route: ModelRoute) -> None:
    completion = client.chat.completions.create(model=route.public_id, messages=HELLO)

    assert completion.model == route.public_id
    assert completion.object == "chat.completion"
    assert completion.choices[0].message.role == "assistant"
    assert completion.choices[0].message.content == "Hello, tenant!"
    assert completion.choices[0].finish_reason == "stop"
    assert completion.usage is not None
    assert (completion.usage.prompt_tokens, completion.usage.completion_tokens) == (9, 2)
    assert completion.usage.total_tokens == 11


def test_it_sends_the_upstream_model_name_and_the_providers_credential(
    client: OpenAI, upstream: FakeUpstream, route: ModelRoute, key: IssuedKey, upstream_credential: str
) -> None:
    client.chat.completions.create(model=route.public_id, messages=HELLO)

    [received] = upstream.received(route.upstream_model)
    assert received.path == "/v1/chat/completions"
    assert received.body["model"] == route.upstream_model
    assert received.body["messages"] == HELLO
    assert received.headers["authorization"] == f"Bearer {upstream_credential}"
    assert received.headers["content-type"] == "application/json"


def test_the_tenants_key_never_reaches_the_upstream(
    client: OpenAI, upstream: FakeUpstream, route: ModelRoute, key: IssuedKey
) -> None:
    client.chat.completions.create(model=route.public_id, messages=HELLO)

    [received] = upstream.received(route.upstream_model)
    assert key.plaintext not in repr(received)


def test_it_passes_every_other_parameter_through_unchanged(
    client: OpenAI, upstream: FakeUpstream, route: ModelRoute
) -> None:
    tools = [
        {
            "type": "function",
            "function": {
                "name": "get_weather",
                "description": "Weather in a city",
                "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
            },
        }
    ]
    completion = client.chat.completions.create(
        model=route.public_id,
        messages=HELLO,
        tools=tools,
        tool_choice="auto",
        response_format={"type": "json_object"},
        n=2,
        temperature=0.25,
        seed=42,
        user="end-user-7",
        extra_body={"foo": 1, "vendor_option": {"nested": [1, "two", None]}},
    )

    [received] = upstream.received(route.upstream_model)
    assert received.body == {
        "model": route.upstream_model,
        "messages": HELLO,
        "tools": tools,
        "tool_choice": "auto",
        "response_format": {"type": "json_object"},
        "n": 2,
        "temperature": 0.25,
        "seed": 42,
        "user": "end-user-7",
        "foo": 1,
        "vendor_option": {"nested": [1, "two", None]},
    }
    assert len(completion.choices) == 2


def test_every_answer_carries_a_request_id(client: OpenAI, route: ModelRoute) -> None:
    raw = client.chat.completions.with_raw_response.create(model=route.public_id, messages=HELLO)

    assert raw.status_code == 200
    assert raw.headers["x-request-id"]
    assert raw.headers["content-type"].startswith("application/json")


def test_it_echoes_the_clients_own_request_id(client: OpenAI, route: ModelRoute) -> None:
    raw = client.chat.completions.with_raw_response.create(
        model=route.public_id, messages=HELLO, extra_headers={"X-Request-Id": "client-chose-this-id"}
    )

    assert raw.headers["x-request-id"] == "client-chose-this-id"


def test_two_requests_get_different_request_ids(client: OpenAI, route: ModelRoute) -> None:
    first = client.chat.completions.with_raw_response.create(model=route.public_id, messages=HELLO)
    second = client.chat.completions.with_raw_response.create(model=route.public_id, messages=HELLO)

    assert first.headers["x-request-id"] != second.headers["x-request-id"]


def test_it_replaces_an_overlong_request_id_with_its_own(client: OpenAI, route: ModelRoute) -> None:
    raw = client.chat.completions.with_raw_response.create(
        model=route.public_id, messages=HELLO, extra_headers={"X-Request-Id": "x" * 500}
    )

    assert raw.headers["x-request-id"]
    assert len(raw.headers["x-request-id"]) < 500
