"""Discovery and health checks of the gemini, cohere and replicate kinds, against their fake upstreams' model lists."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from providers.adapters import adapter_for
from providers.adapters.base import Target
from providers.credentials import encrypt_credential
from providers.discovery import discovered_model_route, discovery_run
from providers.facade import provider_info
from providers.models import DeploymentProbe, DiscoveredModel, Provider
from providers.probes import deployment_probes_run
from providers.tests.factories import make_provider, make_route
from tests.fakes.cohere_upstream import FakeCohere
from tests.fakes.cohere_upstream import Reply as CohereReply
from tests.fakes.gemini_upstream import FakeGemini
from tests.fakes.gemini_upstream import Reply as GeminiReply
from tests.fakes.replicate_upstream import FakeReplicate
from tests.fakes.replicate_upstream import Reply as ReplicateReply

pytestmark = [pytest.mark.integration, pytest.mark.django_db]

GEMINI_KEY = "AIzaSyDiscoveryKey0123456789abcdefghij"
COHERE_KEY = "co-discovery-key-0123456789abcdef"
REPLICATE_KEY = "r8_DiscoveryToken0123456789abcdefghij"


@pytest.fixture
def gemini() -> Iterator[FakeGemini]:
    fake = FakeGemini(api_key=GEMINI_KEY)
    fake.start()
    yield fake
    fake.stop()


@pytest.fixture
def cohere() -> Iterator[FakeCohere]:
    fake = FakeCohere(api_key=COHERE_KEY)
    fake.start()
    yield fake
    fake.stop()


@pytest.fixture
def replicate() -> Iterator[FakeReplicate]:
    fake = FakeReplicate(api_key=REPLICATE_KEY)
    fake.start()
    yield fake
    fake.stop()


def discovered(provider: Provider) -> dict[str, bool]:
    """Each discovered model of the provider, and whether it is gone."""
    return dict(DiscoveredModel.objects.filter(provider=provider).values_list("upstream_id", "gone"))


def test_gemini_and_cohere_models_are_discovered_with_each_kinds_own_credential(
    gemini: FakeGemini, cohere: FakeCohere
) -> None:
    gemini.script("gemini-2.5-flash", GeminiReply())
    gemini.script("text-embedding-004", GeminiReply())
    cohere.script("command-a-03-2025", CohereReply())
    google = make_provider(kind="gemini", name="google", base_url=gemini.base_url, credential=GEMINI_KEY)
    command = make_provider(kind="cohere", name="command", base_url=cohere.base_url, credential=COHERE_KEY)

    outcomes = discovery_run()

    assert {outcome.provider: outcome.ok for outcome in outcomes} == {"google": True, "command": True}
    # Gemini lists `models/…`; a discovered model is named as a route names it.
    assert discovered(google) == {"gemini-2.5-flash": False, "text-embedding-004": False}
    assert discovered(command) == {"command-a-03-2025": False}
    listing = gemini.received()[-1]
    assert (listing.method, listing.path, listing.headers["x-goog-api-key"]) == ("GET", "/v1beta/models", GEMINI_KEY)
    assert cohere.received()[-1].headers["authorization"] == f"Bearer {COHERE_KEY}"


def test_a_model_gemini_stops_listing_is_marked_gone(gemini: FakeGemini) -> None:
    gemini.script("gemini-2.0-flash", GeminiReply())
    provider = make_provider(kind="gemini", name="google", base_url=gemini.base_url, credential=GEMINI_KEY)
    discovery_run(provider_ids=[provider.pk])
    later = FakeGemini(api_key=GEMINI_KEY)
    later.start()
    try:
        later.script("gemini-2.5-pro", GeminiReply())
        Provider.objects.filter(pk=provider.pk).update(base_url=later.base_url)

        [outcome] = discovery_run(provider_ids=[provider.pk])
    finally:
        later.stop()

    assert (outcome.new, outcome.gone) == (("gemini-2.5-pro",), ("gemini-2.0-flash",))
    assert discovered(provider) == {"gemini-2.0-flash": True, "gemini-2.5-pro": False}


def test_a_routed_gemini_discovery_calls_the_model_gemini_listed(gemini: FakeGemini) -> None:
    gemini.script("gemini-2.5-flash", GeminiReply(content="Listed and served."))
    provider = make_provider(kind="gemini", name="google", base_url=gemini.base_url, credential=GEMINI_KEY)
    discovery_run(provider_ids=[provider.pk])

    deployment = discovered_model_route(discovered=DiscoveredModel.objects.get(provider=provider))
    target = Target(provider_info(provider), deployment.upstream_model, deployment.public_id)
    request = adapter_for("gemini").request("chat", target, {"messages": [{"role": "user", "content": "hi"}]})
    with httpx.Client() as client:
        answer = client.request(request.method, request.url, headers=request.headers, content=request.content)

    assert answer.status_code == 200
    assert gemini.received("gemini-2.5-flash")[-1].path == "/v1beta/models/gemini-2.5-flash:generateContent"


@pytest.mark.parametrize(("kind", "status"), [("gemini", "HTTP 400"), ("cohere", "HTTP 401")])
def test_a_refused_key_fails_discovery_and_keeps_what_was_found(
    gemini: FakeGemini, cohere: FakeCohere, kind: str, status: str
) -> None:
    gemini.script("kept-model", GeminiReply())
    cohere.script("kept-model", CohereReply())
    base_url, right = (gemini.base_url, GEMINI_KEY) if kind == "gemini" else (cohere.base_url, COHERE_KEY)
    provider = make_provider(kind=kind, name=kind, base_url=base_url, credential=right)
    discovery_run(provider_ids=[provider.pk])
    wrong = f"{right[:-6]}WRONG0"
    Provider.objects.filter(pk=provider.pk).update(credential_encrypted=encrypt_credential(wrong))

    [outcome] = discovery_run(provider_ids=[provider.pk])

    assert not outcome.ok
    assert outcome.summary.startswith(status)
    assert wrong[:12] not in outcome.summary
    assert discovered(provider) == {"kept-model": False}


def test_replicate_is_not_discovered_its_list_is_all_of_replicates_public_models(replicate: FakeReplicate) -> None:
    replicate.script("meta/meta-llama-3-8b-instruct", ReplicateReply())
    make_provider(kind="replicate", name="replicate", base_url=replicate.base_url, credential=REPLICATE_KEY)

    assert discovery_run() == []
    assert replicate.log == []


def test_a_check_of_each_new_kind_reads_its_list_with_its_credential(
    gemini: FakeGemini, cohere: FakeCohere, replicate: FakeReplicate
) -> None:
    gemini.script("gemini-2.5-flash", GeminiReply())
    cohere.script("command-a-03-2025", CohereReply())
    replicate.script("meta/meta-llama-3-8b-instruct", ReplicateReply())
    google = make_provider(kind="gemini", name="google", base_url=gemini.base_url, credential=GEMINI_KEY)
    command = make_provider(kind="cohere", name="command", base_url=cohere.base_url, credential=COHERE_KEY)
    predictions = make_provider(kind="replicate", name="rpl", base_url=replicate.base_url, credential=REPLICATE_KEY)
    # A route may name a Gemini model `models/…`, as Gemini lists it.
    prefixed = make_route(provider=google, public_id="flash", upstream_model="models/gemini-2.5-flash")
    unlisted = make_route(provider=command, public_id="command-r", upstream_model="command-r-08-2024")
    version = make_route(provider=predictions, public_id="granite", upstream_model="ibm-granite/granite:0a1b2c3d")

    results = {result.deployment_id: result for result in deployment_probes_run()}

    assert [results[d.pk].ok for d in (prefixed, unlisted, version)] == [True, True, True]
    details = {d.public_id: DeploymentProbe.objects.get(deployment=d).detail for d in (prefixed, unlisted, version)}
    assert details == {
        "flash": "OK: 1 model(s)",
        "command-r": "OK: 1 model(s); command-r-08-2024 is not among them",
        # Replicate's list is one page of everyone's public models: a model missing from it says nothing.
        "granite": "OK: 1 model(s)",
    }
    assert gemini.received()[-1].headers["x-goog-api-key"] == GEMINI_KEY
    assert cohere.received()[-1].path == "/v1/models?endpoint=chat&page_size=1000"
    assert [(r.method, r.path, r.headers["authorization"]) for r in replicate.log] == [
        ("GET", "/v1/models", f"Bearer {REPLICATE_KEY}")
    ]


@pytest.mark.parametrize(("kind", "reason"), [("gemini", "http_400"), ("cohere", "http_401")])
def test_a_refused_key_is_a_failed_check_named_by_its_status(
    gemini: FakeGemini, cohere: FakeCohere, kind: str, reason: str
) -> None:
    base_url = gemini.base_url if kind == "gemini" else cohere.base_url
    wrong = "refused-key-0123456789abcdef"
    deployment = make_route(provider=make_provider(kind=kind, name=kind, base_url=base_url, credential=wrong))

    [result] = deployment_probes_run()

    assert (result.deployment_id, result.ok) == (deployment.pk, False)
    assert (result.reason, result.failures_in_a_row) == (reason, 1)
    detail = DeploymentProbe.objects.get(deployment=deployment).detail
    assert detail.startswith(reason.replace("http_", "HTTP "))
    assert wrong[:12] not in detail
