"""Upstreams that are only loosely OpenAI-compatible: the client still gets OpenAI's exact shapes and a usage it can
trust, through the official `openai` SDK.

Every answer and chunk is checked against the component schemas of OpenAI's own OpenAPI spec
(tests/specs/openai-schemas.json, extracted from OpenAI's published OpenAPI document).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from decimal import Decimal
from typing import Any

import openai
import pytest
from openai import OpenAI

from billing.models import UsageRecord
from providers.models import ModelRoute
from providers.tests.factories import make_provider, make_route
from tests.fakes import ollama_upstream
from tests.fakes.anthropic_upstream import FakeAnthropic
from tests.fakes.azure_upstream import FakeAzure
from tests.fakes.behaviours import Deviate, Fail, Reply
from tests.fakes.ollama_upstream import FakeOllama
from tests.fakes.openai_upstream import FakeUpstream, completion, deviant_completion
from tests.integration.test_ledger import ledger_rows, new_request_id, priced
from tests.openai_schemas import assert_valid
from tests.servers import Settle

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("committed_db")]

HELLO = [{"role": "user", "content": "Say hello, in a few words."}]
ANSWER = "Hello there, from a server that does things its own way."
USAGE = {"prompt_tokens": 11, "completion_tokens": len(ANSWER.split()), "total_tokens": 11 + len(ANSWER.split())}
SHAPE_DEVIATIONS = frozenset({"no_logprobs", "no_refusal", "null_tool_calls", "null_fingerprint", "null_usage_details"})

RouteTo = Callable[..., ModelRoute]


# --- OpenAI's schemas: tests/openai_schemas.py ---


def assert_exact_completion(body: dict[str, Any]) -> None:
    assert_valid("CreateChatCompletionResponse", body)
    assert body.get("system_fingerprint", "omitted") is not None
    for choice in body["choices"]:
        assert choice["logprobs"] is None
        assert "refusal" in choice["message"]
        assert "tool_calls" not in choice["message"]


def assert_exact_chunks(chunks: list[dict[str, Any]]) -> None:
    for chunk in chunks:
        assert_valid("CreateChatCompletionStreamResponse", chunk)
        assert chunk.get("system_fingerprint", "omitted") is not None
        for choice in chunk["choices"]:
            assert choice["logprobs"] is None
            assert "tool_calls" not in choice["delta"]


# --- routes and calls ---


@pytest.fixture
def route_to(upstream: FakeUpstream, upstream_credential: str, tag: str, settle: Settle) -> RouteTo:
    """A priced route through an OpenAI-kind provider of its own, pointed at the fake, with these provider fields."""
    count = iter(range(1, 100))

    def route_to(**provider_fields: Any) -> ModelRoute:
        suffix = f"{tag}-{next(count)}"
        provider = make_provider(
            kind="openai",
            name=f"loose-{suffix}",
            base_url=upstream.base_url,
            credential=upstream_credential,
            **provider_fields,
        )
        route = make_route(provider=provider, public_id=f"gpt-loose-{suffix}", upstream_model=f"loose-{suffix}")
        priced(route)
        settle()
        return route

    return route_to


def raw_stream(client: OpenAI, model: str, **options: Any) -> Iterator[dict[str, Any]]:
    """Each chunk of a stream as the JSON the client received, read through the SDK's raw streaming response."""
    with client.chat.completions.with_streaming_response.create(
        model=model, messages=HELLO, stream=True, **options
    ) as response:
        for line in response.iter_lines():
            if line.startswith("data: ") and line != "data: [DONE]":
                yield json.loads(line.removeprefix("data: "))


def only_row(request_id: str) -> UsageRecord:
    [row] = ledger_rows([request_id])
    return row


# --- shapes ---


def test_a_loose_whole_answer_reaches_the_client_in_openais_exact_shape(
    client: OpenAI, upstream: FakeUpstream, route_to: RouteTo
) -> None:
    route = route_to()
    upstream.script(route.upstream_model, Deviate(Reply(ANSWER), SHAPE_DEVIATIONS))

    raw = client.chat.completions.with_raw_response.create(model=route.public_id, messages=HELLO)
    body = raw.http_response.json()

    assert_exact_completion(body)
    assert body["usage"] == USAGE
    completion = raw.parse()
    assert completion.choices[0].message.content == ANSWER
    assert completion.choices[0].message.refusal is None


@pytest.mark.parametrize("include_usage", [False, True], ids=["usage not asked for", "usage asked for"])
def test_a_loose_stream_reaches_the_client_in_openais_exact_shape(
    client: OpenAI, upstream: FakeUpstream, route_to: RouteTo, include_usage: bool
) -> None:
    route = route_to()
    upstream.script(route.upstream_model, Deviate(Reply(ANSWER), SHAPE_DEVIATIONS))
    options = {"stream_options": {"include_usage": True}} if include_usage else {}

    chunks = list(raw_stream(client, route.public_id, **options))

    assert_exact_chunks(chunks)
    assert "".join(choice["delta"].get("content") or "" for c in chunks for choice in c["choices"]) == ANSWER
    usage = [chunk["usage"] for chunk in chunks if chunk.get("usage")]
    assert usage == ([USAGE] if include_usage else [])
    assert {chunk["id"] for chunk in chunks} == {"chatcmpl-fake"}


def test_a_loose_stream_reads_through_the_sdk(client: OpenAI, upstream: FakeUpstream, route_to: RouteTo) -> None:
    route = route_to()
    upstream.script(route.upstream_model, Deviate(Reply(ANSWER), SHAPE_DEVIATIONS | {"usage_on_last_choice"}))

    chunks = list(
        client.chat.completions.create(
            model=route.public_id, messages=HELLO, stream=True, stream_options={"include_usage": True}
        )
    )

    assert "".join(chunk.choices[0].delta.content or "" for chunk in chunks if chunk.choices) == ANSWER
    assert [chunk.usage.total_tokens for chunk in chunks if chunk.usage] == [USAGE["total_tokens"]]


def test_a_provider_declared_exact_is_relayed_as_it_answers(
    client: OpenAI, upstream: FakeUpstream, route_to: RouteTo
) -> None:
    route = route_to(exact_shapes=True)
    upstream.script(route.upstream_model, Deviate(Reply(ANSWER), SHAPE_DEVIATIONS))

    body = client.chat.completions.with_raw_response.create(model=route.public_id, messages=HELLO).http_response.json()
    chunks = list(raw_stream(client, route.public_id))

    # Nothing shaped: what the server left out stays out, its nulls stay null.
    assert "logprobs" not in body["choices"][0]
    assert "refusal" not in body["choices"][0]["message"]
    assert body["system_fingerprint"] is None
    assert all("logprobs" not in choice for chunk in chunks for choice in chunk["choices"])


def test_azure_answers_are_shaped_as_openais(
    client: OpenAI, azure_upstream: FakeAzure, azure_route: ModelRoute, settle: Settle
) -> None:
    azure_upstream.script(azure_route.upstream_model, Deviate(Reply(ANSWER), SHAPE_DEVIATIONS))
    settle()

    body = client.chat.completions.with_raw_response.create(
        model=azure_route.public_id, messages=HELLO
    ).http_response.json()
    chunks = list(raw_stream(client, azure_route.public_id, stream_options={"include_usage": True}))

    assert_exact_completion(body)
    assert_exact_chunks(chunks)
    assert [chunk["usage"]["total_tokens"] for chunk in chunks if chunk.get("usage")] == [USAGE["total_tokens"]]


def test_anthropic_answers_have_an_openai_id_and_keep_anthropics_for_the_ledger(
    client: OpenAI, anthropic_upstream: FakeAnthropic, anthropic_route: ModelRoute, settle: Settle
) -> None:
    settle()
    request_ids = [new_request_id(), new_request_id()]

    raw = client.chat.completions.with_raw_response.create(
        model=anthropic_route.public_id, messages=HELLO, extra_headers={"x-request-id": request_ids[0]}
    )
    body = raw.http_response.json()
    with client.chat.completions.with_streaming_response.create(
        model=anthropic_route.public_id,
        messages=HELLO,
        stream=True,
        stream_options={"include_usage": True},
        extra_headers={"x-request-id": request_ids[1]},
    ) as response:
        chunks = [json.loads(line[6:]) for line in response.iter_lines() if line.startswith("data: {")]

    assert_exact_completion(body)
    assert_exact_chunks(chunks)
    assert body["id"].startswith("chatcmpl-")
    assert "msg_" not in body["id"]
    assert raw.headers["x-portico-upstream-id"] == "msg_01FakeAnthropicReply"
    assert {chunk["id"] for chunk in chunks} == {chunks[0]["id"]}
    assert "msg_" not in chunks[0]["id"]
    rows = {row.client_request_id: row for row in ledger_rows(request_ids)}
    assert [rows[request_id].upstream_id for request_id in request_ids] == ["msg_01FakeAnthropicReply"] * 2


# --- usage ---


def test_a_zero_usage_answer_is_counted_by_portico_billed_and_flagged(
    client: OpenAI, upstream: FakeUpstream, route_to: RouteTo
) -> None:
    route = route_to()
    upstream.script(route.upstream_model, Deviate(Reply(ANSWER), {"zero_usage"}))
    request_id = new_request_id()

    raw = client.chat.completions.with_raw_response.create(
        model=route.public_id, messages=HELLO, extra_headers={"x-request-id": request_id}
    )
    usage = raw.parse().usage

    assert usage is not None
    assert usage.prompt_tokens > 0
    assert usage.completion_tokens > 0
    assert usage.total_tokens == usage.prompt_tokens + usage.completion_tokens
    assert raw.headers["x-portico-usage"] == "counted"
    assert_exact_completion(raw.http_response.json())
    row = only_row(request_id)
    assert (row.prompt_tokens, row.completion_tokens) == (usage.prompt_tokens, usage.completion_tokens)
    assert row.tokens_estimated
    assert row.cost > 0
    assert row.cost == Decimal(raw.headers["x-portico-cost"])


@pytest.mark.parametrize("deviation", ["zero_usage", "no_usage"])
def test_a_stream_without_believable_usage_is_counted_and_the_client_gets_the_count(
    client: OpenAI, upstream: FakeUpstream, route_to: RouteTo, deviation: str
) -> None:
    route = route_to()
    upstream.script(route.upstream_model, Deviate(Reply(ANSWER), {deviation}))
    request_id = new_request_id()

    chunks = list(
        raw_stream(
            client,
            route.public_id,
            stream_options={"include_usage": True},
            extra_headers={"x-request-id": request_id},
        )
    )

    assert_exact_chunks(chunks)
    [usage] = [chunk["usage"] for chunk in chunks if chunk.get("usage")]
    assert usage["prompt_tokens"] > 0
    assert usage["completion_tokens"] > 0
    row = only_row(request_id)
    assert (row.prompt_tokens, row.completion_tokens) == (usage["prompt_tokens"], usage["completion_tokens"])
    assert row.tokens_estimated
    assert row.cost > 0


def test_an_ollama_answer_that_reports_no_prompt_tokens_is_counted(
    client: OpenAI, ollama_upstream: FakeOllama, ollama_route: ModelRoute, settle: Settle
) -> None:
    ollama_upstream.script(ollama_route.upstream_model, ollama_upstream_reply(prompt_eval_count=0))
    priced(ollama_route)
    settle()
    request_id = new_request_id()

    raw = client.chat.completions.with_raw_response.create(
        model=ollama_route.public_id, messages=HELLO, extra_headers={"x-request-id": request_id}
    )
    usage = raw.parse().usage

    assert usage is not None
    assert usage.prompt_tokens > 0
    assert raw.headers["x-portico-usage"] == "counted"
    assert_exact_completion(raw.http_response.json())
    row = only_row(request_id)
    assert (row.prompt_tokens, row.tokens_estimated) == (usage.prompt_tokens, True)
    assert row.cost > 0


def ollama_upstream_reply(**fields: Any) -> ollama_upstream.Reply:
    return ollama_upstream.Reply("Hello from a server that counts nothing it cached.", **fields)


def test_a_believable_usage_is_the_upstreams_and_not_flagged(
    client: OpenAI, upstream: FakeUpstream, route_to: RouteTo
) -> None:
    route = route_to()
    upstream.script(route.upstream_model, Reply(ANSWER))
    request_id = new_request_id()

    raw = client.chat.completions.with_raw_response.create(
        model=route.public_id, messages=HELLO, extra_headers={"x-request-id": request_id}
    )

    assert "x-portico-usage" not in raw.headers
    row = only_row(request_id)
    assert (row.prompt_tokens, row.completion_tokens, row.tokens_estimated) == (11, USAGE["completion_tokens"], False)


def test_cache_creation_goes_to_a_header_and_the_ledger_not_the_usage_object(
    client: OpenAI, upstream: FakeUpstream, route_to: RouteTo
) -> None:
    route = route_to()
    upstream.script(route.upstream_model, Deviate(Reply(ANSWER), {"cache_creation"}))
    request_id = new_request_id()

    raw = client.chat.completions.with_raw_response.create(
        model=route.public_id, messages=HELLO, extra_headers={"x-request-id": request_id}
    )
    body = raw.http_response.json()
    usage = raw.parse().usage

    assert body["usage"]["prompt_tokens_details"] == {"cached_tokens": 4}
    assert_valid("CreateChatCompletionResponse", body)
    assert usage is not None
    assert usage.prompt_tokens_details is not None
    assert usage.prompt_tokens_details.cached_tokens == 4
    assert raw.headers["x-portico-cache-creation-tokens"] == "5"
    row = only_row(request_id)
    assert (row.cached_tokens, row.cache_creation_tokens, row.tokens_estimated) == (4, 5, False)


# --- errors ---


@pytest.mark.parametrize("upstream_type", ["server_error", "rate_limit_error", "tokens"])
def test_an_upstream_429_is_openais_rate_limit_error_whatever_its_type(
    client: OpenAI, upstream: FakeUpstream, route_to: RouteTo, upstream_type: str
) -> None:
    route = route_to()
    upstream.script(route.upstream_model, Fail(429, "Slow down.", type=upstream_type, code="whatever"))

    with pytest.raises(openai.RateLimitError) as raised:
        client.with_options(max_retries=0).chat.completions.create(model=route.public_id, messages=HELLO)

    error = raised.value.body
    assert isinstance(error, dict)
    expected_type = "tokens" if upstream_type == "tokens" else "requests"
    assert (error["type"], error["code"], error["param"]) == (expected_type, "rate_limit_exceeded", None)


def test_an_azure_429_is_openais_rate_limit_error(
    client: OpenAI, azure_upstream: FakeAzure, azure_route: ModelRoute, settle: Settle
) -> None:
    azure_upstream.script(azure_route.upstream_model, Fail(429, "Slow down.", type="server_error"))
    settle()

    with pytest.raises(openai.RateLimitError) as raised:
        client.with_options(max_retries=0).chat.completions.create(model=azure_route.public_id, messages=HELLO)

    assert isinstance(raised.value.body, dict)
    assert (raised.value.body["type"], raised.value.body["code"]) == ("requests", "rate_limit_exceeded")


def test_the_schema_check_refuses_what_portico_fixes() -> None:
    # The checks above could pass for nothing if the schemas let everything through: they do not.
    loose = deviant_completion(completion("m", Reply(ANSWER), 1), SHAPE_DEVIATIONS)

    with pytest.raises(AssertionError, match="logprobs"):
        assert_valid("CreateChatCompletionResponse", loose)
    with pytest.raises(AssertionError, match="system_fingerprint"):
        assert_valid("CreateChatCompletionResponse", {**completion("m", Reply(ANSWER), 1), "system_fingerprint": None})
