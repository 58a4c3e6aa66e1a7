"""Chat and embeddings through a `gemini`-kind provider: Google's Gemini API, seen by the tenant as OpenAI's."""

from __future__ import annotations

import asyncio
import base64
import json
from collections.abc import Callable, Iterable, Iterator
from typing import Any, Literal, cast

import openai
import pytest
from openai import OpenAI
from openai.types.chat import ChatCompletionChunk, ChatCompletionMessageParam, ChatCompletionToolParam

from providers.facade import provider_info
from providers.http import probe_models
from providers.models import ModelRoute, Provider
from providers.tests.factories import make_provider, make_route
from tenants.tests.factories import IssuedKey
from tests.fakes.fleet import FakeFleet
from tests.fakes.gemini_upstream import (
    DEFAULT_CALLS,
    Blocked,
    CallTools,
    CutOff,
    Fail,
    FailMidStream,
    FakeGemini,
    Reply,
    vector,
)
from tests.integration.test_ledger import cost, ledger_rows, new_request_id, priced
from tests.openai_schemas import assert_valid
from tests.servers import PorticoServer, Settle

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("committed_db")]

ASK: list[ChatCompletionMessageParam] = [
    {"role": "system", "content": "Be brief."},
    {"role": "user", "content": "What is the weather in Paris?"},
]
ANSWER = "It is sunny in Paris today."
WORDS = len(ANSWER.split())
WEATHER = {
    "type": "object",
    "properties": {"city": {"type": "string"}, "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]}},
    "required": ["city"],
    "additionalProperties": False,
}
TOOLS: list[ChatCompletionToolParam] = [
    {
        "type": "function",
        "function": {"name": "get_weather", "description": "Weather in a city", "parameters": WEATHER},
    },
    {"type": "function", "function": {"name": "get_time", "parameters": {"type": "object", "properties": {}}}},
]
PIXEL = base64.b64encode(b"\x89PNG\r\n\x1a\nfake-pixel").decode()


@pytest.fixture
def route(gemini_route: ModelRoute, key: IssuedKey, settle: Settle) -> ModelRoute:
    settle()
    return gemini_route


@pytest.fixture
def script(gemini_upstream: FakeGemini, route: ModelRoute) -> Callable[[Any], None]:
    def script(behaviour: Any) -> None:
        gemini_upstream.script(route.upstream_model, behaviour)

    return script


def raw_chunks(client: OpenAI, model: str, **options: Any) -> Iterator[dict[str, Any]]:
    """Each chunk of a stream as the JSON the client received."""
    with client.chat.completions.with_streaming_response.create(
        model=model, messages=ASK, stream=True, **options
    ) as response:
        for line in response.iter_lines():
            if line.startswith("data: ") and line != "data: [DONE]":
                yield json.loads(line.removeprefix("data: "))


def _read_text(stream: Iterable[ChatCompletionChunk], *, into: list[str]) -> None:
    for chunk in stream:
        if chunk.choices:
            into.append(chunk.choices[0].delta.content or "")


def _calls(message: Any) -> list[tuple[str, Any]]:
    return [(call.function.name, json.loads(call.function.arguments)) for call in message.tool_calls or ()]


# --- answers ---


def test_it_answers_whole_and_streamed_in_openais_exact_shapes_with_geminis_counts(
    client: OpenAI, route: ModelRoute, script: Callable[[Any], None]
) -> None:
    script(Reply(ANSWER, prompt_tokens=21))

    raw = client.chat.completions.with_raw_response.create(model=route.public_id, messages=ASK)
    whole = raw.parse()
    asked = list(raw_chunks(client, route.public_id, stream_options={"include_usage": True}))
    unasked = list(raw_chunks(client, route.public_id))

    assert_valid("CreateChatCompletionResponse", json.loads(raw.text))
    assert (whole.object, whole.model) == ("chat.completion", route.public_id)
    assert whole.id.startswith("chatcmpl-")
    assert raw.headers["x-portico-upstream-id"] == "fakeGeminiResponse01"
    assert (whole.choices[0].message.content, whole.choices[0].finish_reason) == (ANSWER, "stop")
    assert whole.usage is not None
    assert (whole.usage.prompt_tokens, whole.usage.completion_tokens, whole.usage.total_tokens) == (
        21,
        WORDS,
        21 + WORDS,
    )
    for chunks in (asked, unasked):
        for chunk in chunks:
            assert_valid("CreateChatCompletionStreamResponse", chunk)
        assert {chunk["model"] for chunk in chunks} == {route.public_id}
        assert len({chunk["id"] for chunk in chunks}) == 1
        assert chunks[0]["choices"][0]["delta"]["role"] == "assistant"
        text = "".join(chunk["choices"][0]["delta"].get("content") or "" for chunk in chunks if chunk["choices"])
        assert text == ANSWER
    assert asked[-2]["choices"][0]["finish_reason"] == "stop"
    assert asked[-1]["choices"] == []
    assert (asked[-1]["usage"]["prompt_tokens"], asked[-1]["usage"]["completion_tokens"]) == (21, WORDS)
    assert unasked[-1]["choices"][0]["finish_reason"] == "stop"
    assert all(chunk.get("usage") is None for chunk in unasked)


def test_thoughts_stay_upstream_but_count_as_reasoning_and_cached_tokens_are_detailed(
    client: OpenAI, portico: PorticoServer, key: IssuedKey, route: ModelRoute, script: Callable[[Any], None]
) -> None:
    script(Reply(ANSWER, prompt_tokens=300, thoughts_tokens=40, cached_tokens=256))

    whole = client.chat.completions.create(model=route.public_id, messages=ASK)
    raw = portico.http.post(
        "/v1/chat/completions",
        json={"model": route.public_id, "messages": ASK, "stream": True, "stream_options": {"include_usage": True}},
        headers={"Authorization": f"Bearer {key.plaintext}"},
    )

    assert whole.choices[0].message.content == ANSWER
    assert raw.status_code == 200
    assert "12231" not in raw.text  # the thought's text
    assert raw.text.endswith("data: [DONE]\n\n")
    streamed = json.loads(raw.text.split("data: ")[-2])["usage"]
    assert whole.usage is not None
    for usage in (whole.usage.model_dump(), streamed):
        assert (usage["prompt_tokens"], usage["completion_tokens"]) == (300, WORDS + 40)
        assert usage["prompt_tokens_details"]["cached_tokens"] == 256
        assert usage["completion_tokens_details"]["reasoning_tokens"] == 40


@pytest.mark.parametrize(
    ("behaviour", "finish_reason"),
    [
        pytest.param(Reply(ANSWER, finish_reason="MAX_TOKENS"), "length", id="max-tokens"),
        pytest.param(Reply(ANSWER, finish_reason="SAFETY"), "content_filter", id="safety"),
        pytest.param(Reply(ANSWER, finish_reason="RECITATION"), "content_filter", id="recitation"),
        pytest.param(Blocked("PROHIBITED_CONTENT"), "content_filter", id="blocked-prompt"),
    ],
)
def test_geminis_finish_reason_becomes_openais_whole_and_streamed(
    client: OpenAI, route: ModelRoute, script: Callable[[Any], None], behaviour: Any, finish_reason: str
) -> None:
    script(behaviour)

    whole = client.chat.completions.create(model=route.public_id, messages=ASK)
    chunks = list(raw_chunks(client, route.public_id))

    assert whole.choices[0].finish_reason == finish_reason
    finishes = [chunk["choices"][0]["finish_reason"] for chunk in chunks if chunk["choices"]]
    assert finishes[-1] == finish_reason
    assert set(finishes[:-1]) == {None}


def test_several_choices_come_as_geminis_candidates(
    client: OpenAI, gemini_upstream: FakeGemini, route: ModelRoute, script: Callable[[Any], None]
) -> None:
    script(Reply(ANSWER))

    whole = client.chat.completions.create(model=route.public_id, messages=ASK, n=2)
    chunks = list(raw_chunks(client, route.public_id, n=2))

    assert [(choice.index, choice.message.content) for choice in whole.choices] == [(0, ANSWER), (1, ANSWER)]
    for index in (0, 1):
        deltas = [c["choices"][0] for c in chunks if c["choices"] and c["choices"][0]["index"] == index]
        assert "".join(choice["delta"].get("content") or "" for choice in deltas) == ANSWER
        assert deltas[-1]["finish_reason"] == "stop"
    sent = gemini_upstream.received(route.upstream_model)
    assert [received.body["generationConfig"] for received in sent] == [{"candidateCount": 2}] * 2


# --- what Gemini is sent ---


def test_the_upstream_gets_a_generate_content_request_in_geminis_terms(
    client: OpenAI, gemini_upstream: FakeGemini, route: ModelRoute, key: IssuedKey, gemini_credential: str
) -> None:
    client.chat.completions.create(
        model=route.public_id,
        messages=[*ASK, {"role": "assistant", "content": "Which unit?"}, {"role": "user", "content": "Celsius."}],
        tools=TOOLS,
        tool_choice={"type": "function", "function": {"name": "get_weather"}},
        max_completion_tokens=300,
        temperature=1.5,
        top_p=0.9,
        seed=7,
        stop=["END"],
        response_format={"type": "json_schema", "json_schema": {"name": "weather", "schema": WEATHER}},
        user="end-user-7",
    )
    client.chat.completions.create(model=route.public_id, messages=ASK[1:], stream=True, max_tokens=64).close()

    full, streamed = gemini_upstream.received(route.upstream_model)
    assert (full.method, full.path, full.query) == (
        "POST",
        f"/v1beta/models/{route.upstream_model}:generateContent",
        "",
    )
    schema = {key: value for key, value in WEATHER.items() if key != "additionalProperties"}
    assert full.body == {
        "contents": [
            {"role": "user", "parts": [{"text": "What is the weather in Paris?"}]},
            {"role": "model", "parts": [{"text": "Which unit?"}]},
            {"role": "user", "parts": [{"text": "Celsius."}]},
        ],
        "systemInstruction": {"parts": [{"text": "Be brief."}]},
        "tools": [
            {
                "functionDeclarations": [
                    {"name": "get_weather", "description": "Weather in a city", "parameters": schema},
                    {"name": "get_time"},  # Gemini refuses an object schema without properties
                ]
            }
        ],
        "toolConfig": {"functionCallingConfig": {"mode": "ANY", "allowedFunctionNames": ["get_weather"]}},
        "generationConfig": {
            "temperature": 1.5,
            "topP": 0.9,
            "seed": 7,
            "maxOutputTokens": 300,
            "stopSequences": ["END"],
            "responseMimeType": "application/json",
            "responseSchema": schema,
        },
    }
    assert (streamed.path, streamed.query) == (
        f"/v1beta/models/{route.upstream_model}:streamGenerateContent",
        "alt=sse",
    )
    assert streamed.body == {
        "contents": [{"role": "user", "parts": [{"text": "What is the weather in Paris?"}]}],
        "generationConfig": {"maxOutputTokens": 64},
    }
    for received in (full, streamed):
        assert received.headers["x-goog-api-key"] == gemini_credential
        assert "authorization" not in received.headers
        assert key.plaintext not in repr(received)


def test_an_inline_image_goes_as_inline_data_and_an_image_url_is_refused_before_the_upstream(
    client: OpenAI, gemini_upstream: FakeGemini, gemini_provider: Provider, settle: Settle, tag: str
) -> None:
    route = make_route(
        provider=gemini_provider,
        public_id=f"gemini-eyes-{tag}",
        upstream_model=f"gemini-eyes-{tag}",
        supports_vision=True,
    )
    settle()

    def looking_at(url: str) -> list[ChatCompletionMessageParam]:
        return [
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": "What is this?"},
                    {"type": "image_url", "image_url": {"url": url}},
                ],
            }
        ]

    client.chat.completions.create(model=route.public_id, messages=looking_at(f"data:image/png;base64,{PIXEL}"))
    with pytest.raises(openai.BadRequestError) as caught:
        client.chat.completions.create(model=route.public_id, messages=looking_at("https://example.com/cat.png"))

    [received] = gemini_upstream.received(route.upstream_model)
    assert received.body["contents"] == [
        {"role": "user", "parts": [{"text": "What is this?"}, {"inlineData": {"mimeType": "image/png", "data": PIXEL}}]}
    ]
    assert caught.value.code == "unsupported_parameter"
    assert caught.value.param == "messages[0].content[1].image_url.url"
    assert "base64 data URL" in caught.value.message


# --- tools ---


def test_parallel_function_calls_become_tool_calls_streamed_or_whole(
    client: OpenAI, route: ModelRoute, script: Callable[[Any], None]
) -> None:
    script(CallTools(text="Checking both cities."))

    whole = client.chat.completions.create(model=route.public_id, messages=ASK, tools=TOOLS)
    with client.chat.completions.stream(model=route.public_id, messages=ASK, tools=TOOLS) as stream:
        events = list(stream)
        streamed = stream.get_final_completion()

    for completion in (whole, streamed):
        [choice] = completion.choices
        assert choice.message.content == "Checking both cities."
        assert _calls(choice.message) == list(DEFAULT_CALLS)
        assert choice.finish_reason == "tool_calls"
        ids = [call.id for call in choice.message.tool_calls or ()]
        assert all(call_id.startswith("call_") for call_id in ids)
        assert len(set(ids)) == 2
    done = [event for event in events if event.type == "tool_calls.function.arguments.done"]
    assert [(event.index, event.name, json.loads(event.arguments)) for event in done] == [
        (index, name, arguments) for index, (name, arguments) in enumerate(DEFAULT_CALLS)
    ]
    assert whole.usage is not None
    assert whole.usage.prompt_tokens == 57


def test_tool_results_go_back_as_function_responses_named_by_the_calls_they_answer(
    client: OpenAI, gemini_upstream: FakeGemini, route: ModelRoute, script: Callable[[Any], None]
) -> None:
    script(CallTools(signature="c2lnbmF0dXJlLW9mLWEtdGhvdWdodA=="))
    asked = client.chat.completions.create(model=route.public_id, messages=ASK, tools=TOOLS)
    calls = asked.choices[0].message.tool_calls or []
    script(Reply(ANSWER))
    results: list[ChatCompletionMessageParam] = [
        {"role": "tool", "tool_call_id": calls[0].id, "content": '{"temperature": 18}'},
        {"role": "tool", "tool_call_id": calls[1].id, "content": "22 degrees"},
    ]

    final = client.chat.completions.create(
        model=route.public_id,
        messages=[
            *ASK,
            cast(ChatCompletionMessageParam, asked.choices[0].message.model_dump(exclude_none=True)),
            *results,
        ],
        tools=TOOLS,
    )

    assert final.choices[0].message.content == ANSWER
    contents = gemini_upstream.received(route.upstream_model)[-1].body["contents"]
    assert [turn["role"] for turn in contents] == ["user", "model", "user"]
    # The thinking model's signature came back on the call it was given with.
    assert contents[1]["parts"] == [
        {
            "functionCall": {"name": "get_weather", "args": {"city": "Paris", "unit": "celsius"}},
            "thoughtSignature": "c2lnbmF0dXJlLW9mLWEtdGhvdWdodA==",
        },
        {"functionCall": {"name": "get_weather", "args": {"city": "Tokyo", "unit": "celsius"}}},
    ]
    assert contents[2]["parts"] == [
        {"functionResponse": {"name": "get_weather", "response": {"temperature": 18}}},
        {"functionResponse": {"name": "get_weather", "response": {"content": "22 degrees"}}},
    ]


@pytest.mark.parametrize(
    ("choice", "config"),
    [
        pytest.param("auto", {"mode": "AUTO"}, id="auto"),
        pytest.param("none", {"mode": "NONE"}, id="none"),
        pytest.param("required", {"mode": "ANY"}, id="required"),
    ],
)
def test_tool_choice_becomes_a_function_calling_mode(
    client: OpenAI,
    gemini_upstream: FakeGemini,
    route: ModelRoute,
    choice: Literal["auto", "none", "required"],
    config: dict[str, Any],
) -> None:
    client.chat.completions.create(model=route.public_id, messages=ASK, tools=TOOLS, tool_choice=choice)

    [received] = gemini_upstream.received(route.upstream_model)
    assert received.body["toolConfig"] == {"functionCallingConfig": config}


# --- errors ---


@pytest.mark.parametrize("stream", [False, True], ids=["whole", "streamed"])
def test_resource_exhausted_is_openais_rate_limit_with_geminis_retry_delay(
    client: OpenAI, route: ModelRoute, script: Callable[[Any], None], stream: bool
) -> None:
    script(Fail(429, "You exceeded your current quota, please check your plan and billing details."))

    with pytest.raises(openai.RateLimitError) as caught:
        client.chat.completions.create(model=route.public_id, messages=ASK, stream=stream)

    error = caught.value.response.json()["error"]
    assert caught.value.status_code == 429
    assert (error["code"], error["type"]) == ("rate_limit_exceeded", "tokens")  # the quota named is a token one
    assert "exceeded your current quota" in error["message"]
    assert caught.value.response.headers["retry-after"] == "17"  # RetryInfo's 16.5s, rounded up
    assert set(error) == {"message", "type", "param", "code"}


def test_a_deployment_whose_body_said_retry_delay_is_left_alone_until_then(
    client: OpenAI,
    gemini_route: ModelRoute,
    gemini_upstream: FakeGemini,
    upstreams: FakeFleet,
    upstream_credential: str,
    key: IssuedKey,
    settle: Settle,
    tag: str,
) -> None:
    # Gemini says when to come back in the body (RetryInfo), not in a header: the deployment must still rest.
    gemini_upstream.script(gemini_route.upstream_model, Fail(429, "Quota exceeded."))
    fallback = make_provider(
        kind="openai", name=f"fallback-{tag}", base_url=upstreams[1].base_url, credential=upstream_credential
    )
    make_route(provider=fallback, public_id=gemini_route.public_id, upstream_model=f"fo-{tag}", priority=1)
    settle()

    attempts = []
    for _ in range(2):
        raw = client.chat.completions.with_raw_response.create(model=gemini_route.public_id, messages=ASK)
        assert raw.parse().choices[0].message.content == "served by fake-2"
        attempts.append(raw.headers["x-portico-attempts"])

    assert attempts == ["2", "1"]
    assert len(gemini_upstream.received(gemini_route.upstream_model)) == 1


@pytest.mark.parametrize(
    ("failure", "error", "status", "code"),
    [
        pytest.param(
            Fail(400, "* GenerationConfig.stop_sequences: at most 5 stop sequences"),
            openai.BadRequestError,
            400,
            None,
            id="invalid-argument",
        ),
        pytest.param(
            Fail(404, "models/gemini-9 is not found for API version v1beta"),
            openai.NotFoundError,
            404,
            "model_not_found",
            id="not-found",
        ),
        pytest.param(
            Fail(500, "An internal error has occurred."), openai.InternalServerError, 502, None, id="internal"
        ),
        pytest.param(
            Fail(503, "The model is overloaded. Please try again later."),
            openai.InternalServerError,
            503,
            None,
            id="unavailable",
        ),
        pytest.param(
            # A proxy in between may change the HTTP status; Google's own status name decides.
            Fail(500, "Request contains an invalid argument.", status_name="INVALID_ARGUMENT"),
            openai.BadRequestError,
            400,
            None,
            id="status-name-wins",
        ),
    ],
)
def test_a_gemini_error_is_mapped_to_openais(
    client: OpenAI,
    route: ModelRoute,
    script: Callable[[Any], None],
    failure: Fail,
    error: type[openai.APIStatusError],
    status: int,
    code: str | None,
) -> None:
    script(failure)

    with pytest.raises(error) as caught:
        client.chat.completions.create(model=route.public_id, messages=ASK)

    body = caught.value.response.json()["error"]
    assert (caught.value.status_code, caught.value.code) == (status, code)
    assert failure.message in caught.value.message
    assert body["type"] == ("invalid_request_error" if status < 500 else "api_error")
    assert set(body) == {"message", "type", "param", "code"}


@pytest.mark.parametrize("credential", ["AIzaSyWrongKey", ""], ids=["wrong-key", "no-key"])
def test_a_refused_key_is_the_operators_problem_not_the_tenants(
    client: OpenAI, gemini_upstream: FakeGemini, settle: Settle, tag: str, credential: str
) -> None:
    # Gemini answers a wrong key with 400 INVALID_ARGUMENT (reason API_KEY_INVALID), a missing one with 403.
    provider = make_provider(
        kind="gemini", name=f"gemini-bad-{tag}", base_url=gemini_upstream.base_url, credential=credential
    )
    route = make_route(provider=provider, public_id=f"gemini-bad-{tag}", upstream_model=f"gemini-bad-{tag}")
    settle()

    with pytest.raises(openai.InternalServerError) as caught:
        client.chat.completions.create(model=route.public_id, messages=ASK)

    assert (caught.value.status_code, caught.value.code) == (502, "upstream_auth_error")
    assert "API key not valid" not in caught.value.message
    assert len(gemini_upstream.received(route.upstream_model)) == 1


@pytest.mark.parametrize(
    ("behaviour", "text", "code", "message"),
    [
        pytest.param(FailMidStream(after=2), "Once upon", None, "overloaded", id="error-event"),
        pytest.param(CutOff(after=2), "this answer", "upstream_unreachable", "dropped the connection", id="cut-off"),
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
    ("options", "param"), [({"logprobs": True}, "logprobs"), ({"modalities": ["audio"]}, "modalities")]
)
def test_a_parameter_gemini_cannot_honour_is_refused_by_name(
    client: OpenAI, gemini_upstream: FakeGemini, route: ModelRoute, options: dict[str, Any], param: str
) -> None:
    with pytest.raises(openai.BadRequestError) as caught:
        client.chat.completions.create(model=route.public_id, messages=ASK, **options)

    assert (caught.value.param, caught.value.code) == (param, "unsupported_parameter")
    assert gemini_upstream.received(route.upstream_model) == []


# --- the ledger ---


@pytest.mark.parametrize("stream", [False, True], ids=["whole", "streamed"])
def test_geminis_usage_lands_in_the_ledger_and_is_charged(
    client: OpenAI, gemini_upstream: FakeGemini, gemini_route: ModelRoute, settle: Settle, stream: bool
) -> None:
    route = priced(gemini_route)
    settle()
    gemini_upstream.script(
        route.upstream_model, Reply(ANSWER, prompt_tokens=300, thoughts_tokens=40, cached_tokens=256)
    )
    request_id = new_request_id()

    headers = {"x-request-id": request_id}
    if stream:
        list(client.chat.completions.create(model=route.public_id, messages=ASK, stream=True, extra_headers=headers))
    else:
        client.chat.completions.create(model=route.public_id, messages=ASK, extra_headers=headers)

    [row] = ledger_rows([request_id])
    assert (row.model, row.provider, row.upstream_model) == (route.public_id, route.provider.name, route.upstream_model)
    assert (row.prompt_tokens, row.completion_tokens, row.cached_tokens) == (300, WORDS + 40, 256)
    assert (row.status, row.streamed, row.tokens_estimated) == (200, stream, False)
    assert row.upstream_id == "fakeGeminiResponse01"
    assert row.cost == cost(300, WORDS + 40, cached=256)


# --- embeddings ---


def test_embeddings_go_to_embed_content_or_batch_embed_contents(
    client: OpenAI,
    portico: PorticoServer,
    key: IssuedKey,
    gemini_upstream: FakeGemini,
    gemini_embedding_route: ModelRoute,
    settle: Settle,
) -> None:
    settle()
    texts = ["The first text.", "A second, longer text to embed."]
    model = gemini_embedding_route.public_id

    several = client.embeddings.create(model=model, input=texts)  # the SDK asks for base64, and decodes it
    one = portico.http.post(
        "/v1/embeddings",
        json={"model": model, "input": texts[0], "encoding_format": "float", "dimensions": 2},
        headers={"Authorization": f"Bearer {key.plaintext}"},
    ).json()

    assert [item.embedding for item in several.data] == [vector(text) for text in texts]
    assert several.model == model
    assert several.usage.prompt_tokens == several.usage.total_tokens > 0  # counted by Portico: Gemini gives none
    assert one["data"] == [{"object": "embedding", "index": 0, "embedding": vector(texts[0])[:2]}]
    batch, single = gemini_upstream.received(gemini_embedding_route.upstream_model)
    upstream_model = f"models/{gemini_embedding_route.upstream_model}"
    assert batch.path.endswith(":batchEmbedContents")
    assert batch.body == {
        "requests": [{"model": upstream_model, "content": {"parts": [{"text": text}]}} for text in texts]
    }
    assert single.path.endswith(":embedContent")
    assert single.body == {
        "model": upstream_model,
        "content": {"parts": [{"text": texts[0]}]},
        "outputDimensionality": 2,
    }


def test_the_legacy_completions_endpoint_is_bridged_onto_generate_content(
    client: OpenAI, gemini_upstream: FakeGemini, route: ModelRoute, script: Callable[[Any], None]
) -> None:
    script(Reply(ANSWER))

    legacy = client.completions.create(model=route.public_id, prompt="Weather?", max_tokens=20)

    assert (legacy.object, legacy.choices[0].text) == ("text_completion", ANSWER)
    [received] = gemini_upstream.received(route.upstream_model)
    assert received.body == {
        "contents": [{"role": "user", "parts": [{"text": "Weather?"}]}],
        "generationConfig": {"maxOutputTokens": 20},
    }


def test_the_connection_test_lists_geminis_models_by_their_route_names(
    gemini_provider: Provider, gemini_upstream: FakeGemini, tag: str
) -> None:
    gemini_upstream.script(f"gemini-listed-{tag}", Reply())

    result = asyncio.run(probe_models(provider_info(gemini_provider)))

    assert result.ok, result.summary
    assert f"gemini-listed-{tag}" in result.model_ids
    listed = gemini_upstream.received("")[-1]
    assert (listed.method, listed.path, listed.query) == ("GET", "/v1beta/models", "pageSize=1000")
