"""Writes on queued jobs: accept one, claim it for a run, give it back, record how it ended.

Each is one short transaction; a run claims before it sends anything and
records only under its claim (see queueing.models for the states).
"""

from __future__ import annotations

import os
from datetime import UTC, datetime, timedelta

from django.db import transaction
from django.utils import timezone

from queueing.facade import FINAL, JobClaim, JobInfo, Outcome
from queueing.models import QueuedJob
from queueing.selectors import job_info


def queued_job_create(
    *,
    tenant_id: int,
    api_key_id: int,
    key_prefix: str,
    operation: str,
    path: str,
    model: str,
    body: str,
    headers: dict[str, str],
    client_request_id: str,
    wait_seconds: float,
    max_depth: int,
) -> JobInfo | None:
    """A new job waiting up to `wait_seconds`; None if the tenant has `max_depth` jobs unfinished already.

    Concurrent creates may each find room: the depth can be passed by the requests accepted at the same moment.
    """
    unfinished = QueuedJob.objects.filter(tenant_id=tenant_id, status__in=["queued", "running"]).count()
    if unfinished >= max_depth:
        return None
    now = timezone.now()
    job = QueuedJob.objects.create(
        tenant_id=tenant_id,
        api_key_id=api_key_id,
        key_prefix=key_prefix,
        operation=operation,
        path=path,
        model=model,
        body=body,
        headers=headers,
        client_request_id=client_request_id,
        created_at=now,
        enqueued_at=now,
        deadline=now + timedelta(seconds=wait_seconds),
    )
    return job_info(job)


@transaction.atomic
def queued_job_claim(*, job_id: str, lease_seconds: float) -> JobClaim | None:
    """Take the job for a run; None if it is finished, or running under another run's lease."""
    job = QueuedJob.objects.select_for_update().filter(pk=job_id).first()
    now = timezone.now()
    if job is None or job.status in FINAL:
        return None
    if job.status == QueuedJob.Status.RUNNING and job.lease_until is not None and job.lease_until > now:
        return None
    orphaned = job.status == QueuedJob.Status.RUNNING
    job.status = QueuedJob.Status.RUNNING
    job.run_token = os.urandom(16).hex()
    job.lease_until = now + timedelta(seconds=lease_seconds)
    job.attempts += 1
    job.started_at = job.started_at or now
    job.save(update_fields=["status", "run_token", "lease_until", "attempts", "started_at"])
    return JobClaim(job=job_info(job), token=job.run_token, orphaned=orphaned)


def queued_job_renew(*, job_id: str, token: str, lease_seconds: float) -> bool:
    """Keep the run's claim for another lease; False if it is no longer the run's (taken over, or finished)."""
    lease_until = timezone.now() + timedelta(seconds=lease_seconds)
    renewed = QueuedJob.objects.filter(pk=job_id, run_token=token, status=QueuedJob.Status.RUNNING).update(
        lease_until=lease_until
    )
    return renewed == 1


def queued_job_release(*, job_id: str, token: str) -> bool:
    """The run found no room within its slice: the job waits again (to be handed to the workers anew)."""
    released = QueuedJob.objects.filter(pk=job_id, run_token=token, status=QueuedJob.Status.RUNNING).update(
        status=QueuedJob.Status.QUEUED, run_token="", lease_until=None, enqueued_at=timezone.now()
    )
    return released == 1


def queued_job_finish(*, job_id: str, token: str, outcome: Outcome) -> bool:
    """Record how the job ended, once: only the run holding it may, and only while it runs."""
    finished = QueuedJob.objects.filter(pk=job_id, run_token=token, status=QueuedJob.Status.RUNNING).update(
        status=outcome.status,
        result_status=outcome.result_status,
        result_body=outcome.result_body.decode("utf-8", errors="replace"),
        error_code=outcome.error_code[:60],
        queue_ms=outcome.queue_ms,
        finished_at=timezone.now(),
        lease_until=None,
    )
    return finished == 1


def queued_job_requeue_stale(*, job: JobInfo, stale_after: float, lost_after: float) -> bool:
    """Hand a job to the workers anew if its last hand-over looks lost; True if the caller should enqueue it.

    A queued job not taken for `stale_after` seconds (a broker that lost it, a server that stopped while it
    waited in its in-process runner), or a running one past its lease (its worker died) and not handed over
    for `lost_after` seconds. The claim keeps a second delivery from running the job twice; the guard on
    `enqueued_at` keeps concurrent readers from handing it over more than once.
    """
    now = datetime.now(UTC)
    if job.status == "queued":
        threshold = now - timedelta(seconds=stale_after)
    elif job.status == "running" and job.lease_until is not None and job.lease_until < now.timestamp():
        threshold = now - timedelta(seconds=lost_after)
    else:
        return False
    rows = QueuedJob.objects.filter(pk=job.id, status=job.status, enqueued_at__lt=threshold)
    return rows.update(enqueued_at=now) == 1
