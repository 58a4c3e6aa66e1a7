"""Active health checks against fake upstreams: what each check records, and how it moves the shared breakers."""

from __future__ import annotations

import time
from collections.abc import Iterator
from urllib.parse import urlsplit

import pytest
from django.conf import settings
from django.test import override_settings
from openai import OpenAI

from billing.tests.factories import make_user, token_headers
from gateway.breakers import CLOSED, OPEN, BreakerRules, RedisBreakers
from gateway.health_probes import breakers_feed
from gateway.models import BreakerTransition
from providers.models import DeploymentProbe, DiscoveredModel, ModelListSource, ModelRoute, Provider
from providers.probes import DeploymentHealth, deployment_probes_run
from providers.tasks import deployment_health_probe
from providers.tests.factories import make_provider, make_route
from tests.fakes.anthropic_upstream import FakeAnthropic
from tests.fakes.behaviours import Reply
from tests.fakes.openai_upstream import FakeUpstream
from tests.servers import PorticoServer, Settle, free_port
from tests.tcp_proxy import TcpProxy

pytestmark = [pytest.mark.integration]

HI = [{"role": "user", "content": "hi"}]
# How long a breaker opened in Redis may take to reach a server's view of it.
PROPAGATION_BOUND = 2.0


@pytest.fixture
def probe_rows(committed_db: None) -> Iterator[None]:
    """Deletes the checks (and any model-list rows) before `committed_db` deletes the deployments they name."""
    yield
    DeploymentProbe.objects.all().delete()
    DiscoveredModel.objects.all().delete()
    ModelListSource.objects.all().delete()


def refused_url() -> str:
    return f"http://127.0.0.1:{free_port()}/v1"


def shared_state(route_id: int) -> str:
    """The breaker's state as Redis holds it, read as any process would."""
    breakers = RedisBreakers(settings.REDIS_URL, prefix=settings.PORTICO_REDIS_PREFIX, rules=BreakerRules())
    return breakers.state(route_id).state


@pytest.mark.django_db
def test_a_check_records_each_active_deployments_outcome_with_one_call_per_provider(
    upstream: FakeUpstream, tag: str
) -> None:
    upstream.script(f"listed-{tag}", Reply())
    healthy = make_provider(kind="openai", name=f"healthy-{tag}", base_url=upstream.base_url)
    first = make_route(provider=healthy, public_id=f"a-{tag}", upstream_model=f"listed-{tag}")
    second = make_route(provider=healthy, public_id=f"b-{tag}", upstream_model=f"unlisted-{tag}")
    down = make_route(provider=make_provider(kind="openai", name=f"down-{tag}", base_url=refused_url()))
    idle = make_route(provider=healthy, public_id=f"c-{tag}", active=False)

    results = {result.deployment_id: result for result in deployment_probes_run()}

    assert idle.pk not in results
    assert results[first.pk].latency == results[second.pk].latency  # one call of the provider's list for both
    assert (results[first.pk].ok, results[first.pk].reason, results[first.pk].name) == (True, "", first.name)
    assert (results[down.pk].ok, results[down.pk].reason, results[down.pk].failures_in_a_row) == (
        False,
        "unreachable",
        1,
    )
    row = DeploymentProbe.objects.get(deployment=second)
    assert row.ok
    assert row.latency_ms >= 0
    assert f"unlisted-{tag} is not among them" in row.detail
    assert DeploymentProbe.objects.get(deployment=down).detail.startswith("could not reach")


@pytest.mark.django_db
def test_a_refused_credential_is_a_failed_check_named_by_its_status(tag: str) -> None:
    anthropic = FakeAnthropic(api_key="sk-ant-right")
    anthropic.start()
    try:
        provider = make_provider(kind="anthropic", name=f"a-{tag}", base_url=anthropic.base_url, credential="sk-wrong")
        deployment = make_route(provider=provider)
        [result] = [r for r in deployment_probes_run() if r.deployment_id == deployment.pk]
    finally:
        anthropic.stop()

    assert (result.ok, result.reason) == (False, "http_401")


@pytest.mark.django_db
@override_settings(PORTICO_HEALTH_PROBE_HISTORY=3)
def test_only_the_newest_checks_are_kept_and_failures_in_a_row_are_counted(tag: str) -> None:
    down = make_route(provider=make_provider(kind="openai", name=f"down-{tag}", base_url=refused_url()))

    in_a_row = [
        next(r for r in deployment_probes_run() if r.deployment_id == down.pk).failures_in_a_row for _ in range(5)
    ]

    assert in_a_row == [1, 2, 3, 3, 3]
    assert DeploymentProbe.objects.filter(deployment=down).count() == 3


@pytest.mark.usefixtures("probe_rows")
@override_settings(PORTICO_HEALTH_PROBE_FAILURES_TO_OPEN=1)
def test_a_failing_check_opens_the_breaker_in_redis_for_every_process(
    portico: PorticoServer, client: OpenAI, upstream: FakeUpstream, settle: Settle, tag: str
) -> None:
    upstream.script(f"up-{tag}", Reply("served by the healthy deployment"))
    down = make_provider(kind="openai", name=f"down-{tag}", base_url=refused_url())
    up = make_provider(kind="openai", name=f"up-{tag}", base_url=upstream.base_url)
    failing = make_route(provider=down, public_id=f"gpt-{tag}", upstream_model=f"down-{tag}", priority=0)
    healthy = make_route(provider=up, public_id=f"gpt-{tag}", upstream_model=f"up-{tag}", priority=1)
    operator = token_headers(make_user(username=f"op-{tag}", staff=True))
    settle()

    deployment_health_probe()

    assert (shared_state(failing.pk), shared_state(healthy.pk)) == (OPEN, CLOSED)
    report = portico.http.get("/health", headers=operator).json()
    states = {row["id"]: row["breaker"]["state"] for p in report["providers"] for row in p["deployments"]}
    assert (states[failing.pk], states[healthy.pk]) == (OPEN, CLOSED)
    # The server's request path skips the failing deployment: one attempt, not a failed one first.
    deadline = time.monotonic() + PROPAGATION_BOUND
    while True:
        raw = client.chat.completions.with_raw_response.create(model=f"gpt-{tag}", messages=HI)
        if raw.headers["x-portico-attempts"] == "1":
            break
        assert time.monotonic() < deadline, "the server still tries the deployment whose breaker is open"
    assert raw.parse().choices[0].message.content == "served by the healthy deployment"
    assert ("closed", "open") in BreakerTransition.objects.filter(route_id=failing.pk).values_list(
        "from_state", "to_state"
    )


@pytest.mark.usefixtures("probe_rows")
@override_settings(PORTICO_HEALTH_PROBE_FAILURES_TO_OPEN=1, PORTICO_BREAKER_COOLDOWN=0.2)
def test_a_passing_check_after_the_cooldown_closes_the_breaker(upstream: FakeUpstream, tag: str) -> None:
    upstream.script(f"back-{tag}", Reply())
    provider = make_provider(kind="openai", name=f"flaky-{tag}", base_url=refused_url())
    deployment = make_route(provider=provider, upstream_model=f"back-{tag}")
    deployment_health_probe()
    assert shared_state(deployment.pk) == OPEN
    Provider.objects.filter(pk=provider.pk).update(base_url=upstream.base_url)

    deadline = time.monotonic() + 5.0
    while shared_state(deployment.pk) != CLOSED:
        assert time.monotonic() < deadline, "passing checks never closed the breaker"
        deployment_health_probe()

    rows = BreakerTransition.objects.filter(route_id=deployment.pk).order_by("at", "id")
    assert list(rows.values_list("from_state", "to_state")) == [
        ("closed", "open"),
        ("open", "half_open"),
        ("half_open", "closed"),
    ]


@pytest.mark.usefixtures("probe_rows")
def test_one_failed_check_counts_as_a_failure_without_opening_the_breaker(tag: str) -> None:
    deployment = make_route(provider=make_provider(kind="openai", name=f"d-{tag}", base_url=refused_url()))

    deployment_health_probe()  # PORTICO_HEALTH_PROBE_FAILURES_TO_OPEN is 2 by default

    breakers = RedisBreakers(settings.REDIS_URL, prefix=settings.PORTICO_REDIS_PREFIX, rules=BreakerRules())
    state = breakers.state(deployment.pk)
    assert state.state == CLOSED
    assert [error.reason for error in state.last_errors] == ["health check: unreachable"]


@pytest.mark.django_db
def test_a_check_reaches_the_breakers_when_redis_is_slower_than_the_request_paths_timeout(tag: str) -> None:
    """A loaded machine's Redis can take longer than the request path's quarter second; the check waits."""
    deployment = make_route(provider=make_provider(kind="openai", name=f"d-{tag}", base_url=refused_url()))
    redis_at = urlsplit(settings.REDIS_URL)
    proxy = TcpProxy(redis_at.hostname or "127.0.0.1", redis_at.port or 6379, lag=0.4)
    failed = DeploymentHealth(deployment.pk, deployment.name, ok=False, latency=0.0, reason="x", failures_in_a_row=9)
    proxy.start()
    try:
        with override_settings(REDIS_URL=redis_at._replace(netloc=f"127.0.0.1:{proxy.port}").geturl()):
            breakers_feed([failed])
    finally:
        proxy.stop()

    assert proxy.accepted > 0  # it went the slow way
    assert shared_state(deployment.pk) == OPEN


@override_settings(REDIS_URL="")
def test_without_redis_the_checks_feed_nothing_and_fail_nothing() -> None:
    breakers_feed([DeploymentHealth(1, "p/m", ok=False, latency=0.1, reason="unreachable", failures_in_a_row=9)])


def test_the_probe_ignores_deployments_of_inactive_models_and_providers(db: None, tag: str) -> None:
    off = make_provider(kind="openai", name=f"off-{tag}", base_url=refused_url(), active=False)
    make_route(provider=off)
    make_route(provider=make_provider(kind="openai", name=f"on-{tag}", base_url=refused_url()), active=True)
    ModelRoute.objects.filter(provider=off).update(active=True)

    probed = {result.name.split("/")[0] for result in deployment_probes_run()}

    assert f"off-{tag}" not in probed
    assert f"on-{tag}" in probed
