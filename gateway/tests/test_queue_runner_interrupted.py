"""A queued job found running after its worker died mid-call: the mark decides (gateway.queueing.runner).

The run that died had marked the job sent (`sent_at`) but left no ledger row:
the next run fails the job with 502 queue_job_interrupted and writes its one
ledger row, without serving it. The row is caught at the process's meter; the
end-to-end case, with a real worker killed, is
tests/integration/test_queue_jobs_interrupted.py.
"""

from __future__ import annotations

from datetime import timedelta

import orjson
import pytest
from asgiref.sync import sync_to_async
from django.db import connections

from billing.metering import MeterResult
from gateway.accounting import accounts
from gateway.queueing.runner import INTERRUPTED, run_job
from gateway.tests.test_queue_runner import _make_running_job, _stored
from queueing.models import QueuedJob
from queueing.services import queued_job_claim, queued_job_mark_sent, queued_job_release
from tenants.tests.factories import IssuedKey

pytestmark = pytest.mark.django_db(transaction=True)


def _sent_by_a_dead_worker(key: IssuedKey) -> str:
    try:
        job_id = _make_running_job(key, answered=False)
        token = QueuedJob.objects.get(pk=job_id).run_token
        assert queued_job_mark_sent(job_id=job_id, token=token)
        job = QueuedJob.objects.get(pk=job_id)
        QueuedJob.objects.filter(pk=job_id).update(sent_at=job.created_at + timedelta(seconds=1.5))
        return job_id
    finally:
        connections.close_all()


async def test_a_job_whose_dead_run_was_mid_call_is_failed_with_one_ledger_row(
    owner: IssuedKey, monkeypatch: pytest.MonkeyPatch
) -> None:
    rows: list[MeterResult] = []
    monkeypatch.setattr(accounts, "finish", lambda result, billing: rows.append(result))
    job_id = await sync_to_async(_sent_by_a_dead_worker, thread_sensitive=False)(owner)

    assert await run_job(job_id) is None

    job = await _stored(job_id)
    assert (job.status, job.error_code, job.result_status, job.attempts) == ("failed", INTERRUPTED, 502, 2)
    error = orjson.loads(job.result_body)["error"]
    assert (error["type"], error["code"]) == ("server_error", INTERRUPTED)
    assert "may or may not have reached the provider" in error["message"]
    assert job.queue_ms == 1500
    [row] = rows
    assert (row.ask.request_id, row.ask.key_id, row.status, row.error_type) == (
        job_id,
        owner.api_key.pk,
        502,
        INTERRUPTED,
    )
    assert (row.queue_ms, row.usage) == (1500, None)


async def test_a_late_delivery_of_a_job_failed_mid_call_writes_no_second_row(
    owner: IssuedKey, monkeypatch: pytest.MonkeyPatch
) -> None:
    rows: list[MeterResult] = []
    monkeypatch.setattr(accounts, "finish", lambda result, billing: rows.append(result))
    job_id = await sync_to_async(_sent_by_a_dead_worker, thread_sensitive=False)(owner)
    await run_job(job_id)

    assert await run_job(job_id) is None

    assert len(rows) == 1
    assert (await _stored(job_id)).attempts == 2


def test_only_the_run_holding_a_job_may_mark_it_sent_and_a_released_job_is_unsent_again(owner: IssuedKey) -> None:
    job_id = _make_running_job(owner, answered=False)
    token = QueuedJob.objects.get(pk=job_id).run_token
    assert not queued_job_mark_sent(job_id=job_id, token="another run's")
    assert QueuedJob.objects.get(pk=job_id).sent_at is None

    assert queued_job_mark_sent(job_id=job_id, token=token)
    assert QueuedJob.objects.get(pk=job_id).sent_at is not None
    # Its attempts all answered (errors) and it found no room after them: it waits again, as never sent.
    assert queued_job_release(job_id=job_id, token=token, pause=1.0)
    assert QueuedJob.objects.get(pk=job_id).sent_at is None
    claim = queued_job_claim(job_id=job_id, lease_seconds=30)
    assert claim is not None
    assert (claim.orphaned, claim.job.sent_at) == (False, None)
