"""Integers at their extremes, sent with the official SDK by a key with a budget, against a serving Portico.

Every integer parameter OpenAI bounds gets OpenAI's 400 naming it, never a 5xx;
an output cap above what the model can produce is refused as OpenAI refuses
it. None of it may reach the shared limiter as a number Redis cannot count: a
budgeted key that tried must leave its neighbours served by the limiter shared
through Redis, not by the process's stand-in.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import timedelta
from decimal import Decimal
from typing import Any

import openai
import pytest
from django.conf import settings
from django.utils import timezone
from openai import OpenAI
from redis import Redis

from billing.models import Budget, Price, RateLimit
from gateway.validation import INT64_MAX, INT64_MIN, MAX_OUTPUT_TOKENS
from providers.models import ModelRoute, Provider
from providers.tests.factories import make_route
from tenants.tests.factories import IssuedKey, make_key, make_tenant
from tests.conftest import SERVER_REDIS_PREFIX
from tests.fakes.openai_upstream import FakeUpstream, Reply
from tests.servers import PorticoServer, Settle

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("committed_db")]

HELLO = [{"role": "user", "content": "Count to three"}]
ROUTE_MAX_OUTPUT = 16384
# What a client can put where an integer belongs; 2**64 and below -2**63 reach Portico as floats.
EXTREMES: list[Any] = [2**64 - 1, 2**63, -(2**63) - 1, -(2**64), -1, 0, 1.5, 1e300]

Send = Callable[[OpenAI, str, dict[str, Any]], object]


def chat(client: OpenAI, model: str, fields: dict[str, Any]) -> object:
    return client.chat.completions.create(model=model, messages=HELLO, **fields)


def completion(client: OpenAI, model: str, fields: dict[str, Any]) -> object:
    return client.completions.create(model=model, prompt="Count to three", **fields)


def embedding(client: OpenAI, model: str, fields: dict[str, Any]) -> object:
    return client.embeddings.create(model=model, input="Count to three", **fields)


def image(client: OpenAI, model: str, fields: dict[str, Any]) -> object:
    return client.images.generate(model=model, prompt="a cat", **fields)


# (endpoint, parameter, value -> fields, the param OpenAI names, least, greatest)
PARAMETERS: list[tuple[Send, str, Callable[[Any], dict[str, Any]], int, int]] = [
    (chat, "n", lambda v: {"n": v}, 1, 128),
    (chat, "max_tokens", lambda v: {"max_tokens": v}, 1, ROUTE_MAX_OUTPUT),
    (chat, "max_completion_tokens", lambda v: {"max_completion_tokens": v}, 1, ROUTE_MAX_OUTPUT),
    (chat, "top_logprobs", lambda v: {"logprobs": True, "top_logprobs": v}, 0, 20),
    (chat, "seed", lambda v: {"seed": v}, INT64_MIN, INT64_MAX),
    (chat, "logit_bias", lambda v: {"logit_bias": {"50256": v}}, -100, 100),
    (completion, "n", lambda v: {"n": v}, 1, 128),
    (completion, "best_of", lambda v: {"best_of": v}, 0, 20),
    (completion, "max_tokens", lambda v: {"max_tokens": v}, 0, ROUTE_MAX_OUTPUT),
    (completion, "logprobs", lambda v: {"logprobs": v}, 0, 5),
    (completion, "seed", lambda v: {"seed": v}, INT64_MIN, INT64_MAX),
    (completion, "logit_bias", lambda v: {"logit_bias": {"50256": v}}, -100, 100),
    (embedding, "dimensions", lambda v: {"dimensions": v}, 1, INT64_MAX),
    (image, "n", lambda v: {"n": v}, 1, 10),
    (image, "output_compression", lambda v: {"output_compression": v}, 0, 100),
    (image, "partial_images", lambda v: {"partial_images": v}, 0, 3),
]
OUT_OF_RANGE = [
    pytest.param(send, param, fields(value), id=f"{send.__name__}-{param}={value!r}")
    for send, param, fields, low, high in PARAMETERS
    for value in EXTREMES
    if not isinstance(value, int) or not low <= value <= high
]


@pytest.fixture
def route(echo_route: ModelRoute) -> ModelRoute:
    """The mock's echo, priced, so every request of the budgeted key reserves a cost."""
    echo_route.model.max_output_tokens = ROUTE_MAX_OUTPUT
    echo_route.model.save()
    Price.objects.create(
        route=echo_route.model,
        effective_from=timezone.now() - timedelta(days=1),
        input_per_million=Decimal("1"),
        output_per_million=Decimal("1000"),
    )
    return echo_route


@pytest.fixture
def budgeted(key: IssuedKey, route: ModelRoute) -> IssuedKey:
    Budget.objects.create(tenant=key.api_key.tenant, period="monthly", amount=Decimal("1000"))
    return key


@pytest.fixture
def neighbour(tag: str) -> IssuedKey:
    neighbour = make_key(tenant=make_tenant(slug=f"neighbour-{tag}"), name="neighbour")
    RateLimit.objects.create(api_key=neighbour.api_key, requests_per_minute=2)
    return neighbour


@pytest.fixture
def sdk(portico: PorticoServer, budgeted: IssuedKey, settle: Settle) -> Iterator[OpenAI]:
    settle()
    with portico.client(budgeted.plaintext) as client:
        yield client


@pytest.mark.parametrize(("send", "param", "fields"), OUT_OF_RANGE)
def test_every_integer_out_of_openais_range_is_its_400_naming_the_param(
    sdk: OpenAI, route: ModelRoute, send: Send, param: str, fields: dict[str, Any]
) -> None:
    with pytest.raises(openai.BadRequestError) as caught:
        send(sdk, route.public_id, fields)

    error = caught.value.body
    assert isinstance(error, dict)
    assert (error["type"], error["param"]) == ("invalid_request_error", param)


@pytest.mark.parametrize("param", ["max_tokens", "max_completion_tokens"])
def test_an_output_cap_above_the_models_is_refused_as_openai_refuses_it(
    sdk: OpenAI, route: ModelRoute, param: str
) -> None:
    with pytest.raises(openai.BadRequestError) as caught:
        chat(sdk, route.public_id, {param: 99999})

    assert caught.value.body == {
        "message": f"{param} is too large: 99999. This model supports at most {ROUTE_MAX_OUTPUT} completion "
        "tokens, whereas you provided 99999.",
        "type": "invalid_request_error",
        "param": param,
        "code": None,
    }


def test_a_model_that_declares_no_output_cap_still_has_one(
    sdk: OpenAI, mock_provider: Provider, tag: str, settle: Settle
) -> None:
    uncapped = make_route(provider=mock_provider, public_id=f"uncapped-{tag}", upstream_model="mock-echo")
    settle()

    with pytest.raises(openai.BadRequestError) as caught:
        chat(sdk, uncapped.public_id, {"max_tokens": 2**64 - 1})
    answer = chat(sdk, uncapped.public_id, {"max_tokens": MAX_OUTPUT_TOKENS})

    assert caught.value.body["param"] == "max_tokens"
    assert answer.choices[0].message.content == "Count to three"


def test_the_largest_request_a_budgeted_key_may_make_leaves_its_neighbour_on_the_shared_limiter(
    portico: PorticoServer, sdk: OpenAI, route: ModelRoute, neighbour: IssuedKey, settle: Settle
) -> None:
    settle()
    for send, fields in ((chat, {"max_tokens": 2**64 - 1}), (completion, {"max_tokens": 2**63, "n": 128})):
        with pytest.raises(openai.BadRequestError):
            send(sdk, route.public_id, fields)
    biggest = chat(sdk, route.public_id, {"max_tokens": ROUTE_MAX_OUTPUT, "n": 128})

    with portico.client(neighbour.plaintext) as client:
        served = [chat(client, route.public_id, {}) for _ in range(2)]
        with pytest.raises(openai.RateLimitError):
            chat(client, route.public_id, {})

    assert len(biggest.choices) == 128
    assert len(served) == 2
    # Counted in Redis, where every process sees it, not in a stand-in of this process alone.
    with Redis.from_url(settings.REDIS_URL) as redis:
        assert redis.exists(f"{SERVER_REDIS_PREFIX}:rl:key:{neighbour.api_key.pk}:req")
    assert "does not answer the rate limiter" not in portico.log()


def test_a_null_prompt_is_openais_default_prompt(
    portico: PorticoServer, key: IssuedKey, upstream: FakeUpstream, upstream_route: ModelRoute, settle: Settle
) -> None:
    upstream.script(upstream_route.upstream_model, Reply("a default answer"))
    settle()

    with portico.client(key.plaintext) as client:
        answer = client.completions.create(model=upstream_route.public_id, prompt=None)

    assert answer.choices[0].text == "a default answer"
    assert upstream.received(upstream_route.upstream_model)[-1].body["prompt"] is None
