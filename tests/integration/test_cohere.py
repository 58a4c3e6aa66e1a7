"""Chat and embeddings through a `cohere`-kind provider: Cohere's API v2, seen by the tenant as OpenAI's."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from typing import Any, cast

import openai
import pytest
from openai import OpenAI
from openai.types.chat import (
    ChatCompletion,
    ChatCompletionChunk,
    ChatCompletionMessageParam,
    ChatCompletionToolParam,
)

from providers.models import ModelRoute, Provider
from providers.tests.factories import make_provider, make_route
from tenants.tests.factories import IssuedKey
from tests.fakes.cohere_upstream import (
    ANSWER_ID,
    DEFAULT_CALLS,
    DEFAULT_PLAN,
    TEMPLATE_TOKENS,
    CallTools,
    CutOff,
    Fail,
    FailMidStream,
    FakeCohere,
    Reply,
    vector,
)
from tests.integration.test_ledger import ledger_rows, new_request_id
from tests.openai_schemas import assert_valid
from tests.servers import Settle

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("committed_db")]

ASK: list[ChatCompletionMessageParam] = [
    {"role": "system", "content": "Be brief."},
    {"role": "user", "content": "Say hello"},
]
ANSWER = "Hello there, tenant of Portico."
WORDS = len(ANSWER.split())
WEATHER: dict[str, object] = {
    "type": "object",
    "properties": {"location": {"type": "string"}, "unit": {"type": "string"}},
    "required": ["location"],
}
TOOLS: list[ChatCompletionToolParam] = [
    {
        "type": "function",
        "function": {"name": "get_current_weather", "description": "Weather in a city", "parameters": WEATHER},
    },
    {"type": "function", "function": {"name": "get_local_time", "parameters": {"type": "object", "properties": {}}}},
]
COHERE_TOOLS: list[ChatCompletionToolParam] = [
    {
        "type": "function",
        "function": {"name": "get_current_weather", "parameters": WEATHER, "description": "Weather in a city"},
    },
    {"type": "function", "function": {"name": "get_local_time", "parameters": {"type": "object", "properties": {}}}},
]
PIXEL = (
    "data:image/png;base64,"
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwADhgGAWjR9awAAAABJRU5ErkJggg=="
)


@pytest.fixture
def route(cohere_route: ModelRoute, key: IssuedKey, settle: Settle) -> ModelRoute:
    settle()
    return cohere_route


@pytest.fixture
def script(cohere_upstream: FakeCohere, route: ModelRoute) -> Callable[[Any], None]:
    def script(behaviour: Any) -> None:
        cohere_upstream.script(route.upstream_model, behaviour)

    return script


def _read_text(stream: Iterable[ChatCompletionChunk], *, into: list[str]) -> None:
    for chunk in stream:
        if chunk.choices:
            into.append(chunk.choices[0].delta.content or "")


def _calls(completion: ChatCompletion) -> list[tuple[str, str, Any]]:
    return [
        (call.id, call.function.name, json.loads(call.function.arguments))
        for call in completion.choices[0].message.tool_calls or ()
        if call.type == "function"
    ]


def _raw_chunks(client: OpenAI, model: str, **options: Any) -> list[dict[str, Any]]:
    with client.chat.completions.with_streaming_response.create(
        model=model, messages=ASK, stream=True, **options
    ) as response:
        return [json.loads(line[6:]) for line in response.iter_lines() if line.startswith("data: {")]


# --- answers ---


def test_it_answers_whole_and_streamed_in_openais_exact_shapes_with_cohere_counts(
    client: OpenAI, route: ModelRoute, script: Callable[[Any], None]
) -> None:
    script(Reply(ANSWER, input_tokens=12))
    prompt = 12 + TEMPLATE_TOKENS  # the model's own count (`tokens`), not the billed one

    raw = client.chat.completions.with_raw_response.create(model=route.public_id, messages=ASK)
    asked = _raw_chunks(client, route.public_id, stream_options={"include_usage": True})
    unasked = _raw_chunks(client, route.public_id)

    body = raw.http_response.json()
    assert_valid("CreateChatCompletionResponse", body)
    for chunk in asked + unasked:
        assert_valid("CreateChatCompletionStreamResponse", chunk)
    assert (body["object"], body["model"]) == ("chat.completion", route.public_id)
    assert body["id"].startswith("chatcmpl-")
    assert raw.headers["x-portico-upstream-id"] == ANSWER_ID
    assert body["choices"][0]["message"]["content"] == ANSWER
    assert body["choices"][0]["finish_reason"] == "stop"
    assert body["usage"] == {"prompt_tokens": prompt, "completion_tokens": WORDS, "total_tokens": prompt + WORDS}
    for chunks in (asked, unasked):
        assert {chunk["model"] for chunk in chunks} == {route.public_id}
        assert len({chunk["id"] for chunk in chunks}) == 1
        assert chunks[0]["choices"][0]["delta"]["role"] == "assistant"
        assert "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks if c["choices"]) == ANSWER
    assert asked[-2]["choices"][0]["finish_reason"] == "stop"
    assert asked[-1]["choices"] == []
    assert asked[-1]["usage"]["prompt_tokens"] == prompt
    assert asked[-1]["usage"]["completion_tokens"] == WORDS
    assert all(chunk["usage"] is None for chunk in asked[:-1])
    assert unasked[-1]["choices"][0]["finish_reason"] == "stop"
    assert all(chunk.get("usage") is None for chunk in unasked)


def test_billed_units_are_the_usage_when_cohere_gives_no_token_counts(
    client: OpenAI, route: ModelRoute, script: Callable[[Any], None]
) -> None:
    script(Reply(ANSWER, input_tokens=9, billed_only=True))

    whole = client.chat.completions.create(model=route.public_id, messages=ASK)

    assert whole.usage is not None
    assert (whole.usage.prompt_tokens, whole.usage.completion_tokens) == (9, WORDS)


@pytest.mark.parametrize(
    ("cohere_reason", "finish_reason"),
    [("COMPLETE", "stop"), ("STOP_SEQUENCE", "stop"), ("MAX_TOKENS", "length")],
)
def test_coheres_finish_reason_becomes_openais(
    client: OpenAI, route: ModelRoute, script: Callable[[Any], None], cohere_reason: str, finish_reason: str
) -> None:
    script(Reply(ANSWER, finish_reason=cohere_reason))

    whole = client.chat.completions.create(model=route.public_id, messages=ASK)
    with client.chat.completions.create(model=route.public_id, messages=ASK, stream=True) as stream:
        finishes = [chunk.choices[0].finish_reason for chunk in stream if chunk.choices]

    assert whole.choices[0].finish_reason == finish_reason
    assert finishes[-1] == finish_reason
    assert set(finishes[:-1]) == {None}


def test_usage_reaches_the_ledger_with_coheres_answer_id(
    client: OpenAI, route: ModelRoute, script: Callable[[Any], None]
) -> None:
    script(Reply(ANSWER, input_tokens=20))
    request_ids = [new_request_id(), new_request_id()]

    client.chat.completions.create(model=route.public_id, messages=ASK, extra_headers={"x-request-id": request_ids[0]})
    with client.chat.completions.create(
        model=route.public_id, messages=ASK, stream=True, extra_headers={"x-request-id": request_ids[1]}
    ) as stream:
        list(stream)

    rows = {row.client_request_id: row for row in ledger_rows(request_ids)}
    for request_id in request_ids:
        row = rows[request_id]
        assert (row.prompt_tokens, row.completion_tokens) == (20 + TEMPLATE_TOKENS, WORDS)
        assert row.tokens_estimated is False
        assert (row.model, row.upstream_model, row.operation) == (route.public_id, route.upstream_model, "chat")
        assert row.upstream_id == ANSWER_ID


def test_a_legacy_completion_is_bridged_onto_coheres_chat_whole_and_streamed(
    client: OpenAI, cohere_upstream: FakeCohere, route: ModelRoute, script: Callable[[Any], None]
) -> None:
    script(Reply(ANSWER))

    whole = client.completions.create(model=route.public_id, prompt="Say hello", max_tokens=20)
    streamed = list(client.completions.create(model=route.public_id, prompt="Say hello", stream=True))

    assert (whole.object, whole.choices[0].text, whole.choices[0].finish_reason) == ("text_completion", ANSWER, "stop")
    assert "".join(chunk.choices[0].text for chunk in streamed if chunk.choices) == ANSWER
    sent = cohere_upstream.received(route.upstream_model)
    assert [received.path for received in sent] == ["/v2/chat", "/v2/chat"]
    assert sent[0].body["messages"] == [{"role": "user", "content": "Say hello"}]


# --- tools ---


def test_tool_calls_come_with_coheres_ids_and_the_plan_as_content_streamed_or_whole(
    client: OpenAI, cohere_upstream: FakeCohere, route: ModelRoute, script: Callable[[Any], None]
) -> None:
    script(CallTools())

    whole = client.chat.completions.create(model=route.public_id, messages=ASK, tools=TOOLS)
    with client.chat.completions.stream(model=route.public_id, messages=ASK, tools=TOOLS) as stream:
        events = list(stream)
        streamed = stream.get_final_completion()
    chunks = _raw_chunks(client, route.public_id, tools=TOOLS)

    for completion in (whole, streamed):
        assert _calls(completion) == list(DEFAULT_CALLS)
        assert completion.choices[0].message.content == DEFAULT_PLAN
        assert completion.choices[0].finish_reason == "tool_calls"
    done = [event for event in events if event.type == "tool_calls.function.arguments.done"]
    assert [(event.index, event.name, json.loads(event.arguments)) for event in done] == [
        (index, name, arguments) for index, (_, name, arguments) in enumerate(DEFAULT_CALLS)
    ]
    for chunk in chunks:
        assert_valid("CreateChatCompletionStreamResponse", chunk)
    sent = cohere_upstream.received(route.upstream_model)
    assert all(received.body["tools"] == COHERE_TOOLS for received in sent)


def test_tool_results_go_back_as_cohere_tool_messages_under_the_call_ids(
    client: OpenAI, cohere_upstream: FakeCohere, route: ModelRoute, script: Callable[[Any], None]
) -> None:
    script(CallTools())
    asked = client.chat.completions.create(model=route.public_id, messages=ASK, tools=TOOLS)
    script(Reply(ANSWER))
    results: list[ChatCompletionMessageParam] = [
        {"role": "tool", "tool_call_id": call_id, "content": f"{index + 18} degrees"}
        for index, (call_id, _, _) in enumerate(DEFAULT_CALLS)
    ]

    answer = client.chat.completions.create(
        model=route.public_id,
        messages=[
            *ASK,
            cast(ChatCompletionMessageParam, asked.choices[0].message.model_dump(exclude_none=True)),
            *results,
        ],
        tools=TOOLS,
    )

    assert answer.choices[0].message.content == ANSWER
    messages = cohere_upstream.received(route.upstream_model)[-1].body["messages"]
    assert messages[:2] == [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Say hello"}]
    assert messages[2] == {
        "role": "assistant",
        "tool_plan": DEFAULT_PLAN,
        "tool_calls": [
            {
                "id": call_id,
                "type": "function",
                "function": {"name": name, "arguments": json.dumps(arguments, separators=(",", ":"))},
            }
            for call_id, name, arguments in DEFAULT_CALLS
        ],
    }
    assert [(m["role"], m["tool_call_id"], m["content"]) for m in messages[3:]] == [
        ("tool", call_id, f"{index + 18} degrees") for index, (call_id, _, _) in enumerate(DEFAULT_CALLS)
    ]


@pytest.mark.parametrize(
    ("tool_choice", "sent_choice", "sent_tools"),
    [
        pytest.param("auto", None, ["get_current_weather", "get_local_time"], id="auto"),
        pytest.param("required", "REQUIRED", ["get_current_weather", "get_local_time"], id="required"),
        pytest.param("none", "NONE", ["get_current_weather", "get_local_time"], id="none"),
        pytest.param(
            {"type": "function", "function": {"name": "get_local_time"}}, "REQUIRED", ["get_local_time"], id="named"
        ),
    ],
)
def test_tool_choice_becomes_coheres(
    client: OpenAI,
    cohere_upstream: FakeCohere,
    route: ModelRoute,
    tool_choice: Any,
    sent_choice: str | None,
    sent_tools: list[str],
) -> None:
    client.chat.completions.create(model=route.public_id, messages=ASK, tools=TOOLS, tool_choice=tool_choice)

    [received] = cohere_upstream.received(route.upstream_model)
    assert received.body.get("tool_choice") == sent_choice
    assert [tool["function"]["name"] for tool in received.body["tools"]] == sent_tools


# --- the request Cohere gets ---


def test_the_upstream_gets_a_v2_chat_request_with_a_bearer_key(
    client: OpenAI, cohere_upstream: FakeCohere, route: ModelRoute, key: IssuedKey, cohere_credential: str
) -> None:
    schema: dict[str, object] = {
        "type": "object",
        "properties": {"greeting": {"type": "string"}},
        "required": ["greeting"],
    }
    client.chat.completions.create(
        model=route.public_id,
        messages=ASK,
        max_completion_tokens=64,
        temperature=0.2,
        top_p=0.9,
        seed=7,
        frequency_penalty=0.5,
        presence_penalty=0.25,
        stop="END",
        response_format={"type": "json_schema", "json_schema": {"name": "greeting", "schema": schema}},
        user="end-user-7",
    )
    client.chat.completions.create(
        model=route.public_id,
        messages=ASK[1:],
        stream=True,
        max_tokens=32,
        top_p=1,
        response_format={"type": "json_object"},
    ).close()

    full, minimal = cohere_upstream.received(route.upstream_model)
    assert (full.method, full.path) == ("POST", "/v2/chat")
    assert full.body == {
        "model": route.upstream_model,
        "messages": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Say hello"}],
        "stream": False,
        "max_tokens": 64,
        "temperature": 0.2,
        "seed": 7,
        "frequency_penalty": 0.5,
        "presence_penalty": 0.25,
        "p": 0.9,
        "stop_sequences": ["END"],
        "response_format": {"type": "json_object", "json_schema": schema},
    }
    # A top_p of 1 is no nucleus cut at all: Cohere's `p` cannot be 1, so it is left out.
    assert minimal.body == {
        "model": route.upstream_model,
        "messages": [{"role": "user", "content": "Say hello"}],
        "stream": True,
        "max_tokens": 32,
        "response_format": {"type": "json_object"},
    }
    for received in (full, minimal):
        assert received.headers["authorization"] == f"Bearer {cohere_credential}"
        assert key.plaintext not in repr(received)


def test_images_reach_a_vision_model_as_v2_image_url_parts_and_are_refused_for_others(
    client: OpenAI, cohere_upstream: FakeCohere, cohere_provider: Provider, tag: str, settle: Settle
) -> None:
    seeing = make_route(
        provider=cohere_provider, public_id=f"vision-{tag}", upstream_model=f"vision-{tag}", supports_vision=True
    )
    blind = make_route(provider=cohere_provider, public_id=f"blind-{tag}", upstream_model=f"blind-{tag}")
    settle()
    look: list[ChatCompletionMessageParam] = [
        {
            "role": "user",
            "content": [
                {"type": "text", "text": "What is in this picture?"},
                {"type": "image_url", "image_url": {"url": PIXEL, "detail": "low"}},
            ],
        }
    ]

    client.chat.completions.create(model=seeing.public_id, messages=look)
    with pytest.raises(openai.BadRequestError) as caught:
        client.chat.completions.create(model=blind.public_id, messages=look)

    [received] = cohere_upstream.received(seeing.upstream_model)
    assert received.body["messages"] == [
        {
            "role": "user",
            "content": [
                {"type": "text", "text": "What is in this picture?"},
                {"type": "image_url", "image_url": {"url": PIXEL, "detail": "low"}},
            ],
        }
    ]
    assert caught.value.code == "unsupported_capability"
    assert cohere_upstream.received(blind.upstream_model) == []


@pytest.mark.parametrize(
    ("options", "param"),
    [({"n": 2}, "n"), ({"logprobs": True}, "logprobs"), ({"frequency_penalty": -1.0}, "frequency_penalty")],
)
def test_a_parameter_cohere_cannot_honour_is_refused_by_name(
    client: OpenAI, cohere_upstream: FakeCohere, route: ModelRoute, options: dict[str, Any], param: str
) -> None:
    with pytest.raises(openai.BadRequestError) as caught:
        client.chat.completions.create(model=route.public_id, messages=ASK, **options)

    assert (caught.value.param, caught.value.code) == (param, "unsupported_parameter")
    assert cohere_upstream.received(route.upstream_model) == []


# --- errors ---


@pytest.mark.parametrize(
    ("failure", "error", "status", "code", "error_type", "stream"),
    [
        pytest.param(
            Fail(429, "You are using a Trial key, which is limited to 10 API calls / minute.", {"retry-after": "17"}),
            openai.RateLimitError,
            429,
            "rate_limit_exceeded",
            "requests",
            False,
            id="429",
        ),
        pytest.param(
            Fail(429, "You are using a Trial key, which is limited to 10 API calls / minute.", {"retry-after": "17"}),
            openai.RateLimitError,
            429,
            "rate_limit_exceeded",
            "requests",
            True,
            id="429-streamed",
        ),
        pytest.param(
            Fail(400, "invalid request: message must be at least 1 token long"),
            openai.BadRequestError,
            400,
            None,
            "invalid_request_error",
            True,
            id="400-streamed",
        ),
        pytest.param(
            Fail(404, "model 'command-x' not found, make sure the correct model ID was used"),
            openai.NotFoundError,
            404,
            "model_not_found",
            "invalid_request_error",
            False,
            id="404",
        ),
        pytest.param(
            Fail(500, "internal server error, this has been reported to our developers"),
            openai.InternalServerError,
            502,
            None,
            "api_error",
            False,
            id="500",
        ),
    ],
)
def test_a_cohere_error_answer_is_openais(
    client: OpenAI,
    route: ModelRoute,
    script: Callable[[Any], None],
    failure: Fail,
    error: type[openai.APIStatusError],
    status: int,
    code: str | None,
    error_type: str,
    stream: bool,
) -> None:
    script(failure)

    with pytest.raises(error) as caught:
        client.chat.completions.create(model=route.public_id, messages=ASK, stream=stream)

    body = caught.value.response.json()["error"]
    assert (caught.value.status_code, caught.value.code, body["type"]) == (status, code, error_type)
    assert failure.message in caught.value.message
    assert caught.value.response.headers.get("retry-after") == failure.headers.get("retry-after")
    assert set(body) == {"message", "type", "param", "code"}


@pytest.mark.parametrize("status", [401, 498])
def test_a_refused_key_is_the_gateways_problem_not_the_clients(
    client: OpenAI, route: ModelRoute, script: Callable[[Any], None], status: int
) -> None:
    script(Fail(status, "invalid api token: co-fake-e2e-credential-5b1d9e0c7a24"))

    with pytest.raises(openai.APIStatusError) as caught:
        client.chat.completions.create(model=route.public_id, messages=ASK)

    assert (caught.value.status_code, caught.value.code) == (502, "upstream_auth_error")
    assert "co-fake" not in caught.value.response.text


def test_a_provider_row_with_the_wrong_key_is_refused_by_cohere_and_answered_as_502(
    client: OpenAI, cohere_upstream: FakeCohere, tag: str, settle: Settle
) -> None:
    provider = make_provider(
        kind="cohere", name=f"cohere-wrong-{tag}", base_url=cohere_upstream.base_url, credential="co-wrong-key-0000"
    )
    route = make_route(provider=provider, public_id=f"command-wrong-{tag}", upstream_model=f"command-wrong-{tag}")
    settle()

    with pytest.raises(openai.APIStatusError) as caught:
        client.chat.completions.create(model=route.public_id, messages=ASK)

    assert (caught.value.status_code, caught.value.code) == (502, "upstream_auth_error")
    [received] = cohere_upstream.received(route.upstream_model)
    assert received.headers["authorization"] == "Bearer co-wrong-key-0000"


@pytest.mark.parametrize(
    ("behaviour", "text", "code", "message"),
    [
        pytest.param(CutOff(after=2), "this answer", "upstream_unreachable", "dropped the connection", id="cut-off"),
        pytest.param(FailMidStream(after=1), "partial", None, "ended with ERROR", id="finish-reason-error"),
        pytest.param(FailMidStream(after=2, finish_reason="TIMEOUT"), "partial answer", None, "TIMEOUT", id="timeout"),
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


@pytest.mark.parametrize("reason", ["ERROR", "TIMEOUT"])
def test_a_whole_answer_whose_generation_failed_is_a_502_and_a_failed_call(
    client: OpenAI, route: ModelRoute, script: Callable[[Any], None], reason: str
) -> None:
    script(Reply(ANSWER, finish_reason=reason))
    request_id = new_request_id()

    with pytest.raises(openai.InternalServerError) as caught:
        client.chat.completions.create(model=route.public_id, messages=ASK, extra_headers={"x-request-id": request_id})

    body = caught.value.response.json()
    assert body == {
        "error": {
            "message": f"The upstream provider failed: the generation ended with {reason}.",
            "type": "api_error",
            "param": None,
            "code": None,
        }
    }
    assert caught.value.status_code == 502
    [row] = ledger_rows([request_id])
    assert (row.status, row.error_type, row.upstream_id) == (502, "upstream_error", ANSWER_ID)


def test_a_failed_generations_detail_reaches_the_client_without_the_credential(
    client: OpenAI, route: ModelRoute, script: Callable[[Any], None], cohere_credential: str
) -> None:
    script(Reply(ANSWER, finish_reason="ERROR", error=f"the key {cohere_credential} hit an internal fault"))

    with pytest.raises(openai.InternalServerError) as caught:
        client.chat.completions.create(model=route.public_id, messages=ASK)

    message = caught.value.response.json()["error"]["message"]
    assert message.startswith("The upstream provider failed: the key ")
    assert message.endswith(" hit an internal fault")
    assert cohere_credential not in message


# --- embeddings ---


def test_embeddings_come_back_as_floats_or_base64_from_coheres_embed_v2(
    client: OpenAI, cohere_upstream: FakeCohere, cohere_embedding_route: ModelRoute, key: IssuedKey, settle: Settle
) -> None:
    settle()
    texts = ["The quick brown fox", "jumps over the lazy dog"]

    floats = client.embeddings.create(model=cohere_embedding_route.public_id, input=texts, encoding_format="float")
    encoded = client.embeddings.create(model=cohere_embedding_route.public_id, input=texts[0], dimensions=256)

    assert [item.embedding for item in floats.data] == [vector(text) for text in texts]
    assert encoded.data[0].embedding == vector(texts[0])  # the SDK asked for base64 and decoded it
    assert floats.model == cohere_embedding_route.public_id
    assert floats.usage.prompt_tokens == sum(map(len, texts)) // 4 + 1
    first, second = cohere_upstream.received(cohere_embedding_route.upstream_model)
    assert (first.method, first.path) == ("POST", "/v2/embed")
    assert first.body == {
        "model": cohere_embedding_route.upstream_model,
        "texts": texts,
        "input_type": "search_document",
        "embedding_types": ["float"],
    }
    assert second.body["texts"] == [texts[0]]
    assert second.body["output_dimension"] == 256


def test_the_embed_input_type_is_the_providers_option(
    client: OpenAI, cohere_upstream: FakeCohere, cohere_provider: Provider, tag: str, settle: Settle
) -> None:
    cohere_provider.options = {"embed_input_type": "search_query"}
    cohere_provider.full_clean()
    cohere_provider.save()
    route = make_route(
        provider=cohere_provider,
        public_id=f"query-embed-{tag}",
        upstream_model=f"query-embed-{tag}",
        supports_chat=False,
        supports_embeddings=True,
    )
    settle()

    client.embeddings.create(model=route.public_id, input="where is the fox?")

    [received] = cohere_upstream.received(route.upstream_model)
    assert received.body["input_type"] == "search_query"
