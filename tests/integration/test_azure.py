"""Requests through an `azure`-kind provider: deployment URLs, api-version, api-key, and Azure's extra chunks."""

from __future__ import annotations

import io
import json

import httpx
import openai
import pytest
from openai import OpenAI

from providers.models import ModelRoute, Provider
from providers.tests.factories import make_provider, make_route
from tenants.tests.factories import IssuedKey
from tests.fakes.azure_upstream import AZURE_MODEL, Fail, FakeAzure, Reply
from tests.fakes.openai_upstream import embedding
from tests.integration.conftest import AZURE_API_VERSION
from tests.servers import PorticoServer, Settle

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("committed_db")]

ASK = [{"role": "user", "content": "Say hello"}]
ANSWER = "Hello from the Azure deployment."


@pytest.fixture
def route(azure_upstream: FakeAzure, azure_route: ModelRoute, key: IssuedKey, settle: Settle) -> ModelRoute:
    azure_upstream.script(azure_route.upstream_model, Reply(ANSWER, prompt_tokens=7))
    settle()
    return azure_route


@pytest.fixture
def versatile_route(azure_provider: Provider, tag: str, key: IssuedKey, settle: Settle) -> ModelRoute:
    """One deployment flagged for every operation Azure serves, so one route shows every URL."""
    route = make_route(
        provider=azure_provider,
        public_id=f"azure-all-{tag}",
        upstream_model=f"all-deploy-{tag}",
        supports_embeddings=True,
        supports_images=True,
        supports_transcription=True,
    )
    settle()
    return route


def _events(text: str) -> list[str]:
    return [block.removeprefix("data: ") for block in text.split("\n\n") if block]


def test_chat_goes_to_the_deployment_with_the_api_version_and_the_api_key(
    client: OpenAI, azure_upstream: FakeAzure, route: ModelRoute, key: IssuedKey, azure_credential: str
) -> None:
    completion = client.chat.completions.create(model=route.public_id, messages=ASK)

    assert completion.model == route.public_id  # not the model version Azure answered with
    assert completion.choices[0].message.content == ANSWER
    assert completion.usage is not None
    assert completion.usage.prompt_tokens == 7
    [received] = azure_upstream.received(route.upstream_model)
    assert received.path == f"/openai/deployments/{route.upstream_model}/chat/completions"
    assert received.query == {"api-version": AZURE_API_VERSION}
    assert received.headers["api-key"] == azure_credential
    assert "authorization" not in received.headers
    assert received.body == {"model": route.upstream_model, "messages": ASK}
    assert key.plaintext not in repr(received)


def test_every_operation_goes_to_its_path_under_the_deployment(
    client: OpenAI, azure_upstream: FakeAzure, versatile_route: ModelRoute, azure_credential: str
) -> None:
    model = versatile_route.public_id
    client.chat.completions.create(model=model, messages=ASK, stream=True).close()
    client.embeddings.create(model=model, input="hello")
    client.images.generate(model=model, prompt="a lighthouse at dusk")
    client.audio.transcriptions.create(model=model, file=("hello.wav", io.BytesIO(b"RIFF fake audio")))

    received = azure_upstream.received(versatile_route.upstream_model)
    base = f"/openai/deployments/{versatile_route.upstream_model}"
    assert [r.path for r in received] == [
        f"{base}/chat/completions",
        f"{base}/embeddings",
        f"{base}/images/generations",
        f"{base}/audio/transcriptions",
    ]
    assert all(r.query == {"api-version": AZURE_API_VERSION} for r in received)
    assert all(r.headers["api-key"] == azure_credential for r in received)
    assert received[-1].files[0].size == len(b"RIFF fake audio")


def test_a_provider_without_an_api_version_uses_porticos_default(
    client: OpenAI, azure_upstream: FakeAzure, azure_credential: str, tag: str, settle: Settle
) -> None:
    provider = make_provider(
        kind="azure", name=f"azure-unversioned-{tag}", base_url=azure_upstream.base_url, credential=azure_credential
    )
    route = make_route(provider=provider, public_id=f"azure-unversioned-{tag}", upstream_model=f"dep-{tag}")
    settle()

    client.chat.completions.create(model=route.public_id, messages=ASK)

    [received] = azure_upstream.received(route.upstream_model)
    assert received.query == {"api-version": "2024-10-21"}


def test_the_prompt_filter_chunk_is_not_relayed(
    client: OpenAI,
    portico: PorticoServer,
    azure_upstream: FakeAzure,
    azure_credential: str,
    key: IssuedKey,
    route: ModelRoute,
) -> None:
    # What Portico has to hide: asked directly, the deployment's stream opens with the prompt filter's verdict.
    direct = httpx.post(
        f"{azure_upstream.base_url}/openai/deployments/{route.upstream_model}/chat/completions",
        params={"api-version": AZURE_API_VERSION},
        headers={"api-key": azure_credential},
        json={"model": route.upstream_model, "messages": ASK, "stream": True},
    )
    assert json.loads(_events(direct.text)[0])["prompt_filter_results"]

    raw = portico.http.post(
        "/v1/chat/completions",
        json={"model": route.public_id, "messages": ASK, "stream": True, "stream_options": {"include_usage": True}},
        headers={"Authorization": f"Bearer {key.plaintext}"},
    )
    with client.chat.completions.create(model=route.public_id, messages=ASK, stream=True) as stream:
        chunks = list(stream)

    events = _events(raw.text)
    assert events[-1] == "[DONE]"
    payloads = [json.loads(event) for event in events[:-1]]
    assert "prompt_filter_results" not in raw.text
    assert payloads[0]["choices"][0]["delta"]["role"] == "assistant"
    assert all(payload["choices"] for payload in payloads[:-1])
    assert payloads[-1]["choices"] == []
    assert payloads[-1]["usage"]["prompt_tokens"] == 7
    assert {payload["model"] for payload in payloads} == {route.public_id}
    assert AZURE_MODEL not in raw.text
    assert chunks[0].choices[0].delta.role == "assistant"
    assert "".join(chunk.choices[0].delta.content or "" for chunk in chunks) == ANSWER
    assert chunks[-1].choices[0].finish_reason == "stop"


def test_the_embeddings_of_a_deployment_come_back_as_floats(
    client: OpenAI, azure_upstream: FakeAzure, azure_embedding_route: ModelRoute, key: IssuedKey, settle: Settle
) -> None:
    settle()

    answer = client.embeddings.create(model=azure_embedding_route.public_id, input=["first text", "second"])

    assert answer.model == azure_embedding_route.public_id
    assert [item.embedding for item in answer.data] == [embedding("first text"), embedding("second")]
    [received] = azure_upstream.received(azure_embedding_route.upstream_model)
    assert received.path == f"/openai/deployments/{azure_embedding_route.upstream_model}/embeddings"


def test_azures_content_filter_refusal_is_a_bad_request_like_openais(
    client: OpenAI, azure_upstream: FakeAzure, route: ModelRoute
) -> None:
    message = "The response was filtered due to the prompt triggering Azure OpenAI's content management policy."
    azure_upstream.script(route.upstream_model, Fail(400, message, code="content_filter", param="prompt"))

    with pytest.raises(openai.BadRequestError) as caught:
        client.chat.completions.create(model=route.public_id, messages=ASK)

    assert (caught.value.code, caught.value.param, caught.value.body["message"]) == (
        "content_filter",
        "prompt",
        message,
    )


def test_a_refused_key_is_the_gateways_problem_and_does_not_leak(
    client: OpenAI, azure_upstream: FakeAzure, tag: str, settle: Settle
) -> None:
    wrong = "ffffffffffffffffffffffffffffffff"
    provider = make_provider(
        kind="azure", name=f"azure-wrong-{tag}", base_url=azure_upstream.base_url, credential=wrong
    )
    route = make_route(provider=provider, public_id=f"azure-wrong-{tag}", upstream_model=f"wrong-dep-{tag}")
    settle()

    with pytest.raises(openai.InternalServerError) as caught:
        client.chat.completions.create(model=route.public_id, messages=ASK, stream=True)

    assert (caught.value.status_code, caught.value.code) == (502, "upstream_auth_error")
    assert wrong not in caught.value.response.text
    [received] = [
        r for r in azure_upstream.received() if r.path.startswith(f"/openai/deployments/{route.upstream_model}/")
    ]
    assert received.headers["api-key"] == wrong


def test_moderations_are_refused_on_azure_which_has_none(
    portico: PorticoServer,
    azure_upstream: FakeAzure,
    azure_provider: Provider,
    key: IssuedKey,
    tag: str,
    settle: Settle,
) -> None:
    route = make_route(
        provider=azure_provider, public_id=f"azure-mod-{tag}", upstream_model=f"mod-dep-{tag}", supports_moderation=True
    )
    settle()

    with portico.client(key.plaintext) as sdk, pytest.raises(openai.BadRequestError) as caught:
        sdk.moderations.create(model=route.public_id, input="hello")

    assert (caught.value.code, caught.value.param) == ("unsupported_capability", "model")
    assert "moderations" in caught.value.message
    assert azure_upstream.received(route.upstream_model) == []
