"""What every provider kind must do alike, run once per kind against its fake upstream (tests/fakes/registry.py).

Who may call a model (the three personas), a capability the model lacks refused before
any upstream is called, an upstream's error answer in OpenAI's shape, and every answer
(chat, legacy completions, embeddings, Responses objects and events) valid in OpenAI's
published schemas. Each kind's own behaviour (its wire format, its error mapping) stays
in its own test file. Last, the presets for OpenAI-compatible servers
(tests/fakes/presets.py), each against the fake OpenAI playing that server's quirks, and
what such a server sends that is no answer at all.
"""

from __future__ import annotations

import base64
import dataclasses
import functools
import json
import struct
from typing import Any

import openai
import pytest
from openai import OpenAI

from providers.models import ModelRoute
from providers.tests.factories import make_provider, make_route
from tests.fakes.behaviours import Fail, Reply
from tests.fakes.openai_upstream import FakeUpstream
from tests.fakes.presets import PRESETS, Preset
from tests.fakes.registry import EMBEDDING, KINDS, SCRIPTED, KindFake
from tests.integration.conftest import Personas
from tests.openai_schemas import assert_valid, schema
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


@functools.cache
def _event_component(event_type: str) -> str:
    """The spec's component for one Responses stream event (`response.created` is ResponseCreatedEvent)."""
    for choice in schema("ResponseStreamEvent")["anyOf"]:
        name = choice["$ref"].rsplit("/", 1)[1]
        if schema(name)["properties"]["type"].get("enum") == [event_type]:
            return name
    raise AssertionError(f"OpenAI's spec has no Responses stream event {event_type!r}")


@pytest.mark.parametrize("kind", list(KINDS))
def test_every_legacy_completion_and_response_of_every_kind_is_in_openais_schema(
    request: pytest.FixtureRequest, portico: PorticoServer, key: Any, settle: Settle, kind: str
) -> None:
    """Legacy completions (bridged onto chat for kinds without them) and the Responses API, whole and streamed."""
    fake = KINDS[kind]
    upstream = _upstream(request, fake)
    route: ModelRoute = request.getfixturevalue(fake.route_fixture)
    settle()
    if fake.reply is not None:
        upstream.script(route.upstream_model, fake.reply(ANSWER))

    with portico.client(key.plaintext) as sdk:
        legacy = sdk.completions.with_raw_response.create(model=route.public_id, prompt="Say hello", max_tokens=20)
        whole = sdk.responses.with_raw_response.create(model=route.public_id, input="Say hello")
        with sdk.responses.with_streaming_response.create(model=route.public_id, input="Say hello", stream=True) as sse:
            events = [json.loads(line.removeprefix("data: ")) for line in sse.iter_lines() if line.startswith("data: ")]

    assert_valid("CreateCompletionResponse", legacy.http_response.json())
    assert_valid("Response", whole.http_response.json())
    for event in events:
        assert_valid(_event_component(event["type"]), event)
    assert [events[0]["type"], events[-1]["type"]] == ["response.created", "response.completed"]
    assert events[-1]["response"]["usage"]["output_tokens"] > 0


@pytest.mark.parametrize("kind", EMBEDDING)
def test_every_embeddings_answer_of_every_kind_that_embeds_is_in_openais_schema(
    request: pytest.FixtureRequest, portico: PorticoServer, key: Any, settle: Settle, kind: str
) -> None:
    """Floats and base64 (what the SDK asks for by default), each checked as the raw JSON; the spec types a vector
    as floats only, so a base64 one is checked as the floats it decodes to."""
    fake = KINDS[kind]
    assert fake.embedding_route_fixture is not None
    route: ModelRoute = request.getfixturevalue(fake.embedding_route_fixture)
    settle()

    with portico.client(key.plaintext) as sdk:
        floats = sdk.embeddings.with_raw_response.create(
            model=route.public_id, input=["Say hello", "Say goodbye"], encoding_format="float"
        )
        packed = sdk.embeddings.with_raw_response.create(model=route.public_id, input="Say hello")

    assert_valid("CreateEmbeddingResponse", floats.http_response.json())
    assert_valid("CreateEmbeddingResponse", _unpacked(packed.http_response.json()))
    assert len(floats.http_response.json()["data"]) == 2


def _unpacked(body: dict[str, Any]) -> dict[str, Any]:
    """An embeddings answer with its base64 vectors (little-endian float32 values) as float lists."""
    data = []
    for item in body["data"]:
        assert isinstance(item["embedding"], str)
        raw = base64.b64decode(item["embedding"], validate=True)
        data.append({**item, "embedding": list(struct.unpack(f"<{len(raw) // 4}f", raw))})
    return {**body, "data": data}


# A chunk the relay used to read as a dict (an AttributeError, a 500): JSON, but an array holding a usage report.
NOT_A_CHUNK = 'data: [{"usage":{"prompt_tokens":1}}]\n\ndata: [DONE]\n\n'
NOT_AN_ANSWER = '[{"usage":{"prompt_tokens":1}}]'


@pytest.mark.parametrize("stream", [False, True], ids=["whole", "streamed"])
@pytest.mark.parametrize("kind", ["openai", "azure"])
def test_an_openai_compatible_answer_that_is_no_answer_fails_over_to_the_next_deployment(
    request: pytest.FixtureRequest, portico: PorticoServer, key: Any, settle: Settle, kind: str, stream: bool
) -> None:
    fake = KINDS[kind]
    upstream = _upstream(request, fake)
    route: ModelRoute = request.getfixturevalue(fake.route_fixture)
    backup = make_route(
        provider=route.provider, public_id=route.public_id, upstream_model=f"{route.upstream_model}-b", priority=1
    )
    settle()
    upstream.script(route.upstream_model, Fail(200, raw=NOT_A_CHUNK if stream else NOT_AN_ANSWER))
    upstream.script(backup.upstream_model, Reply(ANSWER))

    with portico.client(key.plaintext) as sdk:
        if stream:
            chunks = list(sdk.chat.completions.create(model=route.public_id, messages=ASK, stream=True))
            text = "".join(chunk.choices[0].delta.content or "" for chunk in chunks if chunk.choices)
        else:
            text = sdk.chat.completions.create(model=route.public_id, messages=ASK).choices[0].message.content or ""

    assert text == ANSWER
    assert len(upstream.received(route.upstream_model)) == 1
    assert len(upstream.received(backup.upstream_model)) == 1


@pytest.mark.parametrize("stream", [False, True], ids=["whole", "streamed"])
def test_an_openai_compatible_answer_that_is_no_answer_is_a_502_not_a_500(
    upstream: FakeUpstream, upstream_route: ModelRoute, client: OpenAI, settle: Settle, stream: bool
) -> None:
    settle()
    upstream.script(upstream_route.upstream_model, Fail(200, raw=NOT_A_CHUNK if stream else NOT_AN_ANSWER))

    with pytest.raises(openai.APIStatusError) as caught:
        client.chat.completions.create(model=upstream_route.public_id, messages=ASK, stream=stream)

    assert caught.value.status_code == 502
    assert caught.value.response.json()["error"]["type"] == "api_error"
    assert "malformed" in caught.value.message


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
