"""GET /health: operators (a staff session or a staff user's token) see each provider, deployment and model;
nobody else does."""

from __future__ import annotations

from typing import Any

import pytest
from django.test import Client

from billing.tests.factories import make_user, token_headers
from gateway.health_probes import breakers_feed
from providers.models import DeploymentProbe
from providers.probes import DeploymentHealth, deployment_probes_run
from providers.tests.factories import make_provider, make_route
from tenants.tests.factories import make_key
from tests.fakes.behaviours import Reply
from tests.fakes.openai_upstream import FakeUpstream
from tests.servers import PorticoServer, free_port

pytestmark = [pytest.mark.integration]

OPENAI_ERROR_FIELDS = {"message", "type", "param", "code"}


def error_of(answer: Any) -> dict[str, Any]:
    assert answer.headers["content-type"].startswith("application/json")
    body = answer.json()
    assert set(body) == {"error"}
    assert set(body["error"]) == OPENAI_ERROR_FIELDS
    return body["error"]


@pytest.mark.usefixtures("committed_db")
def test_only_a_staff_users_token_reads_the_health_of_a_running_server(portico: PorticoServer, tag: str) -> None:
    staff = token_headers(make_user(username=f"op-{tag}", staff=True))
    tenant_admin = token_headers(make_user(username=f"ta-{tag}"))
    tenant_key = {"Authorization": f"Bearer {make_key().plaintext}"}

    anonymous = portico.http.get("/health")
    with_key = portico.http.get("/health", headers=tenant_key)
    not_staff = portico.http.get("/health", headers=tenant_admin)
    operator = portico.http.get("/health", headers=staff)

    assert (anonymous.status_code, error_of(anonymous)["code"]) == (401, "unauthenticated")
    assert anonymous.headers["www-authenticate"] == "Token"
    assert (with_key.status_code, error_of(with_key)["code"]) == (401, "unauthenticated")
    assert (not_staff.status_code, error_of(not_staff)["code"]) == (403, "permission_denied")
    assert operator.status_code == 200
    assert set(operator.json()) == {"status", "redis_unreachable", "providers", "models"}
    refused = portico.http.post("/health", headers=staff)
    assert (refused.status_code, error_of(refused)["code"]) == (405, "method_not_allowed")


@pytest.mark.django_db
def test_a_staff_session_reads_it_and_another_session_does_not() -> None:
    staff, other = Client(), Client()
    staff.force_login(make_user(username="operator", staff=True))
    other.force_login(make_user(username="someone"))

    assert staff.get("/health").status_code == 200
    answer = other.get("/health")
    assert (answer.status_code, answer.json()["error"]["code"]) == (403, "permission_denied")


@pytest.mark.django_db
def test_it_reports_each_deployments_breaker_and_latest_check_and_each_models_health(
    upstream: FakeUpstream, tag: str
) -> None:
    upstream.script(f"up-{tag}", Reply())
    up = make_provider(kind="openai", name=f"up-{tag}", base_url=upstream.base_url)
    down = make_provider(kind="openai", name=f"down-{tag}", base_url=f"http://127.0.0.1:{free_port()}/v1")
    healthy = make_route(provider=up, public_id=f"gpt-{tag}", upstream_model=f"up-{tag}")
    failing = make_route(provider=down, public_id=f"gpt-{tag}", upstream_model=f"down-{tag}", priority=1)
    alone = make_route(provider=down, public_id=f"solo-{tag}", upstream_model=f"down-{tag}")
    unchecked = make_route(provider=up, public_id=f"new-{tag}", active=False)
    deployment_probes_run()
    breakers_feed([DeploymentHealth(failing.pk, failing.name, ok=False, latency=0.0, reason="x", failures_in_a_row=9)])
    operator = Client()
    operator.force_login(make_user(username="operator", staff=True))

    report = operator.get("/health").json()

    deployments = {row["id"]: row for provider in report["providers"] for row in provider["deployments"]}
    models = {model["id"]: model for model in report["models"]}
    providers = {provider["name"]: provider for provider in report["providers"]}
    assert deployments[healthy.pk]["healthy"] is True
    assert deployments[healthy.pk]["probe"]["ok"] is True
    assert deployments[healthy.pk]["probe"]["latency_ms"] == DeploymentProbe.objects.get(deployment=healthy).latency_ms
    assert deployments[failing.pk]["breaker"]["state"] == "open"
    assert "health checks failed in a row" in deployments[failing.pk]["breaker"]["reason"]
    assert deployments[failing.pk]["healthy"] is False
    assert (deployments[alone.pk]["probe"]["ok"], deployments[alone.pk]["probe"]["reason"]) == (False, "unreachable")
    assert deployments[alone.pk]["breaker"]["state"] == "closed"
    assert (deployments[unchecked.pk]["active"], deployments[unchecked.pk]["probe"]) == (False, None)
    assert models[f"gpt-{tag}"]["healthy"] is True  # one healthy deployment is enough
    assert sorted(models[f"gpt-{tag}"]["deployments"]) == sorted([healthy.pk, failing.pk])
    assert models[f"solo-{tag}"]["healthy"] is False
    assert (providers[f"up-{tag}"]["healthy"], providers[f"down-{tag}"]["healthy"]) == (True, False)
    assert report["status"] == "degraded"
    assert report["redis_unreachable"] is False
