"""A queued job found running after its worker died: what the ledger holds decides (gateway.queueing.runner).

With no ledger row, the job's mark decides: sent upstream, it fails as interrupted
(gateway/tests/test_queue_runner_interrupted.py, tests/integration/test_queue_jobs_interrupted.py);
never sent, it is served again (tests/integration/test_queue_jobs_restart.py).
"""

from __future__ import annotations

import pytest
from asgiref.sync import sync_to_async
from django.db import connections
from django.utils import timezone

from billing.models import UsageRecord
from gateway.queueing.runner import INTERRUPTED, run_job
from queueing.models import QueuedJob
from queueing.services import queued_job_claim, queued_job_create
from tenants.tests.factories import IssuedKey

pytestmark = pytest.mark.django_db(transaction=True)


def _running_job_of_a_dead_worker(key: IssuedKey, *, answered: bool) -> str:
    try:
        return _make_running_job(key, answered=answered)
    finally:
        connections.close_all()


def _make_running_job(key: IssuedKey, *, answered: bool) -> str:
    job = queued_job_create(
        tenant_id=key.api_key.tenant_id,
        api_key_id=key.api_key.pk,
        key_prefix=key.api_key.prefix,
        operation="chat",
        path="/v1/chat/completions",
        model="gpt-test",
        body='{"model": "gpt-test", "messages": [{"role": "user", "content": "hi"}]}',
        headers={},
        client_request_id="",
        wait_seconds=30,
        max_depth=10,
    )
    assert job is not None
    assert queued_job_claim(job_id=job.id, lease_seconds=0) is not None  # its lease ran out with its worker
    if answered:  # the dead run's call finished: its ledger row is there, under the job's id
        UsageRecord.objects.create(
            request_id=job.id, created_at=timezone.now(), tenant_id=key.api_key.tenant_id, model="gpt-test", status=200
        )
    return job.id


async def _stored(job_id: str) -> QueuedJob:
    def read() -> QueuedJob:
        try:
            return QueuedJob.objects.get(pk=job_id)
        finally:
            connections.close_all()  # a thread of its own: its connection must not outlive the test

    return await sync_to_async(read, thread_sensitive=False)()


async def test_a_job_whose_dead_run_was_answered_is_failed_and_never_sent_again(owner: IssuedKey) -> None:
    job_id = await sync_to_async(_running_job_of_a_dead_worker, thread_sensitive=False)(owner, answered=True)

    assert await run_job(job_id) is None

    job = await _stored(job_id)
    assert (job.status, job.error_code, job.result_status, job.attempts) == ("failed", INTERRUPTED, 500, 2)
    assert "worker stopped before storing the answer" in job.result_body


async def test_a_finished_job_is_left_alone_by_a_late_delivery(owner: IssuedKey) -> None:
    job_id = await sync_to_async(_running_job_of_a_dead_worker, thread_sensitive=False)(owner, answered=True)
    await run_job(job_id)

    assert await run_job(job_id) is None

    assert (await _stored(job_id)).attempts == 2
