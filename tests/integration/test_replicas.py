"""Four Portico processes on one Redis and one Postgres, as replicas behind a load balancer run.

A key's global limit holds within 1 % whichever replicas its requests reach, and a
revoked key is refused by every replica within a second.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from django.conf import settings

from billing.models import RateLimit
from providers.models import ModelRoute
from tenants.services import api_key_revoke
from tenants.tests.factories import IssuedKey
from tests.integration.test_rate_limits import PER_MINUTE, hammer
from tests.integration.test_rate_limits import route as route  # noqa: F401 - the fixture, scripted usage
from tests.servers import PorticoServer, Settle, serving_several

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("committed_db")]

REPLICAS = 4
WITHIN = 1.0


@pytest.fixture(scope="module")
def replicas(server_env: dict[str, str], tmp_path_factory: pytest.TempPathFactory) -> Iterator[list[PorticoServer]]:
    if not settings.REDIS_URL:
        pytest.skip("replicas share limits and invalidation through Redis: REDIS_URL is needed")
    # Each replica keeps at most two connections: four of them share the machine's Postgres with the rest.
    env = {**server_env, "PORTICO_DB_POOL_SIZE": "2"}
    logs: Path = tmp_path_factory.mktemp("replicas")
    yield from serving_several(env, [logs / f"replica-{index}.log" for index in range(REPLICAS)])


def test_four_replicas_hold_one_global_limit_within_one_percent(
    replicas: list[PorticoServer],
    key: IssuedKey,
    route: ModelRoute,  # noqa: F811 - the fixture imported above
    settle: Settle,
) -> None:
    RateLimit.objects.create(api_key=key.api_key, requests_per_minute=PER_MINUTE)
    settle(*replicas)

    seen, window = hammer(tuple(replicas), key, route)

    expected = PER_MINUTE + PER_MINUTE / 60 * window  # the full bucket, then its refill over the window
    report = f"admitted {seen[200]}, expected {expected:.1f} over {window:.3f} s, refused {seen[429]}"
    assert set(seen) == {200, 429}, report
    assert seen[429] > 0, f"the clients never reached the limit: {report}"
    assert abs(seen[200] - expected) <= 0.01 * expected, report


def test_a_revoked_key_is_refused_by_all_four_replicas_within_a_second(
    replicas: list[PorticoServer], key: IssuedKey, settle: Settle
) -> None:
    settle(*replicas)
    assert [replica.status_with(key.plaintext) for replica in replicas] == [200] * REPLICAS

    revoked_at = time.monotonic()
    api_key_revoke(api_key=key.api_key)
    refused_at = [replica.wait_for_status(key.plaintext, 401, deadline=revoked_at + WITHIN) for replica in replicas]

    assert max(refused_at) - revoked_at < WITHIN
