"""Request extensions as a client uses them: provider wishes, cost, model choice, fallbacks of its own, deadline.

Personas: a tenant's key cannot reach, by pinning or by listing, a provider or a
model it may not use, and what it is told reads exactly as for one that does not exist.
"""

from __future__ import annotations

import time
from decimal import Decimal
from typing import Any

import openai
import pytest
from openai import OpenAI

from billing.models import DeploymentPrice, UsageRecord
from providers.models import ModelRoute
from tenants.tests.factories import IssuedKey, make_key, make_tenant
from tests.conftest import Deploy
from tests.fakes.behaviours import Fail, Hang
from tests.fakes.fleet import FakeFleet
from tests.servers import PorticoServer, Settle

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("committed_db")]

HI = [{"role": "user", "content": "hi"}]


def chat(client: OpenAI, model: str, **options: Any) -> tuple[str, dict[str, str]]:
    raw = client.chat.completions.with_raw_response.create(model=model, messages=HI, **options)
    return raw.parse().choices[0].message.content or "", dict(raw.headers)


def refusal(client: OpenAI, model: str, **options: Any) -> tuple[int, dict[str, Any]]:
    with pytest.raises(openai.APIStatusError) as error:
        client.chat.completions.create(model=model, messages=HI, **options)
    return error.value.status_code, error.value.response.json()


def price(route: ModelRoute, per_million: str) -> None:
    value = Decimal(per_million)
    DeploymentPrice.objects.create(deployment=route, input_per_million=value, output_per_million=value)


@pytest.fixture
def sdk(portico: PorticoServer, key: IssuedKey) -> Any:
    with portico.client(key.plaintext) as client:
        yield client


@pytest.fixture
def model(deploy: Deploy, settle: Settle, tag: str) -> str:
    deploy(f"gpt-ext-{tag}", f"ext-{tag}")
    settle()
    return f"gpt-ext-{tag}"


def test_a_provider_pin_sends_the_call_to_that_provider(sdk: OpenAI, model: str, tag: str) -> None:
    text, headers = chat(sdk, model, extra_body={"provider": f"fake-3-{tag}"})
    by_header, _ = chat(sdk, model, extra_headers={"x-portico-provider": f"fake-2-{tag}"})

    assert (text, headers["x-portico-attempts"], by_header) == ("served by fake-3", "1", "served by fake-2")


def test_an_ordered_allow_list_and_a_deny_list_are_honoured(
    sdk: OpenAI, model: str, tag: str, upstreams: FakeFleet
) -> None:
    upstreams[2].script(f"ext-{tag}", Fail(500, "broken", type="server_error"))
    wish = {"order": [f"fake-3-{tag}", f"fake-2-{tag}"], "ignore": [f"fake-1-{tag}"]}

    text, headers = chat(sdk, model, extra_body={"provider": wish})

    assert (text, headers["x-portico-attempts"]) == ("served by fake-2", "2")
    assert upstreams.served_by(f"ext-{tag}") == ["fake-3", "fake-2"]


def test_the_cost_strategy_and_max_cost_per_token_pick_what_they_should(
    sdk: OpenAI, deploy: Deploy, settle: Settle, tag: str
) -> None:
    routes = deploy(f"gpt-cost-{tag}", f"cost-{tag}", strategy="cost")
    for route, per_million in zip(routes, ["3", "1", "2"], strict=True):
        price(route, per_million)
    settle()

    cheapest, headers = chat(sdk, f"gpt-cost-{tag}")
    capped, _ = chat(sdk, f"gpt-cost-{tag}", extra_body={"provider": {"ignore": [f"fake-2-{tag}"]}})
    within, _ = chat(sdk, f"gpt-cost-{tag}", extra_body={"max_cost_per_token": 0.0000025})
    status, body = refusal(sdk, f"gpt-cost-{tag}", extra_body={"max_cost_per_token": 0.0000005})

    assert (cheapest, capped, within) == ("served by fake-2", "served by fake-3", "served by fake-2")
    assert headers["x-portico-routing"].startswith(f"strategy=cost; chose fake-2-{tag}/cost-{tag}")
    assert status == 400
    assert body["error"]["param"] == "max_cost_per_token"


def test_model_auto_picks_a_model_of_the_family_the_key_may_use(
    deploy: Deploy, settle: Settle, tag: str, portico: PorticoServer, upstreams: FakeFleet
) -> None:
    [allowed] = deploy(f"fam-b-{tag}", f"fam-b-{tag}", urls=[upstreams[1].base_url], model_family=f"fam-{tag}")
    deploy(f"fam-a-{tag}", f"fam-a-{tag}", urls=[upstreams[0].base_url], model_family=f"fam-{tag}")
    tenant = make_tenant(slug=f"fam-{tag}", allowed_model_ids=[allowed.pk])
    key = make_key(tenant=tenant, name="family")
    settle()

    with portico.client(key.plaintext) as client:
        text, _ = chat(client, "auto", extra_body={"model_family": f"fam-{tag}", "capabilities": ["chat"]})
        status, body = refusal(client, "auto", extra_body={"model_family": f"nope-{tag}"})

    assert text == "served by fake-2"  # fam-a sorts first, but the key may not use it
    assert (status, body["error"]["code"]) == (400, "model_not_found")


def test_the_request_id_is_kept_in_the_ledger(sdk: OpenAI, model: str) -> None:
    chat(sdk, model, extra_body={"request_id": "order-1234"})

    deadline = time.monotonic() + 10
    while not UsageRecord.objects.filter(client_request_id="order-1234").exists():
        assert time.monotonic() < deadline
        time.sleep(0.05)


def test_the_deadline_bounds_the_whole_chain(sdk: OpenAI, model: str, tag: str, upstreams: FakeFleet) -> None:
    for upstream in upstreams:
        upstream.script(f"ext-{tag}", Hang())
    started = time.monotonic()

    status, body = refusal(sdk, model, extra_headers={"x-portico-timeout": "1"})

    assert (status, body["error"]["code"]) == (504, "upstream_timeout")
    assert time.monotonic() - started < 5


def test_an_unreadable_extension_is_an_openai_400_naming_it(sdk: OpenAI, model: str) -> None:
    status, body = refusal(sdk, model, extra_body={"provider": {"sort": "price"}})

    assert (status, body["error"]["param"], body["error"]["code"]) == (400, "provider.sort", "unknown_parameter")


def test_a_request_id_that_would_add_a_header_line_is_refused(sdk: OpenAI, model: str) -> None:
    status, body = refusal(sdk, model, extra_body={"request_id": "order-1\r\nset-cookie: a=b"})

    assert (status, body["error"]["param"], body["error"]["code"]) == (400, "request_id", "invalid_value")


# --- personas ---------------------------------------------------------------------------------------------------


@pytest.fixture
def elsewhere(deploy: Deploy, tag: str, upstreams: FakeFleet) -> list[ModelRoute]:
    """Another tenant's model, on a provider of its own."""
    routes = deploy(f"secret-{tag}", f"secret-{tag}", urls=[upstreams[2].base_url])
    routes[0].provider.name = f"private-{tag}"
    routes[0].provider.save()
    return routes


def test_a_tenant_cannot_pin_a_provider_it_may_not_use_nor_learn_that_it_exists(
    deploy: Deploy, settle: Settle, tag: str, portico: PorticoServer, upstreams: FakeFleet, elsewhere: list[ModelRoute]
) -> None:
    [route] = deploy(f"own-{tag}", f"own-{tag}", urls=[upstreams[0].base_url])
    tenant = make_tenant(slug=f"own-{tag}", allowed_model_ids=[route.pk])
    owner, teammate = make_key(tenant=tenant, name="owner"), make_key(tenant=tenant, name="teammate")
    settle()

    answers = []
    for key in (owner, teammate):
        with portico.client(key.plaintext) as client:
            answers.append(refusal(client, f"own-{tag}", extra_body={"provider": f"private-{tag}"}))
            answers.append(refusal(client, f"own-{tag}", extra_body={"provider": f"no-such-provider-{tag}"}))

    assert answers[0][0] == 400
    assert all(answer == answers[0] for answer in answers)
    assert f"private-{tag}" not in str(answers[0][1])
    assert upstreams[2].received(f"secret-{tag}") == []


def test_a_tenant_cannot_reach_a_model_it_may_not_use_through_models_or_fallbacks(
    deploy: Deploy, settle: Settle, tag: str, portico: PorticoServer, upstreams: FakeFleet, elsewhere: list[ModelRoute]
) -> None:
    upstreams[0].script(f"own-{tag}", Fail(500, "broken", type="server_error"))
    [route] = deploy(f"own-{tag}", f"own-{tag}", urls=[upstreams[0].base_url])
    outsider = make_key(tenant=make_tenant(slug=f"out-{tag}", allowed_model_ids=[route.pk]), name="outsider")
    settle()

    with portico.client(outsider.plaintext) as client:
        forbidden = refusal(client, f"own-{tag}", extra_body={"models": [f"secret-{tag}"]})
        missing = refusal(client, f"own-{tag}", extra_body={"models": [f"no-such-model-{tag}"]})
        named = refusal(client, f"secret-{tag}")
        unknown = refusal(client, f"no-such-model-{tag}")

    assert forbidden == missing
    assert forbidden[0] == 502  # the model's own failure: the list named nothing it may use
    assert (named[0], unknown[0]) == (404, 404)
    assert named[1]["error"]["message"].replace(f"secret-{tag}", "X") == unknown[1]["error"]["message"].replace(
        f"no-such-model-{tag}", "X"
    )
    assert upstreams[2].received(f"secret-{tag}") == []
