"""Discovery against fake upstreams' own model lists, and routing a discovered model in one step."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from providers.discovery import ModelTaken, discovered_model_route, discovery_run
from providers.models import DiscoveredModel, ModelRoute, Provider
from providers.selectors import discovered_models_with_routing
from providers.tests.factories import make_provider, make_route
from tests.fakes.anthropic_upstream import FakeAnthropic
from tests.fakes.anthropic_upstream import Reply as AnthropicReply
from tests.fakes.behaviours import Reply
from tests.fakes.ollama_upstream import FakeOllama
from tests.fakes.ollama_upstream import Reply as OllamaReply
from tests.fakes.openai_upstream import FakeUpstream
from tests.servers import free_port

pytestmark = [pytest.mark.integration, pytest.mark.django_db]

ANTHROPIC_KEY = "sk-ant-discovery-0123456789"


@pytest.fixture(scope="module")
def openai_like() -> Iterator[FakeUpstream]:
    fake = FakeUpstream()
    fake.start()
    yield fake
    fake.stop()


@pytest.fixture(scope="module")
def ollama() -> Iterator[FakeOllama]:
    fake = FakeOllama()
    fake.start()
    yield fake
    fake.stop()


@pytest.fixture(scope="module")
def anthropic() -> Iterator[FakeAnthropic]:
    fake = FakeAnthropic(api_key=ANTHROPIC_KEY)
    fake.start()
    yield fake
    fake.stop()


def discovered(provider: Provider) -> dict[str, bool]:
    """Each discovered model of the provider, and whether it is gone."""
    return dict(DiscoveredModel.objects.filter(provider=provider).values_list("upstream_id", "gone"))


def test_it_discovers_what_each_kind_of_upstream_lists(
    openai_like: FakeUpstream, ollama: FakeOllama, anthropic: FakeAnthropic
) -> None:
    openai_like.reset()
    openai_like.script("vllm-qwen", Reply())
    ollama.script("llama3.1:8b", OllamaReply())
    anthropic.script("claude-opus-4", AnthropicReply())
    vllm = make_provider(kind="openai", name="vllm", base_url=openai_like.base_url)
    local = make_provider(kind="ollama", name="ollama", base_url=ollama.base_url)
    claude = make_provider(kind="anthropic", name="anthropic", base_url=anthropic.base_url, credential=ANTHROPIC_KEY)

    outcomes = discovery_run()

    assert {outcome.provider: outcome.ok for outcome in outcomes} == {"vllm": True, "ollama": True, "anthropic": True}
    assert discovered(vllm) == {"vllm-qwen": False}
    assert discovered(local) == {"llama3.1:8b": False}
    assert discovered(claude) == {"claude-opus-4": False}
    assert anthropic.received()[-1].headers["x-api-key"] == ANTHROPIC_KEY
    assert "anthropic-version" in anthropic.received()[-1].headers


def test_a_model_no_longer_listed_is_marked_gone_and_comes_back_when_listed_again(openai_like: FakeUpstream) -> None:
    provider = make_provider(kind="openai", name="vllm", base_url=openai_like.base_url)
    openai_like.reset()
    openai_like.script("model-a", Reply())
    openai_like.script("model-b", Reply())
    [first] = discovery_run(provider_ids=[provider.pk])
    openai_like.reset()
    openai_like.script("model-a", Reply())
    [second] = discovery_run(provider_ids=[provider.pk])
    assert discovered(provider) == {"model-a": False, "model-b": True}
    openai_like.script("model-b", Reply())
    [third] = discovery_run(provider_ids=[provider.pk])

    assert (first.new, second.gone, third.new, third.gone) == (("model-a", "model-b"), ("model-b",), (), ())
    assert discovered(provider) == {"model-a": False, "model-b": False}


def test_a_provider_that_cannot_be_read_keeps_what_was_discovered(openai_like: FakeUpstream) -> None:
    provider = make_provider(kind="openai", name="vllm", base_url=openai_like.base_url)
    openai_like.reset()
    openai_like.script("model-a", Reply())
    discovery_run(provider_ids=[provider.pk])
    Provider.objects.filter(pk=provider.pk).update(base_url=f"http://127.0.0.1:{free_port()}/v1")

    [outcome] = discovery_run(provider_ids=[provider.pk])

    assert not outcome.ok
    assert outcome.summary.startswith("could not reach")
    assert discovered(provider) == {"model-a": False}


def test_azure_and_the_mock_are_not_discovered(openai_like: FakeUpstream) -> None:
    make_provider(kind="mock", name="mock")
    make_provider(kind="azure", name="azure", base_url="http://127.0.0.1:9", api_version="2024-06-01")

    assert discovery_run() == []


def test_unrouted_models_are_those_no_deployment_of_their_provider_serves(openai_like: FakeUpstream) -> None:
    provider = make_provider(kind="openai", name="vllm", base_url=openai_like.base_url)
    elsewhere = make_provider(kind="openai", name="other", base_url=openai_like.base_url)
    openai_like.reset()
    for name in ("served", "waiting", "served-elsewhere"):
        openai_like.script(name, Reply())
    discovery_run(provider_ids=[provider.pk])
    make_route(provider=provider, public_id="our-served", upstream_model="served")
    make_route(provider=elsewhere, public_id="our-elsewhere", upstream_model="served-elsewhere")

    listed = discovered_models_with_routing().filter(provider=provider, routed=False)
    unrouted = sorted(model.upstream_id for model in listed)

    assert unrouted == ["served-elsewhere", "waiting"]


def test_routing_a_discovered_model_makes_a_public_model_and_deployment_without_price(
    openai_like: FakeUpstream,
) -> None:
    provider = make_provider(kind="openai", name="vllm", base_url=openai_like.base_url)
    openai_like.reset()
    openai_like.script("qwen-72b", Reply())
    openai_like.script("taken", Reply())
    discovery_run(provider_ids=[provider.pk])
    make_route(provider=make_provider(kind="mock"), public_id="taken")

    deployment = discovered_model_route(discovered=DiscoveredModel.objects.get(upstream_id="qwen-72b"))

    assert (deployment.public_id, deployment.provider, deployment.upstream_model) == ("qwen-72b", provider, "qwen-72b")
    assert deployment.model.owned_by == "portico"  # never the provider's name: tenants may not learn it
    assert not deployment.model.prices.exists()
    assert not deployment.costs.exists()
    with pytest.raises(ModelTaken, match="already serves"):
        discovered_model_route(discovered=DiscoveredModel.objects.get(upstream_id="qwen-72b"))
    with pytest.raises(ModelTaken, match="a public model taken exists"):
        discovered_model_route(discovered=DiscoveredModel.objects.get(upstream_id="taken"))
    assert ModelRoute.objects.filter(upstream_model="taken").count() == 1
