"""The queue's background jobs: run a request accepted as a job (gateway.queueing.runner), by job id, and sweep.

    queue_job_run     serve the job once; no room within the run's slice: queued again after a pause
    queue_jobs_sweep  every PORTICO_QUEUE_SWEEP_INTERVAL s: hand over again the jobs whose hand-over was lost,
                      delete finished jobs older than PORTICO_QUEUE_JOB_RETENTION_DAYS

A run may come twice or late (acks_late, redelivery, a hand-over when a client
polls or by the sweep): each run claims the job before touching it, and a
second one finds it held or done. A job past its deadline that no run took is
recorded as expired by the run the sweep hands it to, as any late run records
it: 429 `queue_expired`, one ledger row with its queue time. The run's time
limits are its own, longer than any call: a run is bounded by its slice in line
and the call's timeout, and its claim is renewed while it runs.
"""

from __future__ import annotations

import logging
from datetime import timedelta

from celery import shared_task
from django.conf import settings
from django.utils import timezone

from gateway.background import enqueue
from gateway.queueing import runner
from gateway.queueing.deferral import TASK
from gateway.tasks_base import portico_task
from queueing.services import LOST_AFTER, STALE_AFTER, queued_jobs_handed_over_again, queued_jobs_prune

logger = logging.getLogger(__name__)

# A queued job this long past its deadline should have had its last run by then.
OVERDUE_AFTER = 5.0
_SWEEP_LIMIT = 500  # jobs handed over, and finished jobs deleted, per sweep; the next sweep takes the rest


# Its own time limits: a run waits in line for its slice, then makes a call that may take as long as any.
@portico_task(acks_late=True, soft_time_limit=runner.run_seconds(), time_limit=runner.run_seconds() + 30)
def queue_job_run(job_id: str) -> None:
    pause = runner.run(job_id)
    if pause is not None:
        enqueue(TASK, job_id, queue="interactive", countdown=pause)


@shared_task(acks_late=True)
def queue_jobs_sweep() -> None:
    lost = queued_jobs_handed_over_again(
        stale_after=STALE_AFTER, overdue_after=OVERDUE_AFTER, lost_after=LOST_AFTER, limit=_SWEEP_LIMIT
    )
    for job_id in lost:
        enqueue(TASK, job_id, queue="interactive")
    if lost:
        logger.info("queue sweep: %d job(s) handed to the workers again", len(lost))
    days = settings.PORTICO_QUEUE_JOB_RETENTION_DAYS
    if days > 0:
        pruned = queued_jobs_prune(finished_before=timezone.now() - timedelta(days=days), limit=_SWEEP_LIMIT)
        if pruned:
            logger.info("queue sweep: %d finished job(s) older than %g days deleted", pruned, days)
