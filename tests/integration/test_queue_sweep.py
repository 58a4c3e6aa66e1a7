"""The queue's sweep through real processes: `portico beat` sends it every second, a `portico worker` runs it.

Three jobs as a server that stopped (or a broker that lost them) leaves
them: one accepted and never handed to a worker, one whose deadline passed
while nothing ran it, and one finished long ago. No client polls: only the
sweep can find them. The first is run and answered, the second is recorded as
expired as a late run records it (429 `queue_expired` and its ledger row),
and the third is deleted.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta

import orjson
import pytest
from django.utils import timezone

from billing.models import UsageRecord
from providers.models import ModelRoute
from queueing.facade import Outcome
from queueing.models import QueuedJob
from queueing.services import queued_job_claim, queued_job_create, queued_job_finish
from tenants.tests.factories import IssuedKey
from tests.celery_processes import StartBeat, StartWorker
from tests.fakes.openai_upstream import FakeUpstream, Reply
from tests.integration.test_queue_jobs import WORKER_ENV, eventually

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("committed_db")]

# Beat sends only the queue's sweep, every second.
BEAT_ENV = {
    **WORKER_ENV,
    "PORTICO_QUEUE_SWEEP_INTERVAL": "1",
    "PORTICO_MODEL_LIST_CHECK_INTERVAL": "0",
    "PORTICO_DISCOVERY_INTERVAL": "0",
    "PORTICO_HEALTH_CHECK_INTERVAL": "0",
    "PORTICO_BATCH_SWEEP_INTERVAL": "0",
    "PORTICO_ROLLUP_INTERVAL": "0",
    "PORTICO_LEDGER_PARTITION_INTERVAL": "0",
    "PORTICO_LOG_LEVEL": "INFO",  # its start is seen in its log
}


@pytest.fixture
def jobs_cleaned() -> Iterator[None]:
    yield
    QueuedJob.objects.all().delete()


def kept(key: IssuedKey, route: ModelRoute, content: str, *, wait_seconds: float = 60) -> str:
    """A job as a server accepts one (a 202), but never handed to the workers."""
    body = {"model": route.public_id, "messages": [{"role": "user", "content": content}], "max_tokens": 8}
    job = queued_job_create(
        tenant_id=key.api_key.tenant_id,
        api_key_id=key.api_key.pk,
        key_prefix=key.api_key.prefix,
        operation="chat",
        path="/v1/chat/completions",
        model=route.public_id,
        body=orjson.dumps(body).decode(),
        headers={},
        client_request_id=content,
        wait_seconds=wait_seconds,
        max_depth=10,
    )
    assert job is not None
    return job.id


def moved_back(job_id: str, **seconds_ago: float) -> None:
    now = timezone.now()
    QueuedJob.objects.filter(pk=job_id).update(
        **{field: now - timedelta(seconds=ago) for field, ago in seconds_ago.items()}
    )


def test_the_sweep_runs_a_lost_job_expires_an_overdue_one_and_deletes_an_old_finished_one(
    start_worker: StartWorker,
    start_beat: StartBeat,
    key: IssuedKey,
    upstream_route: ModelRoute,
    upstream: FakeUpstream,
    jobs_cleaned: None,
) -> None:
    upstream.script(upstream_route.upstream_model, Reply("answered at last"))
    lost = kept(key, upstream_route, "lost")
    moved_back(lost, created_at=90, enqueued_at=90)
    overdue = kept(key, upstream_route, "overdue", wait_seconds=1)
    moved_back(overdue, created_at=30, enqueued_at=30, deadline=20)
    old = kept(key, upstream_route, "old")
    claim = queued_job_claim(job_id=old, lease_seconds=30)
    assert claim is not None
    assert queued_job_finish(job_id=old, token=claim.token, outcome=Outcome("completed", 200, b"{}"))
    moved_back(old, finished_at=3 * 86400)
    recent = kept(key, upstream_route, "recent")  # handed over a moment ago: the sweep leaves it to its run

    start_worker(queues="interactive,default", PORTICO_QUEUE_JOB_RETENTION_DAYS="2", **WORKER_ENV)
    start_beat(**BEAT_ENV)

    done = eventually(lambda: QueuedJob.objects.filter(pk=lost, status="completed").first(), what="the lost job run")
    assert done.result_status == 200
    assert orjson.loads(done.result_body)["choices"][0]["message"]["content"] == "answered at last"
    gone = eventually(lambda: QueuedJob.objects.filter(pk=overdue, status="expired").first(), what="the expiry")
    assert gone.result_status == 429
    assert orjson.loads(gone.result_body)["error"]["code"] == "queue_expired"
    eventually(lambda: not QueuedJob.objects.filter(pk=old).exists(), what="the old job deleted")

    assert [request.messages[-1]["content"] for request in upstream.received(upstream_route.upstream_model)] == ["lost"]
    ran = eventually(lambda: UsageRecord.objects.filter(request_id=lost).first(), what="the run's ledger row")
    assert ran.status == 200
    assert ran.queue_ms is not None
    assert ran.queue_ms >= 90_000  # its wait counts from its acceptance
    expiry = eventually(lambda: UsageRecord.objects.filter(request_id=overdue).first(), what="the expiry's row")
    assert (expiry.status, expiry.error_type) == (429, "queue_expired")
    assert QueuedJob.objects.get(pk=recent).status == "queued"
