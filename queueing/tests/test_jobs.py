"""Queued jobs in the database: accepted up to the tenant's depth, claimed once, recorded only under the claim,
handed over again when a hand-over looks lost; and the console's per-tenant summary."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from django.contrib.auth.models import User
from django.test import Client
from django.utils import timezone

from billing.models import UsageRecord
from queueing.facade import Outcome
from queueing.models import QueuedJob
from queueing.selectors import queue_summary, queued_job_get
from queueing.services import (
    queued_job_claim,
    queued_job_create,
    queued_job_finish,
    queued_job_release,
    queued_job_renew,
    queued_job_requeue_stale,
)
from tenants.models import Tenant
from tenants.tests.factories import IssuedKey

pytestmark = pytest.mark.django_db

DONE = Outcome("completed", 200, b'{"object": "chat.completion"}', queue_ms=1200)


def _fields(key: IssuedKey, **fields: Any) -> dict[str, Any]:
    return {
        "tenant_id": key.api_key.tenant_id,
        "api_key_id": key.api_key.pk,
        "key_prefix": key.api_key.prefix,
        "operation": "chat",
        "path": "/v1/chat/completions",
        "model": "gpt-test",
        "body": "{}",
        "headers": {},
        "client_request_id": "",
        "wait_seconds": 30,
        "max_depth": 10,
        **fields,
    }


def accept(key: IssuedKey, **fields: Any) -> str:
    job = queued_job_create(**_fields(key, **fields))
    assert job is not None
    return job.id


def test_a_job_is_accepted_until_its_tenant_has_as_many_unfinished_as_its_depth(owner: IssuedKey) -> None:
    accept(owner, max_depth=2)
    accept(owner, max_depth=2)

    assert queued_job_create(**_fields(owner, max_depth=2)) is None


def test_a_job_is_claimed_by_one_run_at_a_time_and_recorded_only_under_its_claim(owner: IssuedKey) -> None:
    job_id = accept(owner)

    claim = queued_job_claim(job_id=job_id, lease_seconds=30)
    assert claim is not None
    assert (claim.orphaned, claim.job.status, claim.job.attempts) == (False, "running", 1)
    assert queued_job_claim(job_id=job_id, lease_seconds=30) is None  # held under a live lease
    assert not queued_job_finish(job_id=job_id, token="not-the-claim", outcome=DONE)

    assert queued_job_finish(job_id=job_id, token=claim.token, outcome=DONE)
    job = QueuedJob.objects.get(pk=job_id)
    assert (job.status, job.result_status, job.queue_ms) == ("completed", 200, 1200)
    assert job.result_body == '{"object": "chat.completion"}'
    assert queued_job_claim(job_id=job_id, lease_seconds=30) is None  # finished: never run again
    assert not queued_job_finish(job_id=job_id, token=claim.token, outcome=DONE)


def test_a_run_that_found_no_room_gives_the_job_back_and_the_next_run_takes_it_afresh(owner: IssuedKey) -> None:
    job_id = accept(owner)
    first = queued_job_claim(job_id=job_id, lease_seconds=30)
    assert first is not None

    assert queued_job_release(job_id=job_id, token=first.token, pause=1.0)

    second = queued_job_claim(job_id=job_id, lease_seconds=30)
    assert second is not None
    assert (second.orphaned, second.job.attempts) == (False, 2)
    assert not queued_job_renew(job_id=job_id, token=first.token, lease_seconds=30)
    assert queued_job_renew(job_id=job_id, token=second.token, lease_seconds=30)


def test_a_job_whose_run_stopped_renewing_its_claim_is_taken_over_as_orphaned(owner: IssuedKey) -> None:
    job_id = accept(owner)
    dead = queued_job_claim(job_id=job_id, lease_seconds=0)  # its worker died: the lease is already over
    assert dead is not None

    taken = queued_job_claim(job_id=job_id, lease_seconds=30)

    assert taken is not None
    assert taken.orphaned
    assert not queued_job_finish(job_id=job_id, token=dead.token, outcome=DONE)  # the dead run cannot record


def test_a_hand_over_that_looks_lost_is_made_again_once(owner: IssuedKey) -> None:
    job_id = accept(owner)
    QueuedJob.objects.filter(pk=job_id).update(enqueued_at=timezone.now() - timedelta(seconds=120))
    job = queued_job_get(tenant_id=owner.api_key.tenant_id, job_id=job_id)
    assert job is not None

    assert queued_job_requeue_stale(job=job, stale_after=60, lost_after=2)
    assert not queued_job_requeue_stale(job=job, stale_after=60, lost_after=2)  # another reader was first


def test_a_job_waiting_a_short_while_or_running_under_its_lease_is_left_alone(owner: IssuedKey) -> None:
    job_id = accept(owner)
    job = queued_job_get(tenant_id=owner.api_key.tenant_id, job_id=job_id)
    assert job is not None
    assert not queued_job_requeue_stale(job=job, stale_after=60, lost_after=2)

    queued_job_claim(job_id=job_id, lease_seconds=30)
    QueuedJob.objects.filter(pk=job_id).update(enqueued_at=timezone.now() - timedelta(seconds=120))
    running = queued_job_get(tenant_id=owner.api_key.tenant_id, job_id=job_id)
    assert running is not None
    assert not queued_job_requeue_stale(job=running, stale_after=60, lost_after=2)


def test_a_lease_renewed_since_the_poll_read_the_job_keeps_it_with_its_run(owner: IssuedKey) -> None:
    job_id = accept(owner)
    claim = queued_job_claim(job_id=job_id, lease_seconds=30)
    assert claim is not None
    long_ago = timezone.now() - timedelta(seconds=120)
    QueuedJob.objects.filter(pk=job_id).update(enqueued_at=long_ago, lease_until=long_ago)
    read = queued_job_get(tenant_id=owner.api_key.tenant_id, job_id=job_id)
    assert read is not None

    assert queued_job_renew(job_id=job_id, token=claim.token, lease_seconds=30)
    assert not queued_job_requeue_stale(job=read, stale_after=60, lost_after=2)
    assert QueuedJob.objects.get(pk=job_id).enqueued_at == long_ago

    QueuedJob.objects.filter(pk=job_id).update(lease_until=long_ago)  # its run died after all
    assert queued_job_requeue_stale(job=read, stale_after=60, lost_after=2)


def test_a_job_is_found_only_within_its_tenant(owner: IssuedKey, teammate: IssuedKey, outsider: IssuedKey) -> None:
    job_id = accept(owner)

    assert queued_job_get(tenant_id=teammate.api_key.tenant_id, job_id=job_id) is not None
    assert queued_job_get(tenant_id=outsider.api_key.tenant_id, job_id=job_id) is None


def _waited(key: IssuedKey, request_id: str, queue_ms: int | None, *, ago: timedelta = timedelta(0)) -> None:
    UsageRecord.objects.create(
        request_id=request_id,
        created_at=timezone.now() - ago,
        tenant_id=key.api_key.tenant_id,
        api_key=key.api_key,
        model="gpt-test",
        status=200,
        queue_ms=queue_ms,
    )


def test_the_summary_counts_jobs_now_and_the_median_wait_of_the_last_hour(
    owner: IssuedKey, outsider: IssuedKey
) -> None:
    accept(owner)
    accept(owner)
    claimed = queued_job_claim(job_id=accept(owner), lease_seconds=30)
    assert claimed is not None
    for n, wait in enumerate([100, 300, 2000]):
        _waited(owner, f"req_w{n}", wait)
    _waited(owner, "req_old", 90_000, ago=timedelta(hours=2))  # outside the hour
    _waited(owner, "req_none", None)  # did not wait
    _waited(outsider, "req_o", 50)

    now = timezone.now()
    rows = {row.tenant_id: row for row in queue_summary(since=now - timedelta(hours=1), now=now)}

    mine = rows[owner.api_key.tenant_id]
    assert (mine.queued, mine.running, mine.median_wait_ms, mine.waited) == (2, 1, 300, 3)
    theirs = rows[outsider.api_key.tenant_id]
    assert (theirs.queued, theirs.running, theirs.median_wait_ms, theirs.waited) == (0, 0, 50, 1)


def test_the_console_lists_jobs_with_the_summary_and_lets_nobody_change_them(owner: IssuedKey, client: Client) -> None:
    job_id = accept(owner)
    _waited(owner, "req_w", 250)
    client.force_login(User.objects.create_superuser("ops", "ops@example.com", "pw"))

    listed = client.get("/admin/queueing/queuedjob/?status__exact=queued")
    page = listed.content.decode()

    assert listed.status_code == 200
    assert job_id in page
    tenant = Tenant.objects.get(pk=owner.api_key.tenant_id)
    assert tenant.name in page
    assert "median wait" in page
    assert ">250<" in page
    assert client.get("/admin/queueing/queuedjob/add/").status_code == 403
    assert client.post(f"/admin/queueing/queuedjob/{job_id}/delete/").status_code == 403
