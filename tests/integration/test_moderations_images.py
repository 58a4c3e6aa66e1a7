"""/v1/moderations and /v1/images/generations: passed through to routes flagged for them, refused elsewhere."""

from __future__ import annotations

import base64
from collections.abc import Callable

import openai
import pytest
from openai import OpenAI

from providers.models import ModelRoute, Provider
from providers.tests.factories import make_route
from tenants.tests.factories import IssuedKey
from tests.fakes.openai_upstream import FAKE_PNG, Fail, FakeUpstream
from tests.integration.conftest import Personas
from tests.servers import PorticoServer, Settle

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("committed_db")]

TEXTS = ["I will kill the weeds in my garden", "Have a nice day"]
OTTER = "A cute baby sea otter"

RouteFor = Callable[..., ModelRoute]


@pytest.fixture
def route_for(upstream_provider: Provider, tag: str) -> RouteFor:
    """A route to the OpenAI fake named `name`, for the operations given (chat unless told otherwise)."""

    def route_for(name: str, **flags: bool) -> ModelRoute:
        return make_route(
            provider=upstream_provider, public_id=f"{name}-{tag}", upstream_model=f"fake-{name}-{tag}", **flags
        )

    return route_for


@pytest.fixture
def moderation_route(route_for: RouteFor, key: IssuedKey, settle: Settle) -> ModelRoute:
    route = route_for("omni-moderation", supports_chat=False, supports_moderation=True)
    settle()
    return route


@pytest.fixture
def image_route(route_for: RouteFor, key: IssuedKey, settle: Settle) -> ModelRoute:
    route = route_for("image", supports_chat=False, supports_images=True)
    settle()
    return route


def test_a_moderation_request_goes_to_the_route_it_names(
    client: OpenAI, upstream: FakeUpstream, moderation_route: ModelRoute
) -> None:
    answer = client.moderations.create(model=moderation_route.public_id, input=TEXTS)

    assert answer.model == moderation_route.public_id
    assert [result.flagged for result in answer.results] == [True, False]
    assert answer.results[0].categories.violence is True
    assert answer.results[0].category_scores.violence == 0.9375
    [received] = upstream.received(moderation_route.upstream_model)
    assert received.path == "/v1/moderations"
    assert received.body == {"model": moderation_route.upstream_model, "input": TEXTS}


def test_without_a_model_a_moderation_goes_to_the_first_route_the_key_may_use(
    portico: PorticoServer,
    upstream: FakeUpstream,
    route_for: RouteFor,
    personas: Callable[..., Personas],
    settle: Settle,
) -> None:
    # "a-…" sorts first, but the tenant may not use it.
    forbidden = route_for("a-moderation", supports_chat=False, supports_moderation=True)
    chat = route_for("chat")
    allowed = [route_for(f"{letter}-moderation", supports_chat=False, supports_moderation=True) for letter in "cb"]
    people = personas(chat, *allowed)
    settle()

    for member in (people.owner, people.teammate):
        with portico.client(member.plaintext) as sdk:
            answer = sdk.moderations.create(input=TEXTS[1])
        assert answer.model == allowed[1].public_id
        assert answer.results[0].flagged is False
    with portico.client(people.outsider.plaintext) as sdk:
        with pytest.raises(openai.NotFoundError) as not_found:
            sdk.moderations.create(model=allowed[1].public_id, input=TEXTS[1])
        with pytest.raises(openai.BadRequestError) as unnamed:
            sdk.moderations.create(input=TEXTS[1])

    assert [r.body for r in upstream.received(allowed[1].upstream_model)] == [
        {"input": TEXTS[1], "model": allowed[1].upstream_model}
    ] * 2
    assert upstream.received(forbidden.upstream_model) == []
    assert (not_found.value.code, not_found.value.param) == ("model_not_found", "model")
    assert unnamed.value.param == "model"
    assert "No model for moderations" in unnamed.value.message


@pytest.mark.parametrize("kind", ["ollama", "anthropic", "openai"])
def test_moderations_are_refused_by_a_route_that_cannot_moderate(
    request: pytest.FixtureRequest, client: OpenAI, upstream_provider: Provider, tag: str, settle: Settle, kind: str
) -> None:
    # Ollama and Anthropic have no moderation endpoint, whatever the route says; the OpenAI route is not flagged.
    provider = upstream_provider if kind == "openai" else request.getfixturevalue(f"{kind}_provider")
    route = make_route(
        provider=provider,
        public_id=f"mod-{kind}-{tag}",
        upstream_model=f"mod-{kind}-{tag}",
        supports_moderation=kind != "openai",
    )
    settle()

    with pytest.raises(openai.BadRequestError) as caught:
        client.moderations.create(model=route.public_id, input=TEXTS[0])

    assert (caught.value.code, caught.value.param) == ("unsupported_capability", "model")
    assert caught.value.body["message"] == f"The model `{route.public_id}` does not support moderations."


def test_an_image_request_passes_through(client: OpenAI, upstream: FakeUpstream, image_route: ModelRoute) -> None:
    answer = client.images.generate(
        model=image_route.public_id, prompt=OTTER, n=2, size="1024x1024", response_format="b64_json"
    )

    assert answer.data is not None
    assert [base64.b64decode(image.b64_json or "") for image in answer.data] == [FAKE_PNG + b"\0", FAKE_PNG + b"\1"]
    assert {image.revised_prompt for image in answer.data} == {OTTER}
    [received] = upstream.received(image_route.upstream_model)
    assert received.path == "/v1/images/generations"
    assert received.body == {
        "model": image_route.upstream_model,
        "prompt": OTTER,
        "n": 2,
        "size": "1024x1024",
        "response_format": "b64_json",
    }


def test_without_a_model_an_image_request_goes_to_an_image_route(
    client: OpenAI, upstream: FakeUpstream, image_route: ModelRoute
) -> None:
    answer = client.images.generate(prompt=OTTER)

    assert answer.data is not None
    assert [image.url for image in answer.data] == ["https://images.fake.invalid/0.png"]
    [received] = upstream.received(image_route.upstream_model)
    assert received.body == {"prompt": OTTER, "model": image_route.upstream_model}


def test_an_image_policy_refusal_reaches_the_client_as_openais(
    client: OpenAI, upstream: FakeUpstream, image_route: ModelRoute
) -> None:
    message = "Your request was rejected as a result of our safety system."
    upstream.script(image_route.upstream_model, Fail(400, message, code="content_policy_violation"))

    with pytest.raises(openai.BadRequestError) as caught:
        client.images.generate(model=image_route.public_id, prompt=OTTER)

    assert (caught.value.code, caught.value.body["message"]) == ("content_policy_violation", message)


def test_images_are_refused_on_a_chat_route(
    client: OpenAI, upstream: FakeUpstream, upstream_route: ModelRoute, settle: Settle
) -> None:
    settle()

    with pytest.raises(openai.BadRequestError) as caught:
        client.images.generate(model=upstream_route.public_id, prompt=OTTER)

    assert (caught.value.code, caught.value.param) == ("unsupported_capability", "model")
    assert caught.value.body["message"] == f"The model `{upstream_route.public_id}` does not support image generation."
    assert upstream.received(upstream_route.upstream_model) == []
