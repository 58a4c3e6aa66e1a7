"""Two Portico processes on a three-master Redis Cluster (PORTICO_REDIS_CLUSTER=true), one Postgres.

A key's global limit holds within 1 % across them, as on a single Redis, and a
change announced through another node of the cluster reaches both within a
second.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import openai
import pytest
from django.test import override_settings

from billing.models import RateLimit
from providers.models import ModelRoute
from tenants.services import api_key_revoke
from tenants.tests.factories import IssuedKey
from tests.conftest import SERVER_REDIS_PREFIX
from tests.integration.test_rate_limits import PER_MINUTE, hammer
from tests.integration.test_rate_limits import route as route  # noqa: F401 - the fixture, scripted usage
from tests.redis_cluster import ClusterNodes, running_cluster
from tests.servers import PorticoServer, Settle, serving_several

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("committed_db")]

WITHIN = 1.0


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ClusterNodes]:
    with running_cluster(Path(tmp_path_factory.mktemp("cluster"))) as nodes:
        yield nodes


@pytest.fixture(scope="module")
def on_cluster(
    server_env: dict[str, str], cluster: ClusterNodes, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[list[PorticoServer]]:
    env = {**server_env, "REDIS_URL": cluster.url, "PORTICO_REDIS_CLUSTER": "true", "PORTICO_DB_POOL_SIZE": "2"}
    logs: Path = tmp_path_factory.mktemp("cluster-servers")
    yield from serving_several(env, [logs / f"server-{index}.log" for index in range(2)])


@pytest.fixture
def announced_on(cluster: ClusterNodes) -> Iterator[None]:
    """This process announces its changes through the cluster's last node, not the servers' seed node."""
    with override_settings(REDIS_URL=cluster.node_url(2), PORTICO_REDIS_CLUSTER=True):
        yield


def test_two_servers_on_a_cluster_hold_one_global_limit_within_one_percent(
    on_cluster: list[PorticoServer],
    key: IssuedKey,
    route: ModelRoute,  # noqa: F811 - the fixture imported above
    settle: Settle,
    cluster: ClusterNodes,
) -> None:
    RateLimit.objects.create(api_key=key.api_key, requests_per_minute=PER_MINUTE)
    settle(*on_cluster)

    seen, window = hammer(tuple(on_cluster), key, route)

    expected = PER_MINUTE + PER_MINUTE / 60 * window
    report = f"admitted {seen[200]}, expected {expected:.1f} over {window:.3f} s, refused {seen[429]}"
    assert set(seen) == {200, 429}, report
    assert seen[429] > 0, f"the clients never reached the limit: {report}"
    assert abs(seen[200] - expected) <= 0.01 * expected, report
    # Every key of a call sits under its tenant's hash tag, so one tenant's limits share a slot.
    bucket = f"{SERVER_REDIS_PREFIX}:{{tenant:{key.api_key.tenant_id}}}:rl:key:{key.api_key.pk}:req"
    client = cluster.client()
    try:
        assert client.exists(bucket) == 1, "the key's bucket is on the cluster, under its hash tag"
    finally:
        client.close()


@pytest.mark.usefixtures("announced_on")
def test_a_revocation_announced_on_another_node_reaches_both_servers_within_a_second(
    on_cluster: list[PorticoServer],
    key: IssuedKey,
    route: ModelRoute,
    settle: Settle,  # noqa: F811
) -> None:
    settle(*on_cluster)
    for server in on_cluster:
        answer = openai.OpenAI(base_url=f"{server.base_url}/v1", api_key=key.plaintext, max_retries=0).with_options(
            timeout=10
        )
        reply = answer.chat.completions.create(model=route.public_id, messages=[{"role": "user", "content": "hi"}])
        assert reply.choices

    revoked_at = time.monotonic()
    api_key_revoke(api_key=key.api_key)
    refused_at = [server.wait_for_status(key.plaintext, 401, deadline=revoked_at + WITHIN) for server in on_cluster]

    assert max(refused_at) - revoked_at < WITHIN
