"""A worker killed during a queued job's upstream call: the slots its call held are free within their lease.

The tenant may have one request in flight and its model's one deployment may
take one call at a time. A request holds both while the fake upstream answers
it slowly, so the next one, asking to respond asynchronously, becomes a job; a
real `portico worker` runs the job, whose call the fake never answers, and is
SIGKILLed mid-call. The worker renews its slots every third of
PORTICO_IN_FLIGHT_LEASE (a couple of seconds here, 30 s by default); once it is
dead, the tenant's next request is refused at first (the dead call's slots
still hold), then admitted within that lease, not after a quarter of an hour.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import pytest

from providers.models import Provider
from providers.tests.factories import make_route
from queueing.models import QueuedJob
from tenants.tests.factories import make_key
from tests.celery_processes import StartWorker
from tests.fakes.behaviours import Hang, Reply, Steps
from tests.fakes.openai_upstream import FakeUpstream
from tests.integration.test_queue_jobs import WORKER_ENV, async_tenant, chat, eventually, hold_the_slot
from tests.servers import PorticoServer, Settle

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("committed_db")]

LEASE = 2.0
# Seconds past the lease within which the slots must be free: the servers' next look, and a loaded machine.
MARGIN = 3.0


@pytest.fixture
def jobs_cleaned() -> Iterator[None]:
    yield
    QueuedJob.objects.all().delete()


def test_a_worker_killed_mid_call_frees_its_tenant_s_and_deployment_s_slots_within_the_lease(
    portico: PorticoServer,
    start_worker: StartWorker,
    upstream: FakeUpstream,
    upstream_provider: Provider,
    settle: Settle,
    tag: str,
    jobs_cleaned: None,
) -> None:
    key = make_key(tenant=async_tenant(f"lease-{tag}"), name="lease")
    route = make_route(
        provider=upstream_provider, public_id=f"leased-{tag}", upstream_model=f"leased-{tag}", max_in_flight=1
    )
    # The request holding the slots, the job's call (never answered), and the next request.
    upstream.script(route.upstream_model, Steps(Reply("held", first_byte=1.0), Hang(), Reply("after the lease")))
    settle()
    worker = start_worker(concurrency=1, queues="interactive", PORTICO_IN_FLIGHT_LEASE=str(LEASE), **WORKER_ENV)

    with ThreadPoolExecutor(max_workers=1) as pool:
        held = hold_the_slot(pool, upstream, portico, key, route)
        accepted = chat(portico, key, route, Prefer="respond-async")
        assert accepted.status_code == 202, accepted.text
        assert held.result().status_code == 200
    eventually(lambda: len(upstream.received(route.upstream_model)) == 2, what="the job's call reaching the upstream")
    time.sleep(LEASE)  # the worker renews its slots meanwhile: a lease that was never renewed would end here
    assert chat(portico, key, route).status_code == 429  # the job's call holds the tenant's one slot

    worker.kill()
    killed_at = time.monotonic()
    first = chat(portico, key, route)
    while (answer := chat(portico, key, route)).status_code != 200:
        assert answer.status_code in (429, 503), answer.text  # the tenant's slot, then the deployment's
        assert time.monotonic() - killed_at < LEASE + MARGIN, "the dead worker's slots are still held"
        time.sleep(0.1)
    freed_after = time.monotonic() - killed_at
    print(f"lease {LEASE:g} s: admitted {freed_after:.2f} s after the kill")  # noqa: T201 - docs/queueing.md quotes it

    assert first.status_code == 429  # not free at once: held for the rest of their lease
    assert answer.json()["choices"][0]["message"]["content"] == "after the lease"
    assert freed_after < LEASE + MARGIN
    assert len(upstream.received(route.upstream_model)) == 3
