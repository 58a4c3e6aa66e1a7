"""OpenAI's Responses API through Portico, with the official SDK as the client.

Bridged onto chat completions for the fake OpenAI upstream and the fake
Anthropic (tools there), and passed through to a server that has /v1/responses
of its own (its provider has the option `serves_responses`).
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from decimal import Decimal

import openai
import pytest
from openai import OpenAI

from billing.models import Budget, UsageRecord
from billing.tests.factories import make_usage
from gateway.models import StoredResponse
from providers.models import ModelRoute, Provider
from providers.tests.factories import make_provider, make_route
from tenants.tests.factories import IssuedKey, make_key, make_tenant
from tests.conftest import Deploy
from tests.fakes.anthropic_upstream import FakeAnthropic, Replay
from tests.fakes.fleet import FakeFleet, refused_base_url
from tests.fakes.openai_upstream import Fail, FakeUpstream, Reply
from tests.fakes.responses_upstream import RESPONSE_ID, FakeResponsesUpstream
from tests.servers import PorticoServer, Settle

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("committed_db")]

ANSWER = "Hello from the bridge, five words."
WEATHER_TOOL = {
    "type": "function",
    "name": "get_weather",
    "description": "Weather in a city",
    "parameters": {
        "type": "object",
        "properties": {"city": {"type": "string"}, "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]}},
        "required": ["city"],
    },
}
LOCAL_TIME_TOOL = {"type": "function", "name": "get_local_time", "parameters": {"type": "object", "properties": {}}}
ARRIVAL_TIMEOUT = 10.0


@pytest.fixture(autouse=True)
def _forget_stored_responses(committed_db: None) -> Iterator[None]:
    yield
    StoredResponse.objects.all().delete()


@pytest.fixture
def route(upstream: FakeUpstream, upstream_route: ModelRoute, key: IssuedKey, settle: Settle) -> ModelRoute:
    upstream.script(upstream_route.upstream_model, Reply(ANSWER, prompt_tokens=13))
    settle()
    return upstream_route


def ledger_row(request_id: str) -> UsageRecord:
    deadline = time.monotonic() + ARRIVAL_TIMEOUT
    while time.monotonic() < deadline:
        rows = list(UsageRecord.objects.filter(client_request_id=request_id))
        if rows:
            time.sleep(0.6)  # a second row, if there were one, would be flushed by now
            [row] = UsageRecord.objects.filter(client_request_id=request_id)
            return row
        time.sleep(0.05)
    raise AssertionError(f"no ledger row for {request_id}")


def test_a_text_input_is_answered_as_a_response_object(
    client: OpenAI, upstream: FakeUpstream, route: ModelRoute
) -> None:
    response = client.responses.create(model=route.public_id, input="Say hello.", instructions="Be brief.")

    assert response.object == "response"
    assert response.id.startswith("resp_")
    assert response.status == "completed"
    assert response.model == route.public_id
    assert response.output_text == ANSWER
    assert response.instructions == "Be brief."
    [item] = response.output
    assert item.type == "message"
    assert item.role == "assistant"
    assert response.usage is not None
    assert (response.usage.input_tokens, response.usage.output_tokens) == (13, len(ANSWER.split()))
    assert response.usage.total_tokens == 13 + len(ANSWER.split())
    [received] = upstream.received(route.upstream_model)
    assert received.path == "/v1/chat/completions"
    assert received.body["messages"] == [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "Say hello."},
    ]


def test_a_message_list_and_the_options_reach_chat_in_its_shape(
    client: OpenAI, upstream: FakeUpstream, route: ModelRoute
) -> None:
    client.responses.create(
        model=route.public_id,
        input=[
            {"role": "developer", "content": "Answer in French."},
            {"role": "user", "content": [{"type": "input_text", "text": "Hello"}]},
            {"role": "assistant", "content": [{"type": "output_text", "text": "Bonjour"}]},
            {"type": "message", "role": "user", "content": "And goodbye?"},
        ],
        max_output_tokens=64,
        temperature=0.3,
        top_p=0.9,
        user="user-7",
        text={"format": {"type": "json_schema", "name": "reply", "schema": {"type": "object"}, "strict": True}},
    )

    [received] = upstream.received(route.upstream_model)
    assert received.body["messages"] == [
        {"role": "system", "content": "Answer in French."},
        {"role": "user", "content": [{"type": "text", "text": "Hello"}]},
        {"role": "assistant", "content": "Bonjour"},
        {"role": "user", "content": "And goodbye?"},
    ]
    assert received.body["max_completion_tokens"] == 64
    assert (received.body["temperature"], received.body["top_p"], received.body["user"]) == (0.3, 0.9, "user-7")
    assert received.body["response_format"] == {
        "type": "json_schema",
        "json_schema": {"name": "reply", "schema": {"type": "object"}, "strict": True},
    }


def test_a_streamed_response_sends_the_typed_events_in_order(client: OpenAI, route: ModelRoute) -> None:
    events = list(client.responses.create(model=route.public_id, input="Say hello.", stream=True))

    kinds = [event.type for event in events]
    assert kinds[:5] == [
        "response.created",
        "response.in_progress",
        "response.output_item.added",
        "response.content_part.added",
        "response.output_text.delta",
    ]
    assert kinds[-4:] == [
        "response.output_text.done",
        "response.content_part.done",
        "response.output_item.done",
        "response.completed",
    ]
    assert [event.sequence_number for event in events] == list(range(len(events)))
    assert "".join(event.delta for event in events if event.type == "response.output_text.delta") == ANSWER
    completed = events[-1].response
    assert completed.id == events[0].response.id
    assert completed.output_text == ANSWER
    assert completed.usage is not None
    assert completed.usage.output_tokens == len(ANSWER.split())


def test_the_stream_helper_adds_up_to_the_final_response(client: OpenAI, route: ModelRoute) -> None:
    with client.responses.stream(model=route.public_id, input="Say hello.") as stream:
        deltas = [event.delta for event in stream if event.type == "response.output_text.delta"]
        final = stream.get_final_response()

    assert "".join(deltas) == ANSWER
    assert final.output_text == ANSWER
    assert final.status == "completed"


def test_a_stored_response_is_retrieved_by_its_tenant_only(
    client: OpenAI, portico: PorticoServer, route: ModelRoute, tag: str, settle: Settle
) -> None:
    created = client.responses.create(model=route.public_id, input="Say hello.", store=True, metadata={"run": "7"})
    streamed = list(client.responses.create(model=route.public_id, input="Again.", stream=True))[-1].response

    for made in (created, streamed):
        found = client.responses.retrieve(made.id)
        assert (found.id, found.output_text, found.metadata) == (made.id, ANSWER, made.metadata)
    assert created.metadata == {"run": "7"}
    outsider = make_key(tenant=make_tenant(slug=f"outsider-{tag}"), name="outsider")
    settle()  # the server knows the outsider's key: its 404 is about the response, not a 401
    with portico.client(outsider.plaintext) as other, pytest.raises(openai.NotFoundError) as refused:
        other.responses.retrieve(created.id)
    assert refused.value.body["message"] == f"Response with id '{created.id}' not found."  # type: ignore[index]

    client.responses.delete(created.id)
    with pytest.raises(openai.NotFoundError):
        client.responses.retrieve(created.id)


def test_an_id_portico_never_issues_names_no_response_and_is_not_a_server_error(client: OpenAI, settle: Settle) -> None:
    settle()  # the server must know the test's key first: an unknown key reloads the snapshot at most once a second
    for attempt in (lambda: client.responses.retrieve("resp_\x00"), lambda: client.responses.delete("resp_\x00")):
        with pytest.raises(openai.NotFoundError):  # Postgres refuses a NUL in any text: it was a 503
            attempt()


def test_a_response_asked_not_to_be_stored_is_not(client: OpenAI, route: ModelRoute) -> None:
    created = client.responses.create(model=route.public_id, input="Say hello.", store=False)

    assert created.store is False
    with pytest.raises(openai.NotFoundError):
        client.responses.retrieve(created.id)


def test_each_response_is_one_ledger_row_with_its_usage(client: OpenAI, route: ModelRoute, key: IssuedKey) -> None:
    client.responses.create(model=route.public_id, input="Say hello.", extra_headers={"x-request-id": "resp-whole"})
    list(
        client.responses.create(
            model=route.public_id, input="Say hello.", stream=True, extra_headers={"x-request-id": "resp-stream"}
        )
    )

    for request_id in ("resp-whole", "resp-stream"):
        row = ledger_row(request_id)
        assert (row.api_key_id, row.model, row.status) == (key.api_key.pk, route.public_id, 200)
        assert (row.prompt_tokens, row.completion_tokens) == (13, len(ANSWER.split()))


def test_errors_have_openais_shape(client: OpenAI, upstream: FakeUpstream, route: ModelRoute) -> None:
    with pytest.raises(openai.BadRequestError) as missing:
        client.responses.create(model=route.public_id, input=[])
    assert missing.value.body["param"] == "input"  # type: ignore[index]
    with pytest.raises(openai.BadRequestError) as builtin:
        client.responses.create(model=route.public_id, input="Hi", tools=[{"type": "web_search"}])
    assert builtin.value.body["code"] == "unsupported_parameter"  # type: ignore[index]
    with pytest.raises(openai.NotFoundError):
        client.responses.create(model="no-such-model", input="Hi")

    upstream.script(route.upstream_model, Fail(503))
    with pytest.raises(openai.APIStatusError) as failed:
        client.responses.create(model=route.public_id, input="Hi")
    assert failed.value.status_code == 503
    assert set(failed.value.body) == {"message", "type", "param", "code"}  # type: ignore[arg-type]


# --- budgets and failover, as for chat completions ---


def test_a_spent_tenant_budget_is_openais_insufficient_quota_and_no_upstream_is_called(
    portico: PorticoServer, key: IssuedKey, upstream: FakeUpstream, route: ModelRoute, settle: Settle
) -> None:
    Budget.objects.create(tenant=key.api_key.tenant, amount=Decimal("1.00"))
    make_usage(api_key=key.api_key, cost="1.00")
    teammate = make_key(tenant=key.api_key.tenant, name="teammate")  # the tenant's budget is every key's
    settle()

    with portico.client(teammate.plaintext) as client, pytest.raises(openai.RateLimitError) as refused:
        client.responses.create(model=route.public_id, input="Say hello.")

    month = datetime.now(UTC).strftime("%Y-%m")
    assert refused.value.status_code == 429
    assert refused.value.body == {
        "message": "You exceeded your current quota, please check your plan and billing details. "
        f"Budget of your organization for {month}: Limit $1.00, Used $1.00.",
        "type": "insufficient_quota",
        "param": None,
        "code": "insufficient_quota",
    }
    assert int(refused.value.response.headers["retry-after"]) >= 1
    assert upstream.received(route.upstream_model) == []


@pytest.mark.parametrize("streamed", [False, True], ids=["whole", "streamed"])
@pytest.mark.parametrize("trouble", ["500", "refused connection"])
def test_the_next_deployment_answers_a_response_when_the_first_fails(
    client: OpenAI, deploy: Deploy, upstreams: FakeFleet, settle: Settle, tag: str, trouble: str, streamed: bool
) -> None:
    upstream_model = f"resp-fo-{tag}"
    urls = [upstreams[0].base_url, upstreams[1].base_url]
    if trouble == "500":
        upstreams[0].script(upstream_model, Fail(500, "upstream exploded", type="server_error"))
    else:
        urls[0] = refused_base_url()
    routes = deploy(f"gpt-resp-fo-{tag}", upstream_model, urls=urls)
    settle()
    request_id = f"resp-fo-{tag}"

    raw = client.responses.with_raw_response.create(
        model=routes[0].public_id, input="Say hello.", stream=streamed, extra_headers={"x-request-id": request_id}
    )
    if streamed:
        text = "".join(event.delta for event in raw.parse() if event.type == "response.output_text.delta")
    else:
        text = raw.parse().output_text

    assert text == "served by fake-2"
    assert (raw.headers["x-portico-attempts"], raw.headers["x-portico-provider"]) == ("2", f"fake-2-{tag}")
    row = ledger_row(request_id)
    assert (row.status, row.model, row.deployment_id, row.attempts) == (200, routes[0].public_id, routes[1].pk, 2)
    assert len(upstreams[0].received(upstream_model)) == (1 if trouble == "500" else 0)


# --- function tools, bridged onto an Anthropic-kind deployment ---


@pytest.fixture
def claude(anthropic_route: ModelRoute, key: IssuedKey, settle: Settle) -> ModelRoute:
    settle()
    return anthropic_route


def test_function_calls_and_their_outputs_make_a_round_trip(
    client: OpenAI, anthropic_upstream: FakeAnthropic, claude: ModelRoute
) -> None:
    anthropic_upstream.script(claude.upstream_model, Replay("parallel_tool_calls"))
    ask = [{"role": "user", "content": "Weather in Paris and Tokyo, and the time in Tokyo?"}]
    tools = [WEATHER_TOOL, LOCAL_TIME_TOOL]

    asked = client.responses.create(model=claude.public_id, input=ask, tools=tools)  # type: ignore[arg-type]
    with client.responses.stream(model=claude.public_id, input=ask, tools=tools) as stream:  # type: ignore[arg-type]
        events = list(stream)
        streamed = stream.get_final_response()

    for response in (asked, streamed):
        calls = [item for item in response.output if item.type == "function_call"]
        assert [(call.name, json.loads(call.arguments)) for call in calls] == [
            ("get_weather", {"city": "Paris", "unit": "celsius"}),
            ("get_weather", {"city": "Tokyo", "unit": "celsius"}),
            ("get_local_time", {"timezone": "Asia/Tokyo"}),
        ]
    done = [event for event in events if event.type == "response.function_call_arguments.done"]
    assert [json.loads(event.arguments)["city" if "city" in event.arguments else "timezone"] for event in done] == [
        "Paris",
        "Tokyo",
        "Asia/Tokyo",
    ]

    anthropic_upstream.script(claude.upstream_model, Replay("text_answer"))
    calls = [item for item in asked.output if item.type == "function_call"]
    outputs = [{"type": "function_call_output", "call_id": call.call_id, "output": "sunny"} for call in calls]
    follow_up = [*ask, *(call.model_dump(exclude_none=True) for call in calls), *outputs]
    answer = client.responses.create(model=claude.public_id, input=follow_up, tools=tools)  # type: ignore[arg-type]

    assert answer.output_text
    turns = anthropic_upstream.received(claude.upstream_model)[-1].body["messages"]
    assert [turn["role"] for turn in turns] == ["user", "assistant", "user"]
    assert [block["id"] for block in turns[1]["content"] if block["type"] == "tool_use"] == [
        call.call_id for call in calls
    ]
    assert [block["tool_use_id"] for block in turns[2]["content"]] == [call.call_id for call in calls]


# --- passed through to a server with /v1/responses of its own ---


@pytest.fixture(scope="module")
def responses_upstream() -> Iterator[FakeResponsesUpstream]:
    fake = FakeResponsesUpstream()
    fake.start()
    yield fake
    fake.stop()


@pytest.fixture
def passed_route(
    responses_upstream: FakeResponsesUpstream, portico: PorticoServer, settle: Settle, tag: str
) -> ModelRoute:
    provider: Provider = make_provider(
        kind="openai",
        name=f"responses-upstream-{tag}",
        base_url=responses_upstream.base_url,
        credential=f"sk-pass-{tag}",
        options={"serves_responses": True},
    )
    route = make_route(provider=provider, public_id=f"gpt-pass-{tag}", upstream_model=f"upstream-pass-{tag}")
    responses_upstream.script(route.upstream_model, Reply(ANSWER, prompt_tokens=17))
    settle(portico)
    return route


def test_a_server_with_responses_of_its_own_gets_the_request_as_sent(
    portico: PorticoServer,
    responses_upstream: FakeResponsesUpstream,
    passed_route: ModelRoute,
    settle: Settle,
    tag: str,
) -> None:
    key = make_key(tenant=make_tenant(slug=f"pass-{tag}"), name="pass")
    settle()
    with portico.client(key.plaintext) as sdk:
        whole = sdk.responses.create(
            model=passed_route.public_id,
            input="Say hello.",
            instructions="Be brief.",
            extra_headers={"x-request-id": f"pass-{tag}"},
        )
        events = list(sdk.responses.create(model=passed_route.public_id, input="Say hello.", stream=True))
        found = sdk.responses.retrieve(whole.id)

    assert (whole.id, whole.model, whole.output_text) == (RESPONSE_ID, passed_route.public_id, ANSWER)
    assert found.output_text == ANSWER
    first, second = responses_upstream.received(passed_route.upstream_model)
    assert first.path == "/v1/responses"
    assert first.body == {"model": passed_route.upstream_model, "input": "Say hello.", "instructions": "Be brief."}
    assert first.headers["authorization"] == f"Bearer sk-pass-{tag}"
    assert second.body["stream"] is True
    assert events[-1].type == "response.completed"
    assert {event.response.model for event in events if hasattr(event, "response")} == {passed_route.public_id}
    assert "".join(event.delta for event in events if event.type == "response.output_text.delta") == ANSWER
    row = ledger_row(f"pass-{tag}")
    assert (row.prompt_tokens, row.completion_tokens) == (17, len(ANSWER.split()))
