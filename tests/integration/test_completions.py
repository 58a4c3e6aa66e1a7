"""Legacy completions, and what OpenAI-compatible servers declare they cannot take.

/v1/completions passes through to a server that has it, and is bridged onto
chat for one that has not (`serves_completions=False`) and for kinds with chat
only (Anthropic, Ollama): the tenant gets `text_completion` objects either way.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import openai
import pytest
from openai import OpenAI

from billing.tokens import count_text
from providers.models import ModelRoute, Provider
from providers.tests.factories import make_provider, make_route
from tenants.tests.factories import IssuedKey
from tests.fakes.anthropic_upstream import FakeAnthropic
from tests.fakes.anthropic_upstream import Reply as AnthropicReply
from tests.fakes.ollama_upstream import FakeOllama
from tests.fakes.ollama_upstream import Reply as OllamaReply
from tests.fakes.openai_upstream import FakeUpstream, Reply
from tests.integration.conftest import Personas
from tests.servers import PorticoServer, Settle

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("committed_db")]

PROMPT = "Say this is a test"
ANSWER = "This is indeed a test"
ASK = [{"role": "user", "content": PROMPT}]
ANTHROPIC_REPLY = AnthropicReply(ANSWER, input_tokens=13, stop_reason="max_tokens")
OLLAMA_REPLY = OllamaReply(ANSWER, prompt_eval_count=9)

RouteWith = Callable[..., ModelRoute]


@pytest.fixture
def route_with(upstream: FakeUpstream, upstream_credential: str, tag: str, key: IssuedKey, settle: Settle) -> RouteWith:
    """A route to the OpenAI fake through a provider of its own with the given quirks, answering ANSWER."""

    def route_with(**quirks: bool) -> ModelRoute:
        suffix = "-".join([tag, *(f"{name}-{value}" for name, value in quirks.items())])
        provider = make_provider(
            kind="openai", name=f"quirky-{suffix}", base_url=upstream.base_url, credential=upstream_credential, **quirks
        )
        route = make_route(provider=provider, public_id=f"gpt-{suffix}", upstream_model=f"fake-{suffix}")
        upstream.script(route.upstream_model, Reply(ANSWER, prompt_tokens=5))
        settle()
        return route

    return route_with


@pytest.fixture
def route(route_with: RouteWith) -> ModelRoute:
    return route_with()


def _text(chunks: list[Any]) -> str:
    return "".join(chunk.choices[0].text for chunk in chunks if chunk.choices)


def test_a_legacy_completion_passes_through_to_a_server_that_has_the_endpoint(
    client: OpenAI, upstream: FakeUpstream, route: ModelRoute
) -> None:
    completion = client.completions.create(
        model=route.public_id, prompt=PROMPT, max_tokens=7, temperature=0, suffix="!", logprobs=2, best_of=1
    )

    assert (completion.object, completion.model) == ("text_completion", route.public_id)
    assert (completion.choices[0].text, completion.choices[0].finish_reason) == (ANSWER, "stop")
    assert completion.usage is not None
    assert (completion.usage.prompt_tokens, completion.usage.completion_tokens) == (5, len(ANSWER.split()))
    [received] = upstream.received(route.upstream_model)
    assert received.path == "/v1/completions"
    assert received.body == {
        "model": route.upstream_model,
        "prompt": PROMPT,
        "max_tokens": 7,
        "temperature": 0,
        "suffix": "!",
        "logprobs": 2,
        "best_of": 1,
    }


def test_a_streamed_legacy_completion_passes_through_with_usage_only_when_asked(
    client: OpenAI, upstream: FakeUpstream, route: ModelRoute
) -> None:
    asked = list(
        client.completions.create(
            model=route.public_id, prompt=[[8241, 420, 374]], stream=True, stream_options={"include_usage": True}
        )
    )
    unasked = list(client.completions.create(model=route.public_id, prompt=PROMPT, stream=True))

    for chunks in (asked, unasked):
        assert {(chunk.object, chunk.model) for chunk in chunks} == {("text_completion", route.public_id)}
        assert _text(chunks) == ANSWER
    assert asked[-2].choices[0].finish_reason == "stop"
    assert asked[-1].choices == []
    assert asked[-1].usage is not None
    assert asked[-1].usage.total_tokens == 5 + len(ANSWER.split())
    assert unasked[-1].choices[0].finish_reason == "stop"
    assert all(chunk.usage is None for chunk in unasked)
    first, second = upstream.received(route.upstream_model)
    assert first.body["prompt"] == [[8241, 420, 374]]
    # Portico asks for usage on its own behalf too: the ledger needs it.
    assert first.body["stream_options"] == second.body["stream_options"] == {"include_usage": True}


def test_a_server_that_rejects_stream_options_never_gets_them(
    client: OpenAI, upstream: FakeUpstream, route_with: RouteWith
) -> None:
    route = route_with(accepts_stream_options=False)

    with client.chat.completions.create(
        model=route.public_id, messages=ASK, stream=True, stream_options={"include_usage": True}
    ) as stream:
        chunks = list(stream)
    legacy = list(
        client.completions.create(
            model=route.public_id, prompt=PROMPT, stream=True, stream_options={"include_usage": True}
        )
    )

    assert all("stream_options" not in received.body for received in upstream.received(route.upstream_model))
    # The server gave no usage, so the usage chunk the client asked for carries Portico's own count.
    *content, usage = chunks
    assert "".join(chunk.choices[0].delta.content or "" for chunk in content) == ANSWER
    assert content[-1].choices[0].finish_reason == "stop"
    assert all(chunk.usage is None for chunk in content)
    assert usage.choices == []
    assert usage.usage is not None
    assert usage.usage.completion_tokens == count_text(ANSWER, model=route.upstream_model)
    assert usage.usage.total_tokens == usage.usage.prompt_tokens + usage.usage.completion_tokens > 0
    *legacy_content, legacy_usage = legacy
    assert _text(legacy_content) == ANSWER
    assert legacy_content[-1].choices[0].finish_reason == "stop"
    assert (legacy_usage.object, legacy_usage.choices) == ("text_completion", [])
    assert legacy_usage.usage is not None


@pytest.mark.parametrize(
    ("accepts", "sent"),
    [(True, {"max_completion_tokens": 40}), (False, {"max_tokens": 40})],
    ids=["accepted", "renamed"],
)
def test_max_completion_tokens_is_renamed_for_a_server_that_knows_only_max_tokens(
    client: OpenAI, upstream: FakeUpstream, route_with: RouteWith, accepts: bool, sent: dict[str, int]
) -> None:
    route = route_with(accepts_max_completion_tokens=accepts)

    completion = client.chat.completions.create(model=route.public_id, messages=ASK, max_completion_tokens=40)

    assert completion.choices[0].message.content == ANSWER
    [received] = upstream.received(route.upstream_model)
    assert received.body == {"model": route.upstream_model, "messages": ASK, **sent}


def test_a_server_without_the_legacy_endpoint_is_asked_for_a_chat_completion(
    client: OpenAI, upstream: FakeUpstream, route_with: RouteWith
) -> None:
    route = route_with(serves_completions=False)

    completion = client.completions.create(model=route.public_id, prompt=PROMPT, temperature=0.5)
    chunks = list(client.completions.create(model=route.public_id, prompt=PROMPT, stream=True, max_tokens=30))

    assert (completion.object, completion.model) == ("text_completion", route.public_id)
    assert completion.id.startswith("cmpl-")
    assert (completion.choices[0].text, completion.choices[0].finish_reason) == (ANSWER, "stop")
    assert completion.usage is not None
    assert completion.usage.prompt_tokens == 5
    assert {(chunk.object, chunk.model) for chunk in chunks} == {("text_completion", route.public_id)}
    assert _text(chunks) == ANSWER
    assert chunks[-1].choices[0].finish_reason == "stop"
    whole, streamed = upstream.received(route.upstream_model)
    assert {whole.path, streamed.path} == {"/v1/chat/completions"}
    # The legacy endpoint's default cap of 16 tokens, kept so answers are as long as there.
    assert whole.body == {"model": route.upstream_model, "temperature": 0.5, "max_tokens": 16, "messages": ASK}
    assert streamed.body["messages"] == ASK
    assert streamed.body["max_tokens"] == 30


def test_an_anthropic_route_serves_legacy_completions_whole_and_streamed(
    client: OpenAI, anthropic_upstream: FakeAnthropic, anthropic_route: ModelRoute, settle: Settle
) -> None:
    settle()
    anthropic_upstream.script(anthropic_route.upstream_model, ANTHROPIC_REPLY)

    completion = client.completions.create(model=anthropic_route.public_id, prompt=PROMPT, max_tokens=5)
    chunks = list(client.completions.create(model=anthropic_route.public_id, prompt=PROMPT, stream=True))

    assert (completion.object, completion.model) == ("text_completion", anthropic_route.public_id)
    assert completion.choices[0].text == ANSWER
    assert completion.choices[0].finish_reason == "length"  # Anthropic stopped at max_tokens
    assert completion.usage is not None
    assert completion.usage.prompt_tokens == ANTHROPIC_REPLY.input_tokens
    assert {chunk.object for chunk in chunks} == {"text_completion"}
    assert _text(chunks) == ANSWER
    assert chunks[-1].choices[0].finish_reason == "length"
    whole, streamed = anthropic_upstream.received(anthropic_route.upstream_model)
    user_turn = [{"role": "user", "content": [{"type": "text", "text": PROMPT}]}]
    assert whole.body == {"model": anthropic_route.upstream_model, "max_tokens": 5, "messages": user_turn}
    assert streamed.body == {
        "model": anthropic_route.upstream_model,
        "max_tokens": 16,
        "messages": user_turn,
        "stream": True,
    }


def test_an_ollama_route_serves_legacy_completions_whole_and_streamed(
    client: OpenAI, ollama_upstream: FakeOllama, ollama_route: ModelRoute, settle: Settle
) -> None:
    settle()
    ollama_upstream.script(ollama_route.upstream_model, OLLAMA_REPLY)

    completion = client.completions.create(model=ollama_route.public_id, prompt=PROMPT)
    chunks = list(
        client.completions.create(
            model=ollama_route.public_id, prompt=PROMPT, stream=True, stream_options={"include_usage": True}
        )
    )

    assert completion.choices[0].text == ANSWER
    assert completion.usage is not None
    assert completion.usage.prompt_tokens == OLLAMA_REPLY.prompt_eval_count
    assert _text(chunks) == ANSWER
    assert chunks[-1].usage is not None
    assert chunks[-1].usage.completion_tokens == len(ANSWER.split())
    whole, streamed = ollama_upstream.received(ollama_route.upstream_model)
    assert whole.body["messages"] == streamed.body["messages"] == ASK
    assert whole.body["options"] == {"num_predict": 16}


@pytest.mark.parametrize(
    ("options", "param"),
    [
        pytest.param({"prompt": PROMPT, "echo": True}, "echo", id="echo"),
        pytest.param({"prompt": [1, 2, 3]}, "prompt", id="token-prompt"),
        pytest.param({"prompt": [PROMPT, "Say it twice"]}, "prompt", id="several-prompts"),
    ],
)
def test_what_a_chat_model_cannot_do_the_legacy_way_is_refused_by_name(
    client: OpenAI,
    anthropic_upstream: FakeAnthropic,
    anthropic_route: ModelRoute,
    settle: Settle,
    options: dict[str, Any],
    param: str,
) -> None:
    settle()

    with pytest.raises(openai.BadRequestError) as caught:
        client.completions.create(model=anthropic_route.public_id, **options)

    assert (caught.value.param, caught.value.code) == (param, "unsupported_parameter")
    assert anthropic_upstream.received(anthropic_route.upstream_model) == []


def test_only_the_tenant_the_model_is_restricted_to_may_call_it(
    portico: PorticoServer,
    upstream: FakeUpstream,
    upstream_provider: Provider,
    tag: str,
    personas: Callable[..., Personas],
    settle: Settle,
) -> None:
    route = make_route(provider=upstream_provider, public_id=f"instruct-{tag}", upstream_model=f"instruct-fake-{tag}")
    people = personas(route)
    settle()

    for member in (people.owner, people.teammate):
        with portico.client(member.plaintext) as sdk:
            assert sdk.completions.create(model=route.public_id, prompt=PROMPT).choices[0].text
    with portico.client(people.outsider.plaintext) as sdk, pytest.raises(openai.NotFoundError) as caught:
        sdk.completions.create(model=route.public_id, prompt=PROMPT, stream=True)

    assert (caught.value.code, caught.value.param) == ("model_not_found", "model")
    assert len(upstream.received(route.upstream_model)) == 2
