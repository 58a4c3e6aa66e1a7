"""Anthropic's Messages API at /v1/messages, used with the official `anthropic` SDK.

An OpenAI-kind deployment is sent the request's chat form and its answers come
back translated; an Anthropic-kind one is sent the request as it came and its
answers come back as they were, but for the model's name. Either way the call
is limited, routed and written to the ledger as a chat completion is.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import anthropic
import pytest
from aiohttp import web
from anthropic import Anthropic
from openai import OpenAI

from billing import tokens
from billing.models import Budget, RateLimit
from billing.tests.factories import make_usage
from gateway.messages.requests import chat_request
from providers.models import ModelRoute
from providers.tests.factories import make_provider, make_route
from tenants.tests.factories import IssuedKey, make_key, make_tenant
from tests.conftest import Deploy
from tests.fakes.anthropic_upstream import Fail as AnthropicFail
from tests.fakes.anthropic_upstream import FakeAnthropic, Replay, recording_events
from tests.fakes.anthropic_upstream import Reply as AnthropicReply
from tests.fakes.fleet import FakeFleet, refused_base_url
from tests.fakes.openai_upstream import Fail as OpenAIFail
from tests.fakes.openai_upstream import FailMidStream, FakeUpstream, Reply, completion, stream_events
from tests.integration.conftest import Personas
from tests.integration.test_ledger import cost, ledger_rows, new_request_id, priced
from tests.servers import PorticoServer, Settle

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("committed_db")]

ANSWER = "The capital of France is Paris."
REASONING = "The user wants a capital; Paris it is."
WEATHER_TOOL = {
    "name": "get_weather",
    "description": "Weather in a city",
    "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
}
ASK = [{"role": "user", "content": "What is the capital of France?"}]
COUNTED = 4242  # what the counting Anthropic fake answers every count_tokens with
PIXEL = base64.b64encode(b"\x89PNG\r\n\x1a\nnot really a png").decode()


class ToolingUpstream(FakeUpstream):
    """An OpenAI-compatible upstream that calls `get_weather` when offered tools (and answers with the tool's
    result once given it), stops at a stop sequence and names it as vLLM does (`stop_reason`), and reasons aloud
    (`reasoning_content`)."""

    def _turn(self, model: str, content: str) -> dict[str, Any]:
        body = self.received(model)[-1].body
        last = body["messages"][-1]
        if last["role"] == "tool":
            return {"content": f"The tool said: {last['content']}", "finish_reason": "stop"}
        if body.get("tools"):
            call = {"id": "call_weather_1", "type": "function"}
            call["function"] = {"name": "get_weather", "arguments": '{"city": "Paris"}'}
            return {"content": None, "tool_calls": [call], "finish_reason": "tool_calls"}
        for stop in body.get("stop") or ():
            if stop in content:
                return {"content": content[: content.index(stop)], "finish_reason": "stop", "stop_reason": stop}
        return {"content": content, "finish_reason": "stop"}

    def chat_answer(self, model: str, reply: Reply, n: int) -> dict[str, Any]:
        answer = completion(model, reply, n)
        turn = self._turn(model, reply.content)
        choice = answer["choices"][0]
        choice["finish_reason"] = turn.pop("finish_reason")
        if "stop_reason" in turn:
            choice["stop_reason"] = turn.pop("stop_reason")
        choice["message"].update(turn, reasoning_content=REASONING)
        return answer

    def chat_events(self, model: str, reply: Reply, *, include_usage: bool) -> list[bytes]:
        turn = self._turn(model, reply.content)
        text = turn.get("content") or ""
        events = stream_events(model, text, prompt_tokens=reply.prompt_tokens, include_usage=include_usage)
        chunks = [json.loads(event) for event in events]
        role, words, finish = chunks[0], chunks[1 : len(text.split()) + 1], chunks[len(text.split()) + 1]
        thinking = {**role, "choices": [{"index": 0, "delta": {"reasoning_content": REASONING}}]}
        body = words
        for call in turn.get("tool_calls") or ():
            announced = {**call, "index": 0, "function": {"name": call["function"]["name"], "arguments": ""}}
            halves = (call["function"]["arguments"][:9], call["function"]["arguments"][9:])
            body = [{**role, "choices": [{"index": 0, "delta": {"tool_calls": [announced]}}]}]
            body += [
                {
                    **role,
                    "choices": [{"index": 0, "delta": {"tool_calls": [{"index": 0, "function": {"arguments": half}}]}}],
                }
                for half in halves
            ]
        finish["choices"][0]["finish_reason"] = turn["finish_reason"]
        if "stop_reason" in turn:
            finish["choices"][0]["stop_reason"] = turn["stop_reason"]
        return [
            json.dumps(chunk).encode() for chunk in [role, thinking, *body, finish, *chunks[len(text.split()) + 2 :]]
        ]


class CountingAnthropic(FakeAnthropic):
    """The Anthropic fake, with `POST /v1/messages/count_tokens` answering `COUNTED` for any request."""

    async def _open(self) -> None:
        app = web.Application()
        app.router.add_post("/v1/messages", self._messages)
        app.router.add_post("/v1/messages/count_tokens", self._count)
        self._runner = web.AppRunner(app, handler_cancellation=True, access_log=None, shutdown_timeout=0.5)
        await self._runner.setup()
        assert self._socket is not None
        await web.SockSite(self._runner, self._socket).start()

    async def _count(self, request: web.Request) -> web.Response:
        body = await request.json()
        self._record(request, body)
        if (refusal := self._refusal(request)) is not None:
            return refusal
        return web.json_response({"input_tokens": COUNTED})


@pytest.fixture(scope="module")
def tooling_upstream() -> Iterator[ToolingUpstream]:
    fake = ToolingUpstream()
    fake.start()
    yield fake
    fake.stop()


@pytest.fixture(scope="module")
def counting_anthropic(anthropic_credential: str) -> Iterator[CountingAnthropic]:
    fake = CountingAnthropic(api_key=anthropic_credential)
    fake.start()
    yield fake
    fake.stop()


@pytest.fixture
def gpt(tooling_upstream: ToolingUpstream, upstream_credential: str, tag: str) -> ModelRoute:
    provider = make_provider(
        kind="openai", name=f"tooling-{tag}", base_url=tooling_upstream.base_url, credential=upstream_credential
    )
    return make_route(
        provider=provider, public_id=f"gpt-msgs-{tag}", upstream_model=f"tooling-{tag}", supports_vision=True
    )


@pytest.fixture
def claude(anthropic_route: ModelRoute) -> ModelRoute:
    return anthropic_route


@pytest.fixture
def people(personas: Callable[..., Personas], gpt: ModelRoute, claude: ModelRoute, settle: Settle) -> Personas:
    found = personas(gpt, claude)
    settle()
    return found


@pytest.fixture
def sdk(portico: PorticoServer, people: Personas) -> Iterator[Anthropic]:
    with Anthropic(base_url=portico.base_url, api_key=people.owner.plaintext, max_retries=0) as client:
        yield client


def _sdk(portico: PorticoServer, key: IssuedKey | str, **options: Any) -> Anthropic:
    plaintext = key if isinstance(key, str) else key.plaintext
    return Anthropic(base_url=portico.base_url, api_key=plaintext, max_retries=0, **options)


def _event_types(raw: bytes) -> list[str]:
    return [line.split(b": ", 1)[1].decode() for line in raw.split(b"\n") if line.startswith(b"event: ")]


# --- translated: an OpenAI-kind deployment ---


def test_a_translated_answer_is_an_anthropic_message(sdk: Anthropic, gpt: ModelRoute) -> None:
    message = sdk.messages.create(model=gpt.public_id, max_tokens=100, messages=ASK)

    assert message.type == "message"
    assert message.id.startswith("msg_")
    assert message.model == gpt.public_id
    assert [block.type for block in message.content] == ["text"]  # thinking was not asked for
    assert message.content[0].text == "Hello from the fake upstream."
    assert (message.stop_reason, message.stop_sequence) == ("end_turn", None)
    assert (message.usage.input_tokens, message.usage.output_tokens) == (11, 5)


def test_the_chat_form_goes_to_an_openai_deployment(
    sdk: Anthropic, gpt: ModelRoute, tooling_upstream: ToolingUpstream
) -> None:
    sdk.messages.create(
        model=gpt.public_id,
        max_tokens=300,
        system=[{"type": "text", "text": "Be brief."}, {"type": "text", "text": "Be kind."}],
        messages=ASK,
        temperature=0.5,
        top_k=5,
        metadata={"user_id": "end-user-7"},
    )

    [received] = tooling_upstream.received(gpt.upstream_model)
    assert received.path == "/v1/chat/completions"
    assert received.body == {
        "model": gpt.upstream_model,
        "messages": [{"role": "system", "content": "Be brief.\n\nBe kind."}, *ASK],
        "max_completion_tokens": 300,
        "temperature": 0.5,
        "user": "end-user-7",
    }


def test_a_translated_stream_follows_anthropics_event_grammar(
    sdk: Anthropic, gpt: ModelRoute, portico: PorticoServer, people: Personas
) -> None:
    with sdk.messages.stream(model=gpt.public_id, max_tokens=100, messages=ASK) as stream:
        text = "".join(stream.text_stream)
        final = stream.get_final_message()
    raw = portico.http.post(
        "/v1/messages",
        headers={"x-api-key": people.owner.plaintext, "anthropic-version": "2023-06-01"},
        json={"model": gpt.public_id, "max_tokens": 100, "messages": ASK, "stream": True},
    )

    assert text == "Hello from the fake upstream."
    assert final.content[0].type == "text"
    assert (final.stop_reason, final.usage.input_tokens, final.usage.output_tokens) == ("end_turn", 11, 5)
    assert raw.headers["content-type"].startswith("text/event-stream")
    assert _event_types(raw.content) == [
        "message_start",
        "ping",
        "content_block_start",
        *["content_block_delta"] * 5,
        "content_block_stop",
        "message_delta",
        "message_stop",
    ]


def test_thinking_comes_back_as_a_thinking_block_when_asked_for(sdk: Anthropic, gpt: ModelRoute) -> None:
    thinking: Any = {"type": "enabled", "budget_tokens": 1024}
    whole = sdk.messages.create(model=gpt.public_id, max_tokens=2000, messages=ASK, thinking=thinking)
    with sdk.messages.stream(model=gpt.public_id, max_tokens=2000, messages=ASK, thinking=thinking) as stream:
        streamed = stream.get_final_message()

    for message in (whole, streamed):
        assert [block.type for block in message.content] == ["thinking", "text"]
        assert message.content[0].thinking == REASONING  # type: ignore[union-attr]


@pytest.mark.parametrize("streamed", [False, True])
def test_a_tool_use_round_trip_through_an_openai_deployment(
    sdk: Anthropic, gpt: ModelRoute, tooling_upstream: ToolingUpstream, streamed: bool
) -> None:
    asked: dict[str, Any] = {"model": gpt.public_id, "max_tokens": 200, "messages": ASK, "tools": [WEATHER_TOOL]}
    if streamed:
        with sdk.messages.stream(**asked, tool_choice={"type": "any"}) as stream:
            first = stream.get_final_message()
    else:
        first = sdk.messages.create(**asked, tool_choice={"type": "any"})
    [call] = [block for block in first.content if block.type == "tool_use"]
    assert (call.id, call.name, call.input, first.stop_reason) == (
        "call_weather_1",
        "get_weather",
        {"city": "Paris"},
        "tool_use",
    )

    result = {"type": "tool_result", "tool_use_id": call.id, "content": [{"type": "text", "text": "18 C, sunny"}]}
    second = sdk.messages.create(
        **{
            **asked,
            "messages": [*ASK, {"role": "assistant", "content": first.content}, {"role": "user", "content": [result]}],
        }
    )

    assert second.content[0].text == "The tool said: 18 C, sunny"  # type: ignore[union-attr]
    sent = tooling_upstream.received(gpt.upstream_model)
    assert sent[0].body["tool_choice"] == "required"
    assert sent[0].body["tools"] == [
        {
            "type": "function",
            "function": {
                "name": "get_weather",
                "parameters": WEATHER_TOOL["input_schema"],
                "description": "Weather in a city",
            },
        }
    ]
    assert sent[-1].messages[1:] == [
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {
                    "id": "call_weather_1",
                    "type": "function",
                    "function": {"name": "get_weather", "arguments": '{"city":"Paris"}'},
                }
            ],
        },
        {"role": "tool", "tool_call_id": "call_weather_1", "content": "18 C, sunny"},
    ]


def test_an_image_goes_as_an_image_url_part(sdk: Anthropic, gpt: ModelRoute, tooling_upstream: ToolingUpstream) -> None:
    image: Any = {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": PIXEL}}
    linked: Any = {"type": "image", "source": {"type": "url", "url": "https://images.example/cat.png"}}
    sdk.messages.create(
        model=gpt.public_id,
        max_tokens=50,
        messages=[{"role": "user", "content": [{"type": "text", "text": "What is this?"}, image, linked]}],
    )

    [received] = tooling_upstream.received(gpt.upstream_model)
    assert received.messages == [
        {
            "role": "user",
            "content": [
                {"type": "text", "text": "What is this?"},
                {"type": "image_url", "image_url": {"url": f"data:image/png;base64,{PIXEL}"}},
                {"type": "image_url", "image_url": {"url": "https://images.example/cat.png"}},
            ],
        }
    ]


@pytest.mark.parametrize("streamed", [False, True])
def test_a_stop_sequence_the_server_names_is_the_stop_reason(
    sdk: Anthropic, gpt: ModelRoute, tooling_upstream: ToolingUpstream, streamed: bool
) -> None:
    asked: dict[str, Any] = {"model": gpt.public_id, "max_tokens": 50, "messages": ASK, "stop_sequences": ["fake"]}
    if streamed:
        with sdk.messages.stream(**asked) as stream:
            message = stream.get_final_message()
    else:
        message = sdk.messages.create(**asked)

    assert (message.stop_reason, message.stop_sequence) == ("stop_sequence", "fake")
    # The fake streams word by word, so a streamed answer loses the space before the stop sequence.
    assert message.content[0].text.rstrip() == "Hello from the"  # type: ignore[union-attr]
    assert tooling_upstream.received(gpt.upstream_model)[0].body["stop"] == ["fake"]


def test_an_upstream_failure_mid_stream_is_an_error_event(
    sdk: Anthropic, gpt: ModelRoute, tooling_upstream: ToolingUpstream
) -> None:
    tooling_upstream.script(gpt.upstream_model, FailMidStream(OpenAIFail(500, type="server_error")))

    with pytest.raises(anthropic.APIStatusError) as failed:  # noqa: PT012 - the stream is read inside
        with sdk.messages.stream(model=gpt.public_id, max_tokens=50, messages=ASK) as stream:
            list(stream)

    assert failed.value.body["error"]["type"] == "api_error"  # type: ignore[index]


# --- passed through: an Anthropic-kind deployment ---


def test_the_request_goes_to_an_anthropic_deployment_as_it_came(
    sdk: Anthropic, claude: ModelRoute, anthropic_upstream: FakeAnthropic, anthropic_credential: str, people: Personas
) -> None:
    anthropic_upstream.script(claude.upstream_model, AnthropicReply(ANSWER, input_tokens=21))
    asked: dict[str, Any] = {
        "max_tokens": 300,
        "system": [{"type": "text", "text": "Be brief.", "cache_control": {"type": "ephemeral"}}],
        "messages": ASK,
        "top_k": 5,
        "thinking": {"type": "enabled", "budget_tokens": 1024},
        "stop_sequences": ["END"],
    }

    message = sdk.messages.create(model=claude.public_id, **asked, extra_headers={"anthropic-beta": "fancy-2025"})

    assert message.model == claude.public_id
    assert message.content[0].text == ANSWER  # type: ignore[union-attr]
    assert (message.usage.input_tokens, message.usage.output_tokens) == (21, 6)
    [received] = anthropic_upstream.received(claude.upstream_model)
    assert (received.path, received.body) == ("/v1/messages", {"model": claude.upstream_model, **asked})
    assert received.headers["x-api-key"] == anthropic_credential
    assert received.headers["anthropic-version"] == "2023-06-01"
    assert received.headers["anthropic-beta"] == "fancy-2025"
    assert people.owner.plaintext not in repr(received)


def test_an_anthropic_stream_comes_back_event_for_event(
    sdk: Anthropic, claude: ModelRoute, anthropic_upstream: FakeAnthropic
) -> None:
    anthropic_upstream.script(claude.upstream_model, Replay("parallel_tool_calls"))

    with sdk.messages.create(model=claude.public_id, max_tokens=300, messages=ASK, stream=True) as stream:
        events = list(stream)
    with sdk.messages.stream(model=claude.public_id, max_tokens=300, messages=ASK) as helper:
        final = helper.get_final_message()

    recorded = [json.loads(block.split(b"data: ", 1)[1]) for block in recording_events("parallel_tool_calls")]
    assert [event.type for event in events] == [event["type"] for event in recorded if event["type"] != "ping"]
    assert events[0].message.model == claude.public_id  # type: ignore[union-attr]
    assert [(block.type, getattr(block, "input", None)) for block in final.content] == [
        ("text", None),
        ("tool_use", {"city": "Paris", "unit": "celsius"}),
        ("tool_use", {"city": "Tokyo", "unit": "celsius"}),
        ("tool_use", {"timezone": "Asia/Tokyo"}),
    ]
    assert (final.stop_reason, final.usage.input_tokens, final.usage.cache_read_input_tokens) == ("tool_use", 412, 2048)


def test_thinking_blocks_pass_through(sdk: Anthropic, claude: ModelRoute, anthropic_upstream: FakeAnthropic) -> None:
    anthropic_upstream.script(claude.upstream_model, Replay("thinking"))

    with sdk.messages.stream(model=claude.public_id, max_tokens=3000, messages=ASK) as stream:
        final = stream.get_final_message()

    assert final.content[0].type == "thinking"
    assert final.content[0].signature  # type: ignore[union-attr]


def test_an_anthropic_error_mid_stream_reaches_the_client(
    sdk: Anthropic, claude: ModelRoute, anthropic_upstream: FakeAnthropic
) -> None:
    anthropic_upstream.script(claude.upstream_model, Replay("overloaded_midstream"))

    with pytest.raises(anthropic.APIStatusError) as failed:  # noqa: PT012 - the stream is read inside
        with sdk.messages.stream(model=claude.public_id, max_tokens=50, messages=ASK) as stream:
            list(stream)

    assert failed.value.body["error"]["type"] == "overloaded_error"  # type: ignore[index]


def test_an_anthropic_error_answer_keeps_anthropics_shape(
    sdk: Anthropic, claude: ModelRoute, anthropic_upstream: FakeAnthropic
) -> None:
    anthropic_upstream.script(
        claude.upstream_model, AnthropicFail(429, "rate_limit_error", headers={"retry-after": "7"})
    )

    with pytest.raises(anthropic.RateLimitError) as refused:
        sdk.messages.create(model=claude.public_id, max_tokens=50, messages=ASK)

    assert refused.value.body == {
        "type": "error",
        "error": {"type": "rate_limit_error", "message": "The fake Anthropic upstream refused the request."},
    }
    assert refused.value.response.headers["retry-after"] == "7"


# --- who may call, and refusals ---


def test_a_teammate_may_call_and_an_outsider_sees_no_such_model(
    portico: PorticoServer, people: Personas, gpt: ModelRoute
) -> None:
    with _sdk(portico, people.teammate) as teammate, _sdk(portico, people.outsider) as outsider:
        assert teammate.messages.create(model=gpt.public_id, max_tokens=10, messages=ASK).type == "message"
        with pytest.raises(anthropic.NotFoundError) as hidden:
            outsider.messages.create(model=gpt.public_id, max_tokens=10, messages=ASK)

    assert hidden.value.body["error"]["type"] == "not_found_error"  # type: ignore[index]


def test_an_unknown_model_is_a_not_found_error(sdk: Anthropic) -> None:
    with pytest.raises(anthropic.NotFoundError) as missing:
        sdk.messages.create(model="no-such-model", max_tokens=10, messages=ASK)

    assert missing.value.status_code == 404
    assert missing.value.body["type"] == "error"  # type: ignore[index]
    assert missing.value.body["error"]["type"] == "not_found_error"  # type: ignore[index]


@pytest.mark.parametrize("key", ["pk-not-a-real-key", ""])
def test_a_bad_or_missing_key_is_an_authentication_error(
    portico: PorticoServer, people: Personas, gpt: ModelRoute, key: str
) -> None:
    headers = {"anthropic-version": "2023-06-01", **({"x-api-key": key} if key else {})}
    answer = portico.http.post(
        "/v1/messages", headers=headers, json={"model": gpt.public_id, "max_tokens": 5, "messages": ASK}
    )
    with _sdk(portico, key or "pk-x") as client, pytest.raises(anthropic.AuthenticationError):
        client.messages.create(model=gpt.public_id, max_tokens=10, messages=ASK)

    assert answer.status_code == 401
    assert answer.json()["type"] == "error"
    assert answer.json()["error"]["type"] == "authentication_error"


def test_a_bearer_token_is_a_key_too(portico: PorticoServer, people: Personas, gpt: ModelRoute) -> None:
    with Anthropic(base_url=portico.base_url, auth_token=people.owner.plaintext, max_retries=0) as client:
        assert client.messages.create(model=gpt.public_id, max_tokens=10, messages=ASK).type == "message"


def test_an_invalid_request_names_the_field(sdk: Anthropic, gpt: ModelRoute) -> None:
    with pytest.raises(anthropic.BadRequestError) as refused:
        sdk.messages.create(model=gpt.public_id, max_tokens=10, messages=ASK, temperature=1.5)

    assert refused.value.body["error"] == {  # type: ignore[index]
        "type": "invalid_request_error",
        "message": "temperature: Input should be less than or equal to 1",
    }


def test_a_rate_limit_refusal_is_a_rate_limit_error(
    portico: PorticoServer, people: Personas, gpt: ModelRoute, settle: Settle
) -> None:
    RateLimit.objects.create(api_key=people.teammate.api_key, requests_per_minute=1)
    settle()

    with _sdk(portico, people.teammate) as client:
        client.messages.create(model=gpt.public_id, max_tokens=10, messages=ASK)
        with pytest.raises(anthropic.RateLimitError) as refused:
            client.messages.create(model=gpt.public_id, max_tokens=10, messages=ASK)

    assert refused.value.body["error"]["type"] == "rate_limit_error"  # type: ignore[index]
    assert int(refused.value.response.headers["retry-after"]) >= 1


# --- the ledger ---


def test_a_message_is_one_ledger_row_with_the_chat_calls_usage_and_cost(
    portico: PorticoServer, people: Personas, gpt: ModelRoute, claude: ModelRoute, anthropic_upstream: FakeAnthropic
) -> None:
    priced(gpt)
    priced(claude)
    anthropic_upstream.script(claude.upstream_model, AnthropicReply(ANSWER, input_tokens=21))
    ids = {name: new_request_id() for name in ("message", "stream", "chat", "claude")}
    with _sdk(portico, people.owner) as client, portico.client(people.owner.plaintext) as openai_client:
        client.messages.create(
            model=gpt.public_id, max_tokens=10, messages=ASK, extra_headers={"x-request-id": ids["message"]}
        )
        with client.messages.stream(
            model=gpt.public_id, max_tokens=10, messages=ASK, extra_headers={"x-request-id": ids["stream"]}
        ) as stream:
            stream.until_done()
        _chat(openai_client, gpt, ids["chat"])
        client.messages.create(
            model=claude.public_id, max_tokens=10, messages=ASK, extra_headers={"x-request-id": ids["claude"]}
        )

    rows = {row.client_request_id: row for row in ledger_rows(ids.values())}
    assert len(rows) == 4
    for name in ("message", "stream", "chat"):
        row = rows[ids[name]]
        assert (row.model, row.prompt_tokens, row.completion_tokens, row.status) == (gpt.public_id, 11, 5, 200)
        assert row.cost == cost(11, 5)
    anthropic_row = rows[ids["claude"]]
    assert (anthropic_row.model, anthropic_row.prompt_tokens, anthropic_row.completion_tokens) == (
        claude.public_id,
        21,
        6,
    )
    assert anthropic_row.cost == cost(21, 6)


def _chat(client: OpenAI, route: ModelRoute, request_id: str) -> None:
    client.chat.completions.create(
        model=route.public_id,
        messages=ASK,
        max_tokens=10,
        extra_headers={"x-request-id": request_id},  # type: ignore[arg-type]
    )


# --- budgets and failover, as for chat completions ---


def test_a_spent_tenant_budget_is_anthropics_rate_limit_error_and_no_upstream_is_called(
    portico: PorticoServer, people: Personas, gpt: ModelRoute, tooling_upstream: ToolingUpstream, settle: Settle
) -> None:
    Budget.objects.create(tenant=people.owner.api_key.tenant, amount=Decimal("1.00"))
    make_usage(api_key=people.owner.api_key, cost="1.00")  # spent by the owner, refused to the teammate too
    settle()

    with _sdk(portico, people.teammate) as client, pytest.raises(anthropic.RateLimitError) as refused:
        client.messages.create(model=gpt.public_id, max_tokens=10, messages=ASK)

    month = datetime.now(UTC).strftime("%Y-%m")
    assert refused.value.status_code == 429
    assert refused.value.body == {
        "type": "error",
        "error": {
            "type": "rate_limit_error",
            "message": "You exceeded your current quota, please check your plan and billing details. "
            f"Budget of your organization for {month}: Limit $1.00, Used $1.00.",
        },
    }
    assert int(refused.value.response.headers["retry-after"]) >= 1
    assert tooling_upstream.received(gpt.upstream_model) == []


@pytest.mark.parametrize("streamed", [False, True], ids=["whole", "streamed"])
@pytest.mark.parametrize("trouble", ["500", "refused connection"])
def test_the_next_deployment_answers_a_message_when_the_first_fails(
    portico: PorticoServer,
    key: IssuedKey,
    deploy: Deploy,
    upstreams: FakeFleet,
    settle: Settle,
    tag: str,
    trouble: str,
    streamed: bool,
) -> None:
    upstream_model = f"msgs-fo-{tag}"
    urls = [upstreams[0].base_url, upstreams[1].base_url]
    if trouble == "500":
        upstreams[0].script(upstream_model, OpenAIFail(500, "upstream exploded", type="server_error"))
    else:
        urls[0] = refused_base_url()
    routes = deploy(f"gpt-msgs-fo-{tag}", upstream_model, urls=urls)
    settle()
    request_id = new_request_id()

    with _sdk(portico, key) as client:
        raw = client.messages.with_raw_response.create(
            model=routes[0].public_id,
            max_tokens=10,
            messages=ASK,
            stream=streamed,
            extra_headers={"x-request-id": request_id},
        )
        if streamed:
            text = "".join(
                event.delta.text
                for event in raw.parse()
                if event.type == "content_block_delta" and event.delta.type == "text_delta"
            )
        else:
            [block] = raw.parse().content
            text = block.text if block.type == "text" else ""

    assert text == "served by fake-2"
    assert (raw.headers["x-portico-attempts"], raw.headers["x-portico-provider"]) == ("2", f"fake-2-{tag}")
    [row] = ledger_rows([request_id])
    assert (row.status, row.model, row.deployment_id, row.attempts) == (200, routes[0].public_id, routes[1].pk, 2)
    assert len(upstreams[0].received(upstream_model)) == (1 if trouble == "500" else 0)


# --- count_tokens ---


def test_count_tokens_is_porticos_estimate_for_a_translated_model(sdk: Anthropic, gpt: ModelRoute) -> None:
    asked: dict[str, Any] = {"model": gpt.public_id, "messages": ASK, "system": "Be brief.", "tools": [WEATHER_TOOL]}

    counted = sdk.messages.count_tokens(**asked)

    expected = tokens.count_chat_prompt(chat_request(asked).body, model=gpt.upstream_model)
    assert counted.input_tokens == expected > 0


def test_count_tokens_asks_an_anthropic_deployment_and_counts_here_if_it_cannot(
    portico: PorticoServer,
    claude: ModelRoute,
    counting_anthropic: CountingAnthropic,
    anthropic_credential: str,
    settle: Settle,
    tag: str,
) -> None:
    provider = make_provider(
        kind="anthropic", name=f"counting-{tag}", base_url=counting_anthropic.base_url, credential=anthropic_credential
    )
    counting = make_route(provider=provider, public_id=f"claude-counting-{tag}", upstream_model=f"counter-{tag}")
    key = make_key(tenant=make_tenant(slug=f"counter-{tag}", allowed_model_ids=[counting.pk, claude.pk]))
    settle()

    with _sdk(portico, key) as client:
        asked = client.messages.count_tokens(model=counting.public_id, messages=ASK, system="Be brief.")
        fallback = client.messages.count_tokens(model=claude.public_id, messages=ASK)

    assert asked.input_tokens == COUNTED
    [received] = counting_anthropic.received(counting.upstream_model)
    assert received.body == {"model": counting.upstream_model, "messages": ASK, "system": "Be brief."}
    assert fallback.input_tokens == tokens.count_chat_prompt(
        chat_request({"model": "x", "messages": ASK}).body, model=claude.upstream_model
    )
