"""Chat through a `replicate`-kind provider: Replicate's predictions API, seen by the tenant as OpenAI's chat.

The official `openai` SDK calls a real Portico server, whose replicate provider points at the fake
Replicate (tests/fakes/replicate_upstream.py): predictions created, polled and streamed over HTTP.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterable, Iterator
from typing import Any

import openai
import pytest
from openai import OpenAI
from openai.types.chat import ChatCompletionChunk

from billing import tokens
from providers.models import ModelRoute, Provider
from providers.tests.factories import make_provider, make_route
from tenants.tests.factories import IssuedKey
from tests.fakes.replicate_upstream import Fail, FailPrediction, FakeReplicate, Hang, Reply, pieces
from tests.integration.test_ledger import ledger_rows, new_request_id, priced
from tests.openai_schemas import assert_valid
from tests.servers import PorticoServer, Settle

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("committed_db")]

ASK = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Say hello"}]
ANSWER = "Hello there, tenant of Portico."


@pytest.fixture
def route(replicate_route: ModelRoute, key: IssuedKey, settle: Settle) -> ModelRoute:
    priced(replicate_route)
    settle()
    return replicate_route


@pytest.fixture
def script(replicate_upstream: FakeReplicate, route: ModelRoute) -> Callable[[Any], None]:
    def script(behaviour: Any) -> None:
        replicate_upstream.script(route.upstream_model, behaviour)

    return script


def raw_chunks(client: OpenAI, model: str, **options: Any) -> Iterator[dict[str, Any]]:
    """Each chunk of a stream as the JSON the client received."""
    with client.chat.completions.with_streaming_response.create(
        model=model, messages=ASK, stream=True, **options
    ) as response:
        for line in response.iter_lines():
            if line.startswith("data: ") and line != "data: [DONE]":
                yield json.loads(line.removeprefix("data: "))


def read_text(stream: Iterable[ChatCompletionChunk], *, into: list[str]) -> None:
    for chunk in stream:
        if chunk.choices:
            into.append(chunk.choices[0].delta.content or "")


def test_it_answers_whole_with_replicates_counts_and_streamed_with_portico_counting(
    client: OpenAI, route: ModelRoute, script: Callable[[Any], None]
) -> None:
    script(Reply(ANSWER, input_token_count=17))
    whole_id, streamed_id = new_request_id(), new_request_id()

    raw = client.chat.completions.with_raw_response.create(
        model=route.public_id, messages=ASK, extra_headers={"x-request-id": whole_id}
    )
    chunks = list(
        raw_chunks(
            client,
            route.public_id,
            stream_options={"include_usage": True},
            extra_headers={"x-request-id": streamed_id},
        )
    )

    body = raw.http_response.json()
    assert_valid("CreateChatCompletionResponse", body)
    assert body["model"] == route.public_id
    assert body["id"].startswith("chatcmpl-")
    assert body["choices"][0]["message"]["content"] == ANSWER
    assert body["choices"][0]["finish_reason"] == "stop"
    words = len(pieces(ANSWER))
    assert body["usage"] == {"prompt_tokens": 17, "completion_tokens": words, "total_tokens": 17 + words}
    assert raw.http_response.headers["x-portico-upstream-id"].startswith("fake")
    for chunk in chunks:
        assert_valid("CreateChatCompletionStreamResponse", chunk)
    assert {chunk["model"] for chunk in chunks} == {route.public_id}
    assert len({chunk["id"] for chunk in chunks}) == 1
    assert chunks[0]["choices"][0]["delta"] == {"role": "assistant", "content": ""}
    text = "".join(chunk["choices"][0]["delta"].get("content") or "" for chunk in chunks if chunk["choices"])
    assert text == ANSWER
    assert chunks[-2]["choices"][0]["finish_reason"] == "stop"
    assert chunks[-1]["choices"] == []
    completion = tokens.count_text(ANSWER, model=route.upstream_model)
    assert chunks[-1]["usage"]["completion_tokens"] == completion
    whole_row, streamed_row = ledger_rows([whole_id, streamed_id])
    assert (whole_row.prompt_tokens, whole_row.completion_tokens, whole_row.tokens_estimated) == (17, words, False)
    assert whole_row.upstream_id == raw.http_response.headers["x-portico-upstream-id"]
    assert (streamed_row.completion_tokens, streamed_row.tokens_estimated, streamed_row.streamed) == (
        completion,
        True,
        True,
    )


def test_the_conversation_and_sampling_reach_replicate_as_its_inputs(
    client: OpenAI, replicate_upstream: FakeReplicate, route: ModelRoute, replicate_credential: str
) -> None:
    conversation = [
        *ASK,
        {"role": "assistant", "content": "Hello!"},
        {"role": "user", "content": [{"type": "text", "text": "Again, louder."}]},
    ]
    client.chat.completions.create(
        model=route.public_id,
        messages=conversation,
        temperature=0.2,
        top_p=0.9,
        max_completion_tokens=64,
        stop=["END", "STOP"],
    )
    list(client.chat.completions.create(model=route.public_id, messages=ASK[1:], stream=True, max_tokens=32))

    whole, streamed = replicate_upstream.received(route.upstream_model)
    assert (whole.method, whole.path) == ("POST", f"/v1/models/{route.upstream_model}/predictions")
    assert whole.headers["authorization"] == f"Bearer {replicate_credential}"
    assert whole.headers["prefer"].startswith("wait=")
    assert whole.body == {
        "input": {
            "prompt": "User: Say hello\n\nAssistant: Hello!\n\nUser: Again, louder.\n\nAssistant:",
            "system_prompt": "Be brief.",
            "max_tokens": 64,
            "temperature": 0.2,
            "top_p": 0.9,
            "stop_sequences": "END,STOP",
        }
    }
    # A lone user message goes as it is; the stream is asked for at creation and read from its own URL.
    assert streamed.body == {"input": {"prompt": "Say hello", "max_tokens": 32}, "stream": True}
    assert "prefer" not in streamed.headers
    [follow] = replicate_upstream.followed(route.upstream_model)
    assert (follow.method, follow.path.rstrip("0123456789rpl")) == ("GET", "/stream/fake")
    assert follow.headers["accept"] == "text/event-stream"
    assert follow.headers["authorization"] == f"Bearer {replicate_credential}"


def test_a_version_and_the_providers_own_input_names_and_template_are_used(
    client: OpenAI, replicate_upstream: FakeReplicate, replicate_credential: str, tag: str, settle: Settle
) -> None:
    provider = make_provider(
        kind="replicate",
        name=f"replicate-own-{tag}",
        base_url=replicate_upstream.base_url + "/v1",
        credential=replicate_credential,
        options={
            "max_tokens_input": "max_new_tokens",
            "system_prompt_input": "",
            "turn_template": "[{role}] {content}",
        },
    )
    version = "5c7d5dc6dd8bf75c1acaa8565735e7986bc5b66206b55cca93cb72c9bf15ccaa"
    route = make_route(
        provider=provider,
        public_id=f"llama2-{tag}",
        upstream_model=f"meta/llama-2-fake-{tag}:{version}",
        supports_tools=False,
    )
    replicate_upstream.script(route.upstream_model, Reply(ANSWER))
    settle()

    answer = client.chat.completions.create(model=route.public_id, messages=ASK, max_tokens=12)

    assert answer.choices[0].message.content == ANSWER
    [created] = replicate_upstream.received(route.upstream_model)
    assert created.path == "/v1/predictions"
    assert created.body == {
        "version": version,
        "input": {"prompt": "[System] Be brief.\n\n[User] Say hello\n\n[Assistant]", "max_new_tokens": 12},
    }


def test_a_prediction_still_running_is_polled_until_it_succeeds(
    client: OpenAI, replicate_upstream: FakeReplicate, route: ModelRoute, script: Callable[[Any], None]
) -> None:
    script(Reply(ANSWER, polls=2))

    answer = client.chat.completions.create(model=route.public_id, messages=ASK)

    assert answer.choices[0].message.content == ANSWER
    polls = replicate_upstream.followed(route.upstream_model)
    assert {(poll.method, poll.path.rsplit("/", 1)[0]) for poll in polls} == {("GET", "/v1/predictions")}
    assert len(polls) == 3  # twice still processing, then succeeded
    assert all(poll.headers["authorization"].startswith("Bearer r8_") for poll in polls)


def test_a_model_that_does_not_stream_is_polled_and_relayed_as_one_piece(
    client: OpenAI, route: ModelRoute, script: Callable[[Any], None]
) -> None:
    script(Reply(ANSWER, polls=1, streams=False))

    chunks = list(raw_chunks(client, route.public_id))

    contents = [chunk["choices"][0]["delta"].get("content") for chunk in chunks if chunk["choices"]]
    assert contents == ["", ANSWER, None]
    assert chunks[-1]["choices"][0]["finish_reason"] == "stop"


def test_an_answer_that_used_up_its_cap_ends_for_length(
    client: OpenAI, route: ModelRoute, script: Callable[[Any], None]
) -> None:
    script(Reply(ANSWER))

    answer = client.chat.completions.create(model=route.public_id, messages=ASK, max_tokens=len(pieces(ANSWER)))

    assert answer.choices[0].finish_reason == "length"


def test_a_failed_prediction_is_an_api_error_whole_or_after_the_streamed_text(
    client: OpenAI, route: ModelRoute, script: Callable[[Any], None]
) -> None:
    script(FailPrediction("CUDA out of memory", polls=1))
    received: list[str] = []

    with pytest.raises(openai.InternalServerError) as whole:
        client.chat.completions.create(model=route.public_id, messages=ASK)
    with client.chat.completions.create(model=route.public_id, messages=ASK, stream=True) as stream:
        with pytest.raises(openai.APIError) as streamed:
            read_text(stream, into=received)

    assert (whole.value.status_code, whole.value.type) == (502, "api_error")
    assert "CUDA out of memory" in whole.value.message
    assert "".join(received) == "Once upon"
    assert "CUDA out of memory" in streamed.value.message


@pytest.mark.parametrize(
    ("failure", "error", "status", "error_type", "code"),
    [
        pytest.param(
            Fail(429, "Request was throttled."), openai.RateLimitError, 429, "requests", "rate_limit_exceeded"
        ),
        pytest.param(Fail(401, "bad token"), openai.InternalServerError, 502, "api_error", "upstream_auth_error"),
        pytest.param(
            Fail(402, "Monthly spend limit reached"),
            openai.InternalServerError,
            502,
            "api_error",
            "upstream_billing_error",
        ),
        pytest.param(
            Fail(404, "The requested model does not exist"),
            openai.NotFoundError,
            404,
            "invalid_request_error",
            "model_not_found",
        ),
        pytest.param(
            Fail(422, "- input.top_p: must be at most 1"), openai.BadRequestError, 400, "invalid_request_error", None
        ),
        pytest.param(Fail(503, "No capacity"), openai.InternalServerError, 503, "api_error", None),
    ],
    ids=["429", "401", "402", "404", "422", "503"],
)
@pytest.mark.parametrize("stream", [False, True], ids=["whole", "streamed"])
def test_a_replicate_problem_is_mapped_to_openais_error(
    client: OpenAI,
    route: ModelRoute,
    script: Callable[[Any], None],
    failure: Fail,
    error: type[openai.APIStatusError],
    status: int,
    error_type: str,
    code: str | None,
    stream: bool,
) -> None:
    script(failure)

    with pytest.raises(error) as caught:
        client.chat.completions.create(model=route.public_id, messages=ASK, stream=stream)

    body = caught.value.response.json()["error"]
    assert set(body) == {"message", "type", "param", "code"}
    assert (caught.value.status_code, body["type"], body["code"]) == (status, error_type, code)
    if failure.status not in (401, 402):
        assert failure.detail in body["message"]
    if failure.status == 429:
        assert caught.value.response.headers["retry-after"] == "7"


def test_a_refused_credential_is_the_gateways_problem(
    client: OpenAI, replicate_upstream: FakeReplicate, tag: str, settle: Settle
) -> None:
    provider = make_provider(
        kind="replicate", name=f"replicate-bad-{tag}", base_url=replicate_upstream.base_url, credential="r8_wrong0123"
    )
    route = make_route(provider=provider, public_id=f"llama-bad-key-{tag}", upstream_model=f"meta/bad-{tag}")
    settle()

    with pytest.raises(openai.InternalServerError) as caught:
        client.chat.completions.create(model=route.public_id, messages=ASK)

    assert (caught.value.status_code, caught.value.code) == (502, "upstream_auth_error")
    assert "r8_wrong" not in caught.value.response.text


@pytest.mark.parametrize(
    ("options", "param"),
    [
        pytest.param(
            {"tools": [{"type": "function", "function": {"name": "f", "parameters": {"type": "object"}}}]},
            "tools",
            id="tools",
        ),
        pytest.param(
            {
                "messages": [
                    {
                        "role": "user",
                        "content": [
                            {"type": "text", "text": "What is this?"},
                            {"type": "image_url", "image_url": {"url": "https://example.com/cat.png"}},
                        ],
                    }
                ]
            },
            "messages[0].content[1].image_url",
            id="image",
        ),
        pytest.param({"n": 2}, "n", id="several-choices"),
        pytest.param({"response_format": {"type": "json_object"}}, "response_format", id="json-mode"),
    ],
)
def test_what_replicate_cannot_do_is_refused_with_a_400_before_the_upstream(
    client: OpenAI,
    replicate_upstream: FakeReplicate,
    replicate_provider: Provider,
    tag: str,
    settle: Settle,
    options: dict[str, Any],
    param: str,
) -> None:
    # A model row that promises everything: the kind itself still refuses what it cannot send.
    route = make_route(
        provider=replicate_provider,
        public_id=f"promising-{tag}",
        upstream_model=f"meta/promising-{tag}",
        supports_vision=True,
    )
    settle()
    request = {"messages": ASK, **options}

    with pytest.raises(openai.BadRequestError) as caught:
        client.chat.completions.create(model=route.public_id, **request)

    assert (caught.value.status_code, caught.value.param, caught.value.code) == (400, param, "unsupported_parameter")
    assert replicate_upstream.received(route.upstream_model) == []


def test_the_routes_capabilities_refuse_tools_and_images_first(
    client: OpenAI, replicate_upstream: FakeReplicate, route: ModelRoute
) -> None:
    image = {"type": "image_url", "image_url": {"url": "https://example.com/cat.png"}}

    with pytest.raises(openai.BadRequestError) as tools:
        client.chat.completions.create(
            model=route.public_id,
            messages=ASK,
            tools=[{"type": "function", "function": {"name": "f"}}],
        )
    with pytest.raises(openai.BadRequestError) as images:
        client.chat.completions.create(model=route.public_id, messages=[{"role": "user", "content": [image]}])

    assert (tools.value.code, images.value.code) == ("unsupported_capability", "unsupported_capability")
    assert tools.value.message.endswith("does not support tools.")
    assert images.value.message.endswith("does not support image inputs.")
    assert replicate_upstream.received(route.upstream_model) == []


def test_a_prediction_past_the_providers_timeout_is_a_504_and_is_canceled(
    client: OpenAI, replicate_upstream: FakeReplicate, replicate_credential: str, tag: str, settle: Settle
) -> None:
    provider = make_provider(
        kind="replicate",
        name=f"replicate-slow-{tag}",
        base_url=replicate_upstream.base_url,
        credential=replicate_credential,
        read_timeout=1.5,
        total_timeout=1.5,
    )
    route = make_route(provider=provider, public_id=f"llama-slow-{tag}", upstream_model=f"meta/slow-{tag}")
    replicate_upstream.script(route.upstream_model, Hang())
    settle()

    with pytest.raises(openai.APIStatusError) as caught:
        client.chat.completions.create(model=route.public_id, messages=ASK)

    assert (caught.value.status_code, caught.value.code) == (504, "upstream_timeout")
    [created] = replicate_upstream.received(route.upstream_model)
    assert created.headers["prefer"] == "wait=1"  # kept inside the read timeout
    deadline = time.monotonic() + 5
    while not replicate_upstream.canceled(route.upstream_model) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert len(replicate_upstream.canceled(route.upstream_model)) == 1


def test_legacy_completions_are_served_through_chat(
    client: OpenAI, replicate_upstream: FakeReplicate, route: ModelRoute, script: Callable[[Any], None]
) -> None:
    script(Reply(ANSWER))

    legacy = client.completions.create(model=route.public_id, prompt="Say hello", max_tokens=20)

    assert (legacy.object, legacy.choices[0].text) == ("text_completion", ANSWER)
    [created] = replicate_upstream.received(route.upstream_model)
    assert created.body["input"] == {"prompt": "Say hello", "max_tokens": 20}


def test_a_client_that_leaves_a_stream_gets_its_prediction_canceled(
    portico: PorticoServer, key: IssuedKey, replicate_upstream: FakeReplicate, route: ModelRoute
) -> None:
    replicate_upstream.script(route.upstream_model, Hang())

    with portico.client(key.plaintext, timeout=1.0) as impatient, pytest.raises(openai.APITimeoutError):
        impatient.chat.completions.create(model=route.public_id, messages=ASK, stream=True)

    deadline = time.monotonic() + 5
    while not replicate_upstream.canceled(route.upstream_model) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert len(replicate_upstream.canceled(route.upstream_model)) == 1
