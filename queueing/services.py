"""Writes on queued jobs: accept one, claim it for a run, mark it sent, give it back, record how it ended; the sweep's.

Each is one short transaction; a run claims before it sends anything and
records only under its claim (see queueing.models for the states). The
periodic sweep (gateway.tasks_queue) finds the jobs whose hand-over was lost
and removes finished jobs past their retention.
"""

from __future__ import annotations

import os
from datetime import datetime, timedelta

from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from queueing.facade import FINAL, JobClaim, JobInfo, Outcome
from queueing.models import QueuedJob
from queueing.selectors import job_info

# A queued job not taken this long (s) after its hand-over was lost on the way (a broker, a server that stopped);
# a running one past its lease this long after its hand-over lost its worker. A poll (gateway.routers.queue) and
# the sweep (gateway.tasks_queue) judge by these same times.
STALE_AFTER = 60.0
LOST_AFTER = 2.0


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
    now = timezone.now()
    if _unfinished(tenant_id=tenant_id, now=now) >= max_depth:
        return None
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


def _unfinished(*, tenant_id: int, now: datetime) -> int:
    """The tenant's jobs that still hold a place: waiting within their deadline, or running. A job past its
    deadline that no run holds is waiting only to be recorded as expired, and no longer counts."""
    live = Q(status=QueuedJob.Status.QUEUED, deadline__gt=now) | Q(
        Q(deadline__gt=now) | Q(lease_until__gt=now), status=QueuedJob.Status.RUNNING
    )
    return QueuedJob.objects.filter(live, tenant_id=tenant_id).count()


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


def queued_job_mark_sent(*, job_id: str, token: str) -> bool:
    """Mark, committed, that the run holding the job is about to send it upstream; False if the run no longer
    holds it (and must not send). A run that dies after this is never run again (gateway.queueing.runner)."""
    marked = QueuedJob.objects.filter(pk=job_id, run_token=token, status=QueuedJob.Status.RUNNING).update(
        sent_at=timezone.now()
    )
    return marked == 1


def queued_job_release(*, job_id: str, token: str, pause: float) -> bool:
    """The run found no room within its slice: the job waits again, to be handed to the workers anew after
    `pause` seconds.

    Its upstream attempts, if it made any, all had their answer (errors it may retry): it is unsent again. Its
    hand-over is due when the pause ends, so that is when it counts as handed over: a job waiting out its pause
    is not one whose hand-over was lost.
    """
    due = timezone.now() + timedelta(seconds=pause)
    released = QueuedJob.objects.filter(pk=job_id, run_token=token, status=QueuedJob.Status.RUNNING).update(
        status=QueuedJob.Status.QUEUED, run_token="", lease_until=None, sent_at=None, enqueued_at=due
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
    now = timezone.now()
    under_lease = job.status == "running" and (job.lease_until is None or job.lease_until >= now.timestamp())
    if job.status in FINAL or under_lease:
        return False  # the poll's read already rules a hand-over out: no statement
    # The row, not the poll's read, decides: a lease renewed since then keeps the job where it is.
    rows = QueuedJob.objects.filter(_hand_over_lost(now=now, stale_after=stale_after, lost_after=lost_after))
    return rows.filter(pk=job.id, status=job.status).update(enqueued_at=now) == 1


def _hand_over_lost(*, now: datetime, stale_after: float, lost_after: float) -> Q:
    """Jobs queued and not taken `stale_after` s after their hand-over (a released job's is due when its pause
    ends), or running past their lease and not handed over for `lost_after` s."""
    stale = Q(status=QueuedJob.Status.QUEUED, enqueued_at__lt=now - timedelta(seconds=stale_after))
    lost = Q(status=QueuedJob.Status.RUNNING, lease_until__lt=now, enqueued_at__lt=now - timedelta(seconds=lost_after))
    return stale | lost


def queued_jobs_handed_over_again(
    *, stale_after: float, overdue_after: float, lost_after: float, limit: int
) -> list[str]:
    """The ids of jobs whose last hand-over to the workers looks lost, each marked as handed over now: the
    caller enqueues them. A run of one past its deadline records it as expired, as any late run does.

        queued, not taken `stale_after` s after its hand-over       a broker that lost it, a server that stopped
        queued, `overdue_after` s past its deadline and its         its last run was due by the deadline
        hand-over                                                   and never came
        running past its lease, not handed over for `lost_after` s  its worker died

    Like `queued_job_requeue_stale` (a poll's hand-over), each job is marked under a guard on `enqueued_at`,
    so a poll and the sweep, or two sweeps, hand a job over once; the claim keeps a second delivery from
    running it twice.
    """
    now = timezone.now()
    overdue_since = now - timedelta(seconds=overdue_after)
    overdue = Q(status=QueuedJob.Status.QUEUED, deadline__lt=overdue_since, enqueued_at__lt=overdue_since)
    lost = _hand_over_lost(now=now, stale_after=stale_after, lost_after=lost_after)
    found = QueuedJob.objects.filter(lost | overdue).order_by("enqueued_at")
    handed: list[str] = []
    for job_id, status, enqueued_at in found.values_list("pk", "status", "enqueued_at")[:limit]:
        if QueuedJob.objects.filter(pk=job_id, status=status, enqueued_at=enqueued_at).update(enqueued_at=now):
            handed.append(job_id)
    return handed


def queued_jobs_prune(*, finished_before: datetime, limit: int) -> int:
    """Delete up to `limit` jobs that finished before `finished_before` (their clients had the time to read
    them); how many went."""
    ids = list(
        QueuedJob.objects.filter(status__in=FINAL, finished_at__lt=finished_before)
        .order_by("finished_at")
        .values_list("pk", flat=True)[:limit]
    )
    if not ids:
        return 0
    deleted, _ = QueuedJob.objects.filter(pk__in=ids).delete()
    return deleted
