"""Chat through an `ollama`-kind provider: Ollama's native NDJSON API, seen by the tenant as OpenAI's."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from typing import Any

import openai
import pytest
from openai import OpenAI
from openai.types.chat import ChatCompletion, ChatCompletionChunk

from providers.models import ModelRoute, Provider
from providers.tests.factories import make_route
from tenants.tests.factories import IssuedKey
from tests.fakes.ollama_upstream import DEFAULT_CALLS, CallTools, CutOff, Fail, FailMidStream, FakeOllama, Reply
from tests.servers import Settle

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("committed_db")]

ASK = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Say hello"}]
ANSWER = "Hello there, tenant of Portico."
TOOLS = [
    {
        "type": "function",
        "function": {
            "name": "get_current_weather",
            "parameters": {"type": "object", "properties": {"location": {"type": "string"}}, "required": ["location"]},
        },
    }
]


@pytest.fixture
def route(ollama_route: ModelRoute, key: IssuedKey, settle: Settle) -> ModelRoute:
    settle()
    return ollama_route


@pytest.fixture
def script(ollama_upstream: FakeOllama, route: ModelRoute) -> Callable[[Any], None]:
    def script(behaviour: Any) -> None:
        ollama_upstream.script(route.upstream_model, behaviour)

    return script


def _read_text(stream: Iterable[ChatCompletionChunk], *, into: list[str]) -> None:
    for chunk in stream:
        if chunk.choices:
            into.append(chunk.choices[0].delta.content or "")


def _calls(completion: ChatCompletion) -> list[tuple[str, Any]]:
    return [
        (call.function.name, json.loads(call.function.arguments))
        for call in completion.choices[0].message.tool_calls or ()
    ]


def test_it_answers_whole_and_streamed_with_usage_from_ollamas_counts(
    client: OpenAI, route: ModelRoute, script: Callable[[Any], None]
) -> None:
    script(Reply(ANSWER, prompt_eval_count=26))
    words = len(ANSWER.split())

    whole = client.chat.completions.create(model=route.public_id, messages=ASK)
    with client.chat.completions.create(
        model=route.public_id, messages=ASK, stream=True, stream_options={"include_usage": True}
    ) as stream:
        asked = list(stream)
    with client.chat.completions.create(model=route.public_id, messages=ASK, stream=True) as stream:
        unasked = list(stream)

    assert (whole.object, whole.model) == ("chat.completion", route.public_id)
    assert whole.id.startswith("chatcmpl-")
    assert (whole.choices[0].message.content, whole.choices[0].finish_reason) == (ANSWER, "stop")
    assert whole.usage is not None
    assert (whole.usage.prompt_tokens, whole.usage.completion_tokens, whole.usage.total_tokens) == (
        26,
        words,
        26 + words,
    )
    for chunks in (asked, unasked):
        assert {chunk.model for chunk in chunks} == {route.public_id}
        assert len({chunk.id for chunk in chunks}) == 1
        assert chunks[0].choices[0].delta.role == "assistant"
        assert "".join(chunk.choices[0].delta.content or "" for chunk in chunks if chunk.choices) == ANSWER
    assert asked[-2].choices[0].finish_reason == "stop"
    assert asked[-1].choices == []
    assert asked[-1].usage is not None
    assert (asked[-1].usage.prompt_tokens, asked[-1].usage.completion_tokens) == (26, words)
    assert unasked[-1].choices[0].finish_reason == "stop"
    assert all(chunk.usage is None for chunk in unasked)


def test_tool_calls_come_whole_with_ids_and_json_arguments_streamed_or_not(
    client: OpenAI, ollama_upstream: FakeOllama, route: ModelRoute, script: Callable[[Any], None]
) -> None:
    script(CallTools())

    whole = client.chat.completions.create(model=route.public_id, messages=ASK, tools=TOOLS)
    with client.chat.completions.stream(model=route.public_id, messages=ASK, tools=TOOLS) as stream:
        streamed = stream.get_final_completion()

    for completion in (whole, streamed):
        assert _calls(completion) == list(DEFAULT_CALLS)
        assert completion.choices[0].finish_reason == "tool_calls"
        ids = [call.id for call in completion.choices[0].message.tool_calls or ()]
        assert all(call_id.startswith("call_") for call_id in ids)
        assert len(set(ids)) == len(ids)
    assert whole.choices[0].message.content is None
    assert whole.usage is not None
    assert whole.usage.prompt_tokens == 122
    assert all(received.body["tools"] == TOOLS for received in ollama_upstream.received(route.upstream_model))


def test_tool_results_go_back_to_ollama_under_the_tools_name(
    client: OpenAI, ollama_upstream: FakeOllama, route: ModelRoute, script: Callable[[Any], None]
) -> None:
    # Ollama names a result by its tool, OpenAI by the call's id, which Portico made up.
    script(CallTools())
    asked = client.chat.completions.create(model=route.public_id, messages=ASK, tools=TOOLS)
    calls = asked.choices[0].message.tool_calls or []
    script(Reply(ANSWER))
    results = [
        {"role": "tool", "tool_call_id": call.id, "content": f"{index + 18} degrees"}
        for index, call in enumerate(calls)
    ]

    client.chat.completions.create(
        model=route.public_id, messages=[*ASK, asked.choices[0].message.model_dump(exclude_none=True), *results]
    )

    messages = ollama_upstream.received(route.upstream_model)[-1].body["messages"]
    assert messages[2] == {
        "role": "assistant",
        "content": "",
        "tool_calls": [{"function": {"name": name, "arguments": arguments}} for name, arguments in DEFAULT_CALLS],
    }
    assert messages[3:] == [
        {"role": "tool", "content": "18 degrees", "tool_name": "get_current_weather"},
        {"role": "tool", "content": "19 degrees", "tool_name": "get_current_weather"},
    ]


def test_sampling_parameters_reach_ollama_as_its_options(
    client: OpenAI, ollama_upstream: FakeOllama, route: ModelRoute
) -> None:
    client.chat.completions.create(
        model=route.public_id,
        messages=ASK,
        temperature=0.2,
        top_p=0.9,
        seed=7,
        frequency_penalty=0.5,
        presence_penalty=0.25,
        max_completion_tokens=64,
        stop="END",
        response_format={"type": "json_object"},
    )
    client.chat.completions.create(model=route.public_id, messages=ASK[1:], stream=True, max_tokens=32).close()

    whole, streamed = ollama_upstream.received(route.upstream_model)
    assert (whole.method, whole.path) == ("POST", "/api/chat")
    assert whole.body == {
        "model": route.upstream_model,
        "messages": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Say hello"}],
        "stream": False,  # Ollama streams unless told not to
        "options": {
            "temperature": 0.2,
            "top_p": 0.9,
            "seed": 7,
            "frequency_penalty": 0.5,
            "presence_penalty": 0.25,
            "num_predict": 64,
            "stop": ["END"],
        },
        "format": "json",
    }
    assert streamed.body == {
        "model": route.upstream_model,
        "messages": [{"role": "user", "content": "Say hello"}],
        "stream": True,
        "options": {"num_predict": 32},
    }
    assert "authorization" not in whole.headers  # the provider has no credential


@pytest.mark.parametrize(
    ("behaviour", "text", "code", "message"),
    [
        pytest.param(CutOff(after=2), " this answer", "upstream_unreachable", "dropped the connection", id="cut-off"),
        pytest.param(
            FailMidStream(after=1), "partial", None, "an error was encountered while running the model", id="error-line"
        ),
    ],
)
def test_a_stream_that_breaks_midway_raises_an_api_error_after_the_text_so_far(
    client: OpenAI,
    route: ModelRoute,
    script: Callable[[Any], None],
    behaviour: Any,
    text: str,
    code: str | None,
    message: str,
) -> None:
    script(behaviour)
    received: list[str] = []

    with client.chat.completions.create(model=route.public_id, messages=ASK, stream=True) as stream:
        with pytest.raises(openai.APIError) as caught:
            _read_text(stream, into=received)

    assert "".join(received) == text
    assert message in caught.value.message
    assert (caught.value.type, caught.value.code) == ("api_error", code)


@pytest.mark.parametrize(
    ("failure", "error", "status", "code", "stream"),
    [
        pytest.param(
            Fail(404, 'model "llama3.2" not found, try pulling it first'),
            openai.NotFoundError,
            404,
            "model_not_found",
            False,
            id="404",
        ),
        pytest.param(Fail(400, "invalid options: num_ctx"), openai.BadRequestError, 400, None, True, id="400-streamed"),
        pytest.param(
            Fail(500, "llama runner process has terminated"), openai.InternalServerError, 502, None, False, id="500"
        ),
        pytest.param(Fail(503, "server busy, please try again"), openai.InternalServerError, 502, None, True, id="503"),
    ],
)
def test_an_ollama_error_status_is_mapped_to_openais(
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

    assert (caught.value.status_code, caught.value.code) == (status, code)
    assert failure.message in caught.value.message
    assert set(caught.value.response.json()["error"]) == {"message", "type", "param", "code"}


@pytest.mark.parametrize(
    ("options", "param", "code"),
    [
        pytest.param({"n": 2}, "n", "unsupported_parameter", id="several-choices"),
    ],
)
def test_what_the_route_or_ollama_cannot_do_is_refused_before_the_upstream(
    client: OpenAI,
    ollama_upstream: FakeOllama,
    ollama_provider: Provider,
    tag: str,
    settle: Settle,
    options: dict[str, Any],
    param: str,
    code: str,
) -> None:
    toolless = make_route(
        provider=ollama_provider, public_id=f"toolless-{tag}", upstream_model=f"toolless-{tag}", supports_tools=False
    )
    settle()

    with pytest.raises(openai.BadRequestError) as caught:
        client.chat.completions.create(model=toolless.public_id, messages=ASK, **options)

    assert (caught.value.param, caught.value.code) == (param, code)
    if code == "unsupported_capability":
        assert caught.value.message.endswith(f"The model `{toolless.public_id}` does not support tools.")
    assert ollama_upstream.received(toolless.upstream_model) == []
