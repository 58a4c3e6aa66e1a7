"""A queued job whose worker is SIGKILLed in the middle of its upstream call: failed, never sent again.

A real `portico worker` takes the job once the request holding the tenant's one
slot has been answered, sends it to the fake upstream, which never answers it,
and is killed there. The next worker, handed the job once its claim's lease runs
out (the client's poll hands it over), finds it marked sent with no answer in
the ledger: it fails the job with a clear error and one ledger row, and does not
send it again. (A worker killed while its job still waits for capacity runs it
again: test_queue_jobs_restart.py.)
"""

from __future__ import annotations

from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import pytest

from billing.models import UsageRecord
from providers.models import ModelRoute
from queueing.models import QueuedJob
from tenants.tests.factories import make_key
from tests.celery_processes import StartWorker
from tests.fakes.behaviours import Hang, Reply, Steps
from tests.fakes.openai_upstream import FakeUpstream
from tests.integration.test_queue_jobs import WORKER_ENV, async_tenant, chat, eventually, hold_the_slot, poll
from tests.servers import PorticoServer, Settle

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("committed_db")]

SHORT_LEASE = {**WORKER_ENV, "PORTICO_QUEUE_JOB_LEASE": "2"}


@pytest.fixture
def jobs_cleaned() -> Iterator[None]:
    yield
    QueuedJob.objects.all().delete()


def test_a_job_whose_worker_is_killed_mid_call_fails_with_one_ledger_row_and_is_never_sent_again(
    portico: PorticoServer,
    start_worker: StartWorker,
    upstream: FakeUpstream,
    upstream_route: ModelRoute,
    settle: Settle,
    tag: str,
    jobs_cleaned: None,
) -> None:
    tenant = async_tenant(f"mid-call-{tag}")
    owner, teammate = make_key(tenant=tenant, name="owner"), make_key(tenant=tenant, name="teammate")
    outsider = make_key(tenant=async_tenant(f"mid-call-other-{tag}"), name="outsider")
    model = upstream_route.upstream_model
    # The request holding the slot is answered after a second; the job's call is never answered.
    upstream.script(model, Steps(Reply("holding the slot", first_byte=1.0), Hang()))
    settle()
    first = start_worker(concurrency=1, queues="interactive", **SHORT_LEASE)

    with ThreadPoolExecutor(max_workers=2) as pool:
        held = hold_the_slot(pool, upstream, portico, owner, upstream_route)
        accepted = chat(portico, owner, upstream_route, Prefer="respond-async")
        assert accepted.status_code == 202
        job_id = accepted.json()["id"]
        assert held.result().status_code == 200
        eventually(lambda: len(upstream.received(model)) == 2, what="the job's call upstream")
    assert QueuedJob.objects.get(pk=job_id).sent_at is not None  # marked before it went

    first.kill()  # while the upstream holds the job's call
    start_worker(concurrency=1, queues="interactive", **SHORT_LEASE)
    answer = poll(portico, owner, accepted.headers["location"], within=40)

    assert answer.status_code == 502, answer.text
    error = answer.json()["error"]
    assert (error["type"], error["code"], error["param"]) == ("server_error", "queue_job_interrupted", None)
    assert "stopped in the middle of its call" in error["message"]
    assert "may or may not have reached the provider" in error["message"]
    assert answer.headers["x-portico-queue-status"] == "failed"
    assert len(upstream.received(model)) == 2  # the request that held the slot, and the job once
    stored = QueuedJob.objects.get(pk=job_id)
    assert (stored.status, stored.result_status, stored.error_code) == ("failed", 502, "queue_job_interrupted")
    assert stored.attempts == 2  # the killed worker's run, and the one that failed it
    # Its one ledger row: the job's id, the error, no tokens, the time it waited before it was sent.
    row = eventually(lambda: UsageRecord.objects.filter(request_id=job_id).first(), what="the job's ledger row")
    assert UsageRecord.objects.filter(request_id=job_id).count() == 1
    assert (row.status, row.error_type, row.api_key_id) == (502, "queue_job_interrupted", owner.api_key.pk)
    assert (row.prompt_tokens, row.completion_tokens) == (0, 0)
    assert row.queue_ms == stored.queue_ms
    assert row.queue_ms >= 500  # it waited for the slot the first request held
    # The tenant's other key reads the same answer; another tenant's finds no such job.
    again = portico.http.get(accepted.headers["location"], headers={"api-key": teammate.plaintext})
    assert (again.status_code, again.json()) == (502, answer.json())
    elsewhere = portico.http.get(accepted.headers["location"], headers={"api-key": outsider.plaintext})
    assert elsewhere.status_code == 404
