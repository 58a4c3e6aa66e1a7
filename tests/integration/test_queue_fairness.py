"""Fair waiting across tenants on a shared bottleneck: one deployment that takes one call at a time.

Tenant A floods (20 requests at once); tenant B, sending one request after
another, is served within a turn or two of each, while A's waits grow with its
own backlog. The "slot" is the time one call holds the deployment, measured
from A's throughput; the waits come from `x-portico-queue-time`.
"""

from __future__ import annotations

import statistics
import time
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest

from providers.models import ModelRoute, Provider
from providers.tests.factories import make_route
from tenants.services import queue_policy_set
from tenants.tests.factories import IssuedKey, make_key, make_tenant
from tests.fakes.openai_upstream import FakeUpstream, Reply
from tests.servers import PorticoServer, Settle

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("committed_db")]

FLOOD = 20
LIGHT = 3
SLOT = 0.1  # the fake's time to answer: how long each call holds the deployment's one slot


def waiting_key(slug: str) -> IssuedKey:
    tenant = make_tenant(slug=slug)
    queue_policy_set(owner=tenant, queue_mode="wait", queue_max_wait=60)
    return make_key(tenant=tenant, name=slug)


def waited(server: PorticoServer, key: IssuedKey, route: ModelRoute) -> float:
    """Seconds the request waited in line before it was served."""
    response = server.http.post(
        "/v1/chat/completions",
        headers={"Authorization": f"Bearer {key.plaintext}"},
        json={"model": route.public_id, "messages": [{"role": "user", "content": "hi"}]},
        timeout=60,
    )
    assert response.status_code == 200, response.text
    return int(response.headers.get("x-portico-queue-time", "0")) / 1000


def test_a_flooding_tenant_waits_for_its_own_backlog_and_not_another_tenant_s(
    portico: PorticoServer, upstream: FakeUpstream, upstream_provider: Provider, settle: Settle, tag: str
) -> None:
    route = make_route(
        provider=upstream_provider, public_id=f"narrow-{tag}", upstream_model=f"narrow-{tag}", max_in_flight=1
    )
    upstream.script(route.upstream_model, Reply("one at a time", first_byte=SLOT))
    flooder, light = waiting_key(f"flood-{tag}"), waiting_key(f"light-{tag}")
    settle()

    with ThreadPoolExecutor(max_workers=FLOOD) as executor:
        started = time.monotonic()
        flood = [executor.submit(waited, portico, flooder, route) for _ in range(FLOOD)]
        while len(upstream.received(route.upstream_model)) < 2:  # the flood is in line
            assert time.monotonic() - started < 10
            time.sleep(0.01)
        light_waits = [waited(portico, light, route) for _ in range(LIGHT)]
        flood_waits = [future.result() for future in flood]
        elapsed = time.monotonic() - started

    slot = elapsed / (FLOOD + LIGHT)  # what one call held the deployment, overheads included
    light_median, flood_median = statistics.median(light_waits), statistics.median(flood_waits)
    print(  # noqa: T201 - the figures the report quotes
        f"slot {slot * 1000:.0f} ms; B waits {[round(w * 1000) for w in light_waits]} ms (median "
        f"{light_median / slot:.1f} slots); A median {flood_median * 1000:.0f} ms ({flood_median / slot:.1f} slots), "
        f"A longest {max(flood_waits) / slot:.1f} slots"
    )
    assert light_median <= 2 * slot
    assert max(light_waits) <= 3 * slot
    assert flood_median >= 5 * slot  # A's own backlog: half of it waits for the other half
    assert len(upstream.received(route.upstream_model)) == FLOOD + LIGHT


def test_without_a_queue_the_same_bottleneck_refuses_at_once(
    portico: PorticoServer, upstream: FakeUpstream, upstream_provider: Provider, settle: Settle, tag: str
) -> None:
    route = make_route(
        provider=upstream_provider, public_id=f"narrow-{tag}", upstream_model=f"narrow-{tag}", max_in_flight=1
    )
    upstream.script(route.upstream_model, Reply("one at a time", first_byte=0.5))
    key = make_key(tenant=make_tenant(slug=f"plain-{tag}"), name="plain")
    settle()

    def send() -> httpx.Response:
        return portico.http.post(
            "/v1/chat/completions",
            headers={"Authorization": f"Bearer {key.plaintext}"},
            json={"model": route.public_id, "messages": [{"role": "user", "content": "hi"}]},
            timeout=10,
        )

    with ThreadPoolExecutor(max_workers=3) as executor:
        answers = [future.result() for future in [executor.submit(send) for _ in range(3)]]

    assert sorted(answer.status_code for answer in answers) == [200, 503, 503]
