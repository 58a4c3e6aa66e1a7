"""Embeddings through OpenAI-compatible, Azure and Ollama providers: the same vectors, as floats or as base64."""

from __future__ import annotations

import base64
import struct
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import openai
import pytest
from openai import OpenAI

from providers.models import ModelRoute
from tenants.tests.factories import IssuedKey
from tests.fakes import ollama_upstream, openai_upstream
from tests.fakes.ollama_upstream import FakeOllama
from tests.fakes.openai_upstream import FakeUpstream
from tests.integration.conftest import Personas
from tests.servers import PorticoServer, Settle

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("committed_db")]

TEXTS = ["The food was delicious and the waiter was kind.", "Portico"]


@dataclass(frozen=True)
class Embedder:
    route: ModelRoute
    vector: Callable[[str], list[float]]  # what the kind's fake answers for a text


@pytest.fixture(params=["openai", "azure", "ollama"])
def embedder(request: pytest.FixtureRequest, key: IssuedKey, settle: Settle) -> Embedder:
    kind = request.param
    fixture = "upstream_embedding_route" if kind == "openai" else f"{kind}_embedding_route"
    route = request.getfixturevalue(fixture)
    settle()
    return Embedder(route, ollama_upstream.vector if kind == "ollama" else openai_upstream.embedding)


@pytest.fixture
def route(upstream_embedding_route: ModelRoute, key: IssuedKey, settle: Settle) -> ModelRoute:
    settle()
    return upstream_embedding_route


def _unpacked(text: str) -> list[float]:
    raw = base64.b64decode(text)
    return list(struct.unpack(f"<{len(raw) // 4}f", raw))


def _embed(portico: PorticoServer, key: IssuedKey, **body: Any) -> Any:
    response = portico.http.post("/v1/embeddings", json=body, headers={"Authorization": f"Bearer {key.plaintext}"})
    assert response.status_code == 200, response.text
    return response.json()


def test_the_sdks_default_call_gets_the_vectors_as_floats(client: OpenAI, embedder: Embedder) -> None:
    # Without `encoding_format` the SDK asks for base64 and decodes it itself.
    answer = client.embeddings.create(model=embedder.route.public_id, input=TEXTS)

    assert (answer.object, answer.model) == ("list", embedder.route.public_id)
    assert [(item.object, item.index) for item in answer.data] == [("embedding", 0), ("embedding", 1)]
    assert [item.embedding for item in answer.data] == [embedder.vector(text) for text in TEXTS]
    assert answer.usage.prompt_tokens == answer.usage.total_tokens > 0


def test_base64_is_packed_float32_and_float_is_a_list(
    portico: PorticoServer, key: IssuedKey, embedder: Embedder
) -> None:
    packed = _embed(portico, key, model=embedder.route.public_id, input=TEXTS, encoding_format="base64")
    floats = _embed(portico, key, model=embedder.route.public_id, input=TEXTS[0], encoding_format="float")

    assert all(isinstance(item["embedding"], str) for item in packed["data"])
    assert [_unpacked(item["embedding"]) for item in packed["data"]] == [embedder.vector(text) for text in TEXTS]
    assert [item["embedding"] for item in floats["data"]] == [embedder.vector(TEXTS[0])]
    assert packed["model"] == floats["model"] == embedder.route.public_id


@pytest.mark.parametrize(
    ("given", "items"),
    [
        pytest.param("one text", ["one text"], id="string"),
        pytest.param(TEXTS, TEXTS, id="strings"),
        pytest.param([1, 2, 3], [[1, 2, 3]], id="token-array"),
        pytest.param([[1, 2], [3, 4, 5]], [[1, 2], [3, 4, 5]], id="token-arrays"),
    ],
)
def test_every_form_of_input_passes_through(
    client: OpenAI, upstream: FakeUpstream, route: ModelRoute, given: Any, items: list[Any]
) -> None:
    answer = client.embeddings.create(model=route.public_id, input=given, encoding_format="float", user="end-user-7")

    assert [item.embedding for item in answer.data] == [openai_upstream.embedding(item) for item in items]
    [received] = upstream.received(route.upstream_model)
    assert received.path == "/v1/embeddings"
    assert received.body == {
        "model": route.upstream_model,
        "input": given,
        "user": "end-user-7",
        "encoding_format": "float",
    }


def test_dimensions_pass_through(client: OpenAI, upstream: FakeUpstream, route: ModelRoute) -> None:
    answer = client.embeddings.create(model=route.public_id, input=TEXTS[0], dimensions=8)

    assert answer.data[0].embedding == openai_upstream.embedding(TEXTS[0], 8)
    [received] = upstream.received(route.upstream_model)
    assert (received.body["dimensions"], received.body["encoding_format"]) == (8, "base64")


def test_ollama_embeds_text_only(
    client: OpenAI, ollama_upstream: FakeOllama, ollama_embedding_route: ModelRoute, settle: Settle
) -> None:
    settle()

    with pytest.raises(openai.BadRequestError) as caught:
        client.embeddings.create(model=ollama_embedding_route.public_id, input=[[1, 2, 3]])

    assert (caught.value.param, caught.value.code) == ("input", "unsupported_parameter")
    assert ollama_upstream.received(ollama_embedding_route.upstream_model) == []


def test_chat_is_refused_on_an_embeddings_only_route(
    client: OpenAI, upstream: FakeUpstream, upstream_embedding_route: ModelRoute, settle: Settle
) -> None:
    settle()

    with pytest.raises(openai.BadRequestError) as caught:
        client.chat.completions.create(
            model=upstream_embedding_route.public_id, messages=[{"role": "user", "content": "hi"}]
        )

    assert (caught.value.code, caught.value.param) == ("unsupported_capability", "model")
    assert caught.value.body["message"] == (
        f"The model `{upstream_embedding_route.public_id}` does not support chat completions."
    )
    assert upstream.received(upstream_embedding_route.upstream_model) == []


def test_embeddings_are_refused_on_a_chat_route(
    client: OpenAI, upstream: FakeUpstream, upstream_route: ModelRoute, settle: Settle
) -> None:
    settle()

    with pytest.raises(openai.BadRequestError) as caught:
        client.embeddings.create(model=upstream_route.public_id, input="hi")

    assert (caught.value.code, caught.value.param) == ("unsupported_capability", "model")
    assert caught.value.body["message"] == (f"The model `{upstream_route.public_id}` does not support embeddings.")
    assert upstream.received(upstream_route.upstream_model) == []


def test_only_the_tenant_the_model_is_restricted_to_may_call_it(
    portico: PorticoServer,
    upstream: FakeUpstream,
    upstream_embedding_route: ModelRoute,
    personas: Callable[..., Personas],
    settle: Settle,
) -> None:
    people = personas(upstream_embedding_route)
    settle()

    for member in (people.owner, people.teammate):
        with portico.client(member.plaintext) as sdk:
            answer = sdk.embeddings.create(model=upstream_embedding_route.public_id, input=TEXTS[1])
        assert answer.data[0].embedding == openai_upstream.embedding(TEXTS[1])
    with portico.client(people.outsider.plaintext) as sdk, pytest.raises(openai.NotFoundError) as caught:
        sdk.embeddings.create(model=upstream_embedding_route.public_id, input=TEXTS[1])

    assert (caught.value.code, caught.value.param) == ("model_not_found", "model")
    assert len(upstream.received(upstream_embedding_route.upstream_model)) == 2
