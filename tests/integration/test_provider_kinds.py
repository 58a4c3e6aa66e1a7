"""What every provider kind must do alike, run once per kind against its fake upstream (tests/fakes/registry.py).

Who may call a model (the three personas), a capability the model lacks refused before
any upstream is called, and an upstream's error answer in OpenAI's shape. Each kind's
own behaviour (its wire format, its error mapping) stays in its own test file. Last, the
presets for OpenAI-compatible servers (tests/fakes/presets.py), each against the fake
OpenAI playing that server's quirks.
"""

from __future__ import annotations

import dataclasses
import json
from typing import Any

import openai
import pytest
from openai import OpenAI

from providers.models import ModelRoute
from providers.tests.factories import make_provider, make_route
from tests.fakes.behaviours import Reply
from tests.fakes.openai_upstream import FakeUpstream
from tests.fakes.presets import PRESETS, Preset
from tests.fakes.registry import KINDS, SCRIPTED, KindFake
from tests.integration.conftest import Personas
from tests.openai_schemas import assert_valid
from tests.servers import PorticoServer, Settle

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("committed_db")]

ASK = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Say hello"}]
ANSWER = "Hello from the kind under test."
ECHO = "Say hello"  # the mock echoes the last user message
TOOLS = [{"type": "function", "function": {"name": "get_weather", "parameters": {"type": "object", "properties": {}}}}]


def _upstream(request: pytest.FixtureRequest, fake: KindFake) -> Any:
    return None if fake.upstream_fixture is None else request.getfixturevalue(fake.upstream_fixture)


@pytest.mark.parametrize("kind", list(KINDS))
def test_only_the_tenant_the_model_is_restricted_to_may_call_it(
    request: pytest.FixtureRequest, portico: PorticoServer, personas: Any, settle: Settle, kind: str
) -> None:
    fake = KINDS[kind]
    upstream = _upstream(request, fake)
    route: ModelRoute = request.getfixturevalue(fake.route_fixture)
    people: Personas = personas(route)
    settle()
    expected = ECHO
    if fake.reply is not None:
        upstream.script(route.upstream_model, fake.reply(ANSWER))
        expected = ANSWER

    with portico.client(people.owner.plaintext) as sdk:
        whole = sdk.chat.completions.create(model=route.public_id, messages=ASK)
    with (
        portico.client(people.teammate.plaintext) as sdk,
        sdk.chat.completions.stream(model=route.public_id, messages=ASK) as stream,
    ):
        streamed = stream.get_final_completion()
    with portico.client(people.outsider.plaintext) as sdk, pytest.raises(openai.NotFoundError) as caught:
        sdk.chat.completions.create(model=route.public_id, messages=ASK)

    assert (whole.model, whole.choices[0].message.content) == (route.public_id, expected)
    assert streamed.choices[0].message.content == expected
    assert (caught.value.code, caught.value.param) == ("model_not_found", "model")
    if upstream is not None:
        assert len(upstream.received(route.upstream_model)) == 2


@pytest.mark.parametrize("kind", list(KINDS))
def test_a_capability_the_model_lacks_is_refused_before_the_upstream(
    request: pytest.FixtureRequest, portico: PorticoServer, key: Any, settle: Settle, tag: str, kind: str
) -> None:
    fake = KINDS[kind]
    upstream = _upstream(request, fake)
    route: ModelRoute = request.getfixturevalue(fake.route_fixture)
    toolless = make_route(
        provider=route.provider, public_id=f"toolless-{tag}", upstream_model=f"toolless-{tag}", supports_tools=False
    )
    settle()

    with portico.client(key.plaintext) as sdk, pytest.raises(openai.BadRequestError) as caught:
        sdk.chat.completions.create(model=toolless.public_id, messages=ASK, tools=TOOLS)  # type: ignore[arg-type]

    assert (caught.value.status_code, caught.value.code, caught.value.param) == (400, "unsupported_capability", "model")
    assert caught.value.message.endswith(f"The model `{toolless.public_id}` does not support tools.")
    if upstream is not None:
        assert upstream.received(toolless.upstream_model) == []


@pytest.mark.parametrize(
    ("status", "answered", "error_type"), [(400, 400, "invalid_request_error"), (500, 502, "api_error")]
)
@pytest.mark.parametrize("kind", SCRIPTED)
def test_an_upstream_error_reaches_the_client_in_openais_shape(
    request: pytest.FixtureRequest,
    portico: PorticoServer,
    key: Any,
    settle: Settle,
    kind: str,
    status: int,
    answered: int,
    error_type: str,
) -> None:
    fake = KINDS[kind]
    upstream = _upstream(request, fake)
    route: ModelRoute = request.getfixturevalue(fake.route_fixture)
    settle()
    assert fake.fail is not None
    upstream.script(route.upstream_model, fake.fail(status))

    with portico.client(key.plaintext) as sdk, pytest.raises(openai.APIStatusError) as caught:
        sdk.chat.completions.create(model=route.public_id, messages=ASK)

    error = caught.value.response.json()["error"]
    assert caught.value.status_code == answered
    assert set(error) >= {"message", "type", "param", "code"}
    assert error["type"] == error_type
    assert "Traceback" not in caught.value.response.text
    assert len(upstream.received(route.upstream_model)) == 1


@pytest.mark.parametrize("kind", list(KINDS))
def test_every_answer_and_chunk_of_every_kind_is_in_openais_schema(
    request: pytest.FixtureRequest, portico: PorticoServer, key: Any, settle: Settle, kind: str
) -> None:
    """The raw JSON, not what the SDK makes of it: the SDK accepts answers that miss required fields."""
    fake = KINDS[kind]
    upstream = _upstream(request, fake)
    route: ModelRoute = request.getfixturevalue(fake.route_fixture)
    settle()
    if fake.reply is not None:
        upstream.script(route.upstream_model, fake.reply(ANSWER))

    with portico.client(key.plaintext) as sdk:
        whole = sdk.chat.completions.with_raw_response.create(model=route.public_id, messages=ASK)
        with sdk.chat.completions.with_streaming_response.create(
            model=route.public_id, messages=ASK, stream=True, stream_options={"include_usage": True}
        ) as streamed:
            lines = [line for line in streamed.iter_lines() if line.startswith("data: ")]

    assert_valid("CreateChatCompletionResponse", whole.http_response.json())
    assert lines[-1] == "data: [DONE]"
    chunks = [json.loads(line.removeprefix("data: ")) for line in lines[:-1]]
    for chunk in chunks:
        assert_valid("CreateChatCompletionStreamResponse", chunk)
    assert chunks[-1]["choices"] == []
    assert chunks[-1]["usage"]["completion_tokens"] > 0


# --- OpenAI-compatible servers: the presets of docs/provider-kinds.md ---


def _preset_route(upstream: FakeUpstream, preset: Preset, tag: str) -> ModelRoute:
    slug = preset.server.lower().replace(" ", "-")
    provider = make_provider(
        kind="openai", name=f"{slug}-{tag}", base_url=upstream.base_url, credential=f"sk-{tag}", **preset.flags()
    )
    route = make_route(provider=provider, public_id=f"{slug}-model-{tag}", upstream_model=f"{slug}-upstream-{tag}")
    upstream.script(route.upstream_model, preset.quirks(Reply(ANSWER, prompt_tokens=9)))
    return route


@pytest.mark.parametrize("preset", PRESETS, ids=[preset.server for preset in PRESETS])
def test_a_preset_keeps_every_request_to_what_its_server_accepts(
    upstream: FakeUpstream, client: OpenAI, settle: Settle, tag: str, preset: Preset
) -> None:
    route = _preset_route(upstream, preset, tag)
    settle()

    chunks = list(
        client.chat.completions.create(
            model=route.public_id,
            messages=ASK,
            max_completion_tokens=50,
            stream=True,
            stream_options={"include_usage": True},
        )
    )
    legacy = client.completions.create(model=route.public_id, prompt="Say hello", max_tokens=20)

    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == ANSWER
    usage = chunks[-1].usage
    assert usage is not None
    if preset.accepts_stream_options:
        assert usage.completion_tokens == len(ANSWER.split())  # the server's own count
    else:
        assert usage.completion_tokens > 0  # Portico's count, since the server was not asked for one
    assert legacy.choices[0].text == ANSWER
    chat, completion = upstream.received(route.upstream_model)
    assert ("stream_options" in chat.body) is preset.accepts_stream_options
    assert ("max_completion_tokens" in chat.body) is preset.accepts_max_completion_tokens
    assert completion.path == ("/v1/completions" if preset.serves_completions else "/v1/chat/completions")


def test_a_server_sent_a_field_it_refuses_answers_400_so_the_flags_matter(
    upstream: FakeUpstream, client: OpenAI, settle: Settle, tag: str
) -> None:
    groq = next(preset for preset in PRESETS if preset.server == "Groq")
    route = _preset_route(upstream, dataclasses.replace(groq, accepts_stream_options=True), tag)
    upstream.script(route.upstream_model, groq.quirks(Reply(ANSWER)))  # the server as it is, the row mistaken
    settle()

    with pytest.raises(openai.BadRequestError) as caught:
        list(client.chat.completions.create(model=route.public_id, messages=ASK, stream=True))

    assert caught.value.param == "stream_options"
