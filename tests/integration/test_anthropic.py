"""Chat through an `anthropic`-kind provider: the tenant sees OpenAI's API, whole and streamed, errors included."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from typing import Any

import openai
import pytest
from openai import OpenAI
from openai.types.chat import ChatCompletionChunk

from providers.models import ModelRoute
from tenants.tests.factories import IssuedKey
from tests.fakes.anthropic_upstream import Fail, FakeAnthropic, Replay, Reply
from tests.servers import PorticoServer, Settle

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("committed_db")]

ASK = [
    {"role": "system", "content": "Be brief."},
    {"role": "user", "content": "What is the capital of France?"},
]
ANSWER = "The capital of France is Paris."
WEATHER = {
    "type": "object",
    "properties": {"city": {"type": "string"}, "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]}},
    "required": ["city"],
}
LOCAL_TIME = {"type": "object", "properties": {"timezone": {"type": "string"}}}
TOOLS = [
    {
        "type": "function",
        "function": {"name": "get_weather", "description": "Weather in a city", "parameters": WEATHER},
    },
    {"type": "function", "function": {"name": "get_local_time", "parameters": LOCAL_TIME}},
]
# What the recording parallel_tool_calls.sse adds up to.
PARALLEL_CALLS = [
    ("toolu_01WeatherParis4kq", "get_weather", {"city": "Paris", "unit": "celsius"}),
    ("toolu_01WeatherTokyo8mz", "get_weather", {"city": "Tokyo", "unit": "celsius"}),
    ("toolu_01LocalTimeTokyo2x", "get_local_time", {"timezone": "Asia/Tokyo"}),
]


@pytest.fixture
def route(anthropic_route: ModelRoute, key: IssuedKey, settle: Settle) -> ModelRoute:
    settle()
    return anthropic_route


@pytest.fixture
def script(anthropic_upstream: FakeAnthropic, route: ModelRoute) -> Callable[[Any], None]:
    def script(behaviour: Any) -> None:
        anthropic_upstream.script(route.upstream_model, behaviour)

    return script


def _calls(message: Any) -> list[tuple[str, str, Any]]:
    return [(call.id, call.function.name, json.loads(call.function.arguments)) for call in message.tool_calls or ()]


def _read_text(stream: Iterable[ChatCompletionChunk], *, into: list[str]) -> None:
    for chunk in stream:
        into.append(chunk.choices[0].delta.content or "")


def test_it_answers_in_openais_shape(client: OpenAI, route: ModelRoute, script: Callable[[Any], None]) -> None:
    script(Reply(ANSWER, input_tokens=21))

    completion = client.chat.completions.create(model=route.public_id, messages=ASK)

    assert completion.object == "chat.completion"
    assert completion.id.startswith("chatcmpl-")
    assert completion.model == route.public_id
    [choice] = completion.choices
    assert (choice.message.role, choice.message.content, choice.finish_reason) == ("assistant", ANSWER, "stop")
    assert choice.message.tool_calls is None
    assert completion.usage is not None
    assert (completion.usage.prompt_tokens, completion.usage.completion_tokens) == (21, len(ANSWER.split()))
    assert completion.usage.total_tokens == 21 + len(ANSWER.split())


def test_the_stream_helper_adds_the_deltas_up_to_the_answer(
    client: OpenAI, route: ModelRoute, script: Callable[[Any], None]
) -> None:
    script(Reply(ANSWER))

    with client.chat.completions.stream(model=route.public_id, messages=ASK) as stream:
        events = list(stream)
        final = stream.get_final_completion()

    chunks = [event.chunk for event in events if event.type == "chunk"]
    assert {chunk.model for chunk in chunks} == {route.public_id}
    assert len({chunk.id for chunk in chunks}) == 1
    assert "".join(event.delta for event in events if event.type == "content.delta") == ANSWER
    assert [event.content for event in events if event.type == "content.done"] == [ANSWER]
    assert final.choices[0].message.content == ANSWER
    assert final.choices[0].finish_reason == "stop"
    assert final.usage is None  # not asked for


def test_parallel_tool_calls_add_up_to_complete_calls_streamed_or_whole(
    client: OpenAI, route: ModelRoute, script: Callable[[Any], None]
) -> None:
    script(Replay("parallel_tool_calls"))

    with client.chat.completions.stream(model=route.public_id, messages=ASK, tools=TOOLS) as stream:
        events = list(stream)
        streamed = stream.get_final_completion()
    whole = client.chat.completions.create(model=route.public_id, messages=ASK, tools=TOOLS)

    for completion in (streamed, whole):
        [choice] = completion.choices
        assert choice.message.content == "I'll check both cities at once."
        assert _calls(choice.message) == PARALLEL_CALLS
        assert choice.finish_reason == "tool_calls"
    done = [event for event in events if event.type == "tool_calls.function.arguments.done"]
    assert [(event.index, event.name, json.loads(event.arguments)) for event in done] == [
        (index, name, arguments) for index, (_, name, arguments) in enumerate(PARALLEL_CALLS)
    ]


def test_tool_results_go_back_as_anthropic_blocks_under_the_ids_the_tenant_was_given(
    client: OpenAI, anthropic_upstream: FakeAnthropic, route: ModelRoute, script: Callable[[Any], None]
) -> None:
    script(Replay("parallel_tool_calls"))
    asked = client.chat.completions.create(model=route.public_id, messages=ASK[1:], tools=TOOLS)
    script(Reply(ANSWER))
    results = [
        {"role": "tool", "tool_call_id": call_id, "content": f"result {index}"}
        for index, (call_id, _, _) in enumerate(PARALLEL_CALLS)
    ]

    client.chat.completions.create(
        model=route.public_id,
        messages=[*ASK[1:], asked.choices[0].message.model_dump(exclude_none=True), *results],
        tools=TOOLS,
    )

    turns = anthropic_upstream.received(route.upstream_model)[-1].body["messages"]
    assert [turn["role"] for turn in turns] == ["user", "assistant", "user"]
    assert turns[1]["content"] == [
        {"type": "text", "text": "I'll check both cities at once."},
        *(
            {"type": "tool_use", "id": call_id, "name": name, "input": arguments}
            for call_id, name, arguments in PARALLEL_CALLS
        ),
    ]
    # Anthropic wants the results of one turn's calls together, in one user turn.
    assert turns[2]["content"] == [
        {"type": "tool_result", "tool_use_id": call_id, "content": f"result {index}"}
        for index, (call_id, _, _) in enumerate(PARALLEL_CALLS)
    ]


@pytest.mark.parametrize(
    ("stop_reason", "finish_reason"),
    [("end_turn", "stop"), ("stop_sequence", "stop"), ("max_tokens", "length")],
)
def test_the_stop_reason_becomes_openais_finish_reason(
    client: OpenAI, route: ModelRoute, script: Callable[[Any], None], stop_reason: str, finish_reason: str
) -> None:
    script(Reply(ANSWER, stop_reason=stop_reason))

    whole = client.chat.completions.create(model=route.public_id, messages=ASK)
    with client.chat.completions.create(model=route.public_id, messages=ASK, stream=True) as stream:
        finishes = [chunk.choices[0].finish_reason for chunk in stream if chunk.choices]

    assert whole.choices[0].finish_reason == finish_reason
    assert finishes[-1] == finish_reason
    assert set(finishes[:-1]) == {None}


def test_usage_counts_cached_prompt_tokens_and_streams_only_when_asked_for(
    client: OpenAI, route: ModelRoute, script: Callable[[Any], None]
) -> None:
    script(Replay("parallel_tool_calls"))  # 412 new prompt tokens, 2048 read from the cache, 131 out

    whole = client.chat.completions.create(model=route.public_id, messages=ASK, tools=TOOLS)
    with client.chat.completions.create(
        model=route.public_id, messages=ASK, tools=TOOLS, stream=True, stream_options={"include_usage": True}
    ) as stream:
        asked = list(stream)
    with client.chat.completions.create(model=route.public_id, messages=ASK, tools=TOOLS, stream=True) as stream:
        unasked = list(stream)

    streamed_usage = asked[-1].usage
    assert asked[-1].choices == []
    for usage in (whole.usage, streamed_usage):
        assert usage is not None
        assert (usage.prompt_tokens, usage.completion_tokens, usage.total_tokens) == (2460, 131, 2591)
        assert usage.prompt_tokens_details is not None
        assert usage.prompt_tokens_details.cached_tokens == 2048
    assert all(chunk.usage is None for chunk in asked[:-1])
    assert all(chunk.usage is None for chunk in unasked)
    assert unasked[-1].choices[0].finish_reason == "tool_calls"


def test_the_upstream_gets_a_messages_request_with_anthropics_headers(
    client: OpenAI,
    anthropic_upstream: FakeAnthropic,
    route: ModelRoute,
    key: IssuedKey,
    anthropic_credential: str,
) -> None:
    client.chat.completions.create(
        model=route.public_id,
        messages=ASK,
        tools=TOOLS,
        tool_choice={"type": "function", "function": {"name": "get_weather"}},
        max_tokens=300,
        temperature=1.5,
        stop=["END"],
        user="end-user-7",
    )
    client.chat.completions.create(model=route.public_id, messages=ASK[1:], stream=True).close()

    full, minimal = anthropic_upstream.received(route.upstream_model)
    assert (full.method, full.path) == ("POST", "/v1/messages")
    assert full.body == {
        "model": route.upstream_model,
        "max_tokens": 300,
        "system": "Be brief.",
        "messages": [{"role": "user", "content": [{"type": "text", "text": "What is the capital of France?"}]}],
        "temperature": 1.0,  # Anthropic's scale ends at 1
        "stop_sequences": ["END"],
        "tools": [
            {"name": "get_weather", "input_schema": WEATHER, "description": "Weather in a city"},
            {"name": "get_local_time", "input_schema": LOCAL_TIME},
        ],
        "tool_choice": {"type": "tool", "name": "get_weather"},
        "metadata": {"user_id": "end-user-7"},
    }
    # Without a cap from the client or the route, Anthropic's required max_tokens gets Portico's default.
    assert minimal.body == {
        "model": route.upstream_model,
        "max_tokens": 4096,
        "messages": [{"role": "user", "content": [{"type": "text", "text": "What is the capital of France?"}]}],
        "stream": True,
    }
    for received in (full, minimal):
        assert received.headers["x-api-key"] == anthropic_credential
        assert received.headers["anthropic-version"] == "2023-06-01"
        assert "authorization" not in received.headers
        assert key.plaintext not in repr(received)


@pytest.mark.parametrize(
    ("failure", "error", "status", "code", "stream"),
    [
        pytest.param(
            Fail(
                429, "rate_limit_error", "Number of request tokens has exceeded your rate limit.", {"retry-after": "17"}
            ),
            openai.RateLimitError,
            429,
            "rate_limit_exceeded",
            False,
            id="429",
        ),
        pytest.param(
            Fail(
                429, "rate_limit_error", "Number of request tokens has exceeded your rate limit.", {"retry-after": "17"}
            ),
            openai.RateLimitError,
            429,
            "rate_limit_exceeded",
            True,
            id="429-streamed",
        ),
        pytest.param(
            Fail(529, "overloaded_error", "Overloaded"), openai.APIStatusError, 503, "overloaded", False, id="529"
        ),
        pytest.param(
            Fail(400, "invalid_request_error", "messages: text content blocks must contain non-whitespace text"),
            openai.BadRequestError,
            400,
            None,
            True,
            id="400-streamed",
        ),
    ],
)
def test_an_anthropic_error_answer_is_openais(
    client: OpenAI,
    route: ModelRoute,
    script: Callable[[Any], None],
    failure: Fail,
    error: type[openai.APIStatusError],
    status: int,
    code: str | None,
    stream: bool,
) -> None:
    script(failure)

    with pytest.raises(error) as caught:
        client.chat.completions.create(model=route.public_id, messages=ASK, stream=stream)

    assert caught.value.status_code == status
    assert caught.value.code == code
    assert failure.message in caught.value.message
    assert caught.value.response.headers.get("retry-after") == failure.headers.get("retry-after")
    assert set(caught.value.response.json()["error"]) == {"message", "type", "param", "code"}


@pytest.mark.parametrize(
    ("replay", "received", "code"),
    [
        pytest.param(Replay("overloaded_midstream"), "Once upon a time", "overloaded", id="overloaded-error-event"),
        pytest.param(Replay("text_answer", cut_after=5), "The capital of France is", "upstream_unreachable", id="cut"),
    ],
)
def test_a_stream_that_fails_midway_raises_an_api_error_after_the_text_so_far(
    client: OpenAI, route: ModelRoute, script: Callable[[Any], None], replay: Replay, received: str, code: str
) -> None:
    script(replay)
    text: list[str] = []

    with client.chat.completions.create(model=route.public_id, messages=ASK, stream=True) as stream:
        with pytest.raises(openai.APIError) as caught:
            _read_text(stream, into=text)

    assert "".join(text) == received
    assert caught.value.code == code
    assert caught.value.type == "api_error"


def test_thinking_is_not_relayed_whole_or_streamed(
    client: OpenAI, portico: PorticoServer, key: IssuedKey, route: ModelRoute, script: Callable[[Any], None]
) -> None:
    script(Replay("thinking"))

    whole = client.chat.completions.create(model=route.public_id, messages=ASK)
    raw = portico.http.post(
        "/v1/chat/completions",
        json={"model": route.public_id, "messages": ASK, "stream": True},
        headers={"Authorization": f"Bearer {key.plaintext}"},
    )

    assert whole.choices[0].message.content == "27 × 453 = 12,231."
    assert raw.status_code == 200
    assert "12231" not in raw.text
    assert "signature" not in raw.text
    assert raw.text.endswith("data: [DONE]\n\n")


@pytest.mark.parametrize(
    ("options", "param"),
    [({"n": 2}, "n"), ({"logprobs": True}, "logprobs")],
)
def test_a_parameter_anthropic_cannot_honour_is_refused_by_name(
    client: OpenAI, anthropic_upstream: FakeAnthropic, route: ModelRoute, options: dict[str, Any], param: str
) -> None:
    with pytest.raises(openai.BadRequestError) as caught:
        client.chat.completions.create(model=route.public_id, messages=ASK, **options)

    assert (caught.value.param, caught.value.code) == (param, "unsupported_parameter")
    assert anthropic_upstream.received(route.upstream_model) == []
