"""The queue's sweep in the database: which jobs it hands over again, which it deletes, and the depth that jobs past
their deadline no longer take. (The sweep with a real worker: tests/integration/test_queue_sweep.py.)"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
import time_machine
from django.utils import timezone

from queueing.facade import Outcome
from queueing.models import QueuedJob
from queueing.selectors import queued_job_get
from queueing.services import (
    queued_job_claim,
    queued_job_create,
    queued_job_finish,
    queued_job_release,
    queued_job_requeue_stale,
    queued_jobs_handed_over_again,
    queued_jobs_prune,
)
from tenants.tests.factories import IssuedKey

pytestmark = pytest.mark.django_db

DONE = Outcome("completed", 200, b"{}")
SWEEP: dict[str, Any] = {"stale_after": 60.0, "overdue_after": 5.0, "lost_after": 2.0, "limit": 100}


def _fields(key: IssuedKey, *, max_depth: int = 10, wait_seconds: float = 30) -> dict[str, Any]:
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
        "wait_seconds": wait_seconds,
        "max_depth": max_depth,
    }


def accept(key: IssuedKey, *, max_depth: int = 10, wait_seconds: float = 30) -> str:
    job = queued_job_create(**_fields(key, max_depth=max_depth, wait_seconds=wait_seconds))
    assert job is not None
    return job.id


def shift(job_id: str, **seconds_ago: float) -> None:
    """Move the job's timestamps into the past (a field of None is left alone)."""
    now = timezone.now()
    QueuedJob.objects.filter(pk=job_id).update(
        **{field: now - timedelta(seconds=ago) for field, ago in seconds_ago.items()}
    )


def fields(job_id: str, *names: str) -> tuple[Any, ...]:
    return tuple(QueuedJob.objects.values_list(*names).get(pk=job_id))


# --- the depth --------------------------------------------------------------------------------------------------


def test_a_job_past_its_deadline_that_no_run_holds_no_longer_counts_against_the_depth(owner: IssuedKey) -> None:
    waiting = accept(owner, max_depth=2)
    accept(owner, max_depth=2)
    assert queued_job_create(**_fields(owner, max_depth=2)) is None

    shift(waiting, deadline=1)

    accept(owner, max_depth=2)  # the expired one's place is free


def test_a_running_job_counts_while_its_run_holds_it_even_past_its_deadline(owner: IssuedKey) -> None:
    running = accept(owner, max_depth=1)
    assert queued_job_claim(job_id=running, lease_seconds=30) is not None
    shift(running, deadline=1)
    assert queued_job_create(**_fields(owner, max_depth=1)) is None  # its call is in flight

    shift(running, deadline=1, lease_until=1)  # and then its worker died

    accept(owner, max_depth=1)


# --- lost hand-overs ----------------------------------------------------------------------------------------------


def test_the_sweep_hands_over_again_the_jobs_whose_hand_over_looks_lost_once_each(owner: IssuedKey) -> None:
    stale = accept(owner)
    shift(stale, enqueued_at=120)
    overdue = accept(owner, wait_seconds=1)
    shift(overdue, deadline=10, enqueued_at=11)
    orphaned = accept(owner)
    assert queued_job_claim(job_id=orphaned, lease_seconds=30) is not None
    shift(orphaned, lease_until=5, enqueued_at=40)

    handed = queued_jobs_handed_over_again(**SWEEP)

    assert sorted(handed) == sorted([stale, overdue, orphaned])
    assert queued_jobs_handed_over_again(**SWEEP) == []  # each marked as handed over now
    for job_id in handed:
        (enqueued_at,) = fields(job_id, "enqueued_at")
        assert timezone.now() - enqueued_at < timedelta(seconds=5)


def test_the_sweep_leaves_jobs_that_are_waiting_running_or_finished_alone(owner: IssuedKey) -> None:
    accept(owner)  # just handed over
    just_overdue = accept(owner, wait_seconds=1)
    shift(just_overdue, deadline=1, enqueued_at=1)  # its last run may still be on its way
    running = accept(owner)
    assert queued_job_claim(job_id=running, lease_seconds=30) is not None
    shift(running, enqueued_at=600)  # under its lease, however long ago it was handed over
    finished = accept(owner)
    claim = queued_job_claim(job_id=finished, lease_seconds=30)
    assert claim is not None
    assert queued_job_finish(job_id=finished, token=claim.token, outcome=DONE)
    shift(finished, enqueued_at=600, deadline=600)

    assert queued_jobs_handed_over_again(**SWEEP) == []


def test_the_sweep_hands_over_at_most_its_limit_oldest_first(owner: IssuedKey) -> None:
    jobs = [accept(owner) for _ in range(3)]
    for n, job_id in enumerate(jobs):
        shift(job_id, enqueued_at=300 - n)

    assert queued_jobs_handed_over_again(**{**SWEEP, "limit": 2}) == jobs[:2]
    assert queued_jobs_handed_over_again(**SWEEP) == jobs[2:]


def test_a_job_released_for_a_long_pause_is_handed_over_again_only_a_while_after_its_pause(owner: IssuedKey) -> None:
    job_id = accept(owner, wait_seconds=600)
    claim = queued_job_claim(job_id=job_id, lease_seconds=30)
    assert claim is not None
    released_at = timezone.now()
    assert queued_job_release(job_id=job_id, token=claim.token, pause=120)

    with time_machine.travel(released_at + timedelta(seconds=100), tick=False):  # its pause runs on
        assert queued_jobs_handed_over_again(**SWEEP) == []
        read = queued_job_get(tenant_id=owner.api_key.tenant_id, job_id=job_id)
        assert read is not None
        assert not queued_job_requeue_stale(job=read, stale_after=60, lost_after=2)

    with time_machine.travel(released_at + timedelta(seconds=170), tick=False):  # taken in time after it
        assert queued_jobs_handed_over_again(**SWEEP) == []

    with time_machine.travel(released_at + timedelta(seconds=190), tick=False):  # never taken after it
        assert queued_jobs_handed_over_again(**SWEEP) == [job_id]


# --- retention ----------------------------------------------------------------------------------------------------


def test_finished_jobs_older_than_the_retention_are_deleted_and_the_rest_kept(owner: IssuedKey) -> None:
    old, recent, waiting = accept(owner), accept(owner), accept(owner)
    for job_id in (old, recent):
        claim = queued_job_claim(job_id=job_id, lease_seconds=30)
        assert claim is not None
        assert queued_job_finish(job_id=job_id, token=claim.token, outcome=DONE)
    shift(old, finished_at=8 * 86400)
    shift(waiting, created_at=30 * 86400, enqueued_at=30 * 86400)

    deleted = queued_jobs_prune(finished_before=timezone.now() - timedelta(days=7), limit=100)

    assert deleted == 1
    assert set(QueuedJob.objects.values_list("pk", flat=True)) == {recent, waiting}
