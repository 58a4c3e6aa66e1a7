"""The Batch API's background jobs: thin, idempotent, by batch id (see gateway.batch_runner).

    batches_start      validate a new batch, then run it                 queued when the batch is created
    batches_run_chunk  run lines for one chunk, then queue the next       queued by itself, and by the sweep
    batches_sweep      expire overdue batches and files; restart batches  every PORTICO_BATCH_SWEEP_INTERVAL s
                       no live runner holds (a worker that died, a job lost)

Every job may run twice or late (acks_late, redelivery): each takes the
batch's lease before touching its lines, and a second one finds it held.
"""

from __future__ import annotations

import logging
from datetime import timedelta

from celery import shared_task
from django.conf import settings
from django.utils import timezone

from batches.models import Batch
from batches.selectors import batches_overdue, batches_to_run
from batches.services.files import files_expire
from batches.services.runs import batch_lines_expire
from batches.services.validation import batch_validate
from gateway import batch_runner
from gateway.background import enqueue
from gateway.tasks_base import portico_task

logger = logging.getLogger(__name__)

_SWEEP_LIMIT = 500  # batches looked at per sweep; the next sweep takes the rest
_CHUNK = "gateway.tasks.batches_run_chunk"


def run_soon(batch_id: str, *, countdown: float | None = None) -> None:
    """Queue a chunk of the batch (on the `batch` queue, behind interactive work)."""
    enqueue(_CHUNK, batch_id, queue="batch", countdown=countdown or None)


@portico_task(acks_late=True)
def batches_start(batch_id: str) -> None:
    try:
        batch_validate(batch_id=batch_id)
    except Batch.DoesNotExist:
        logger.info("batch %s is gone (its tenant was deleted): nothing to start", batch_id)
        return
    run_soon(batch_id)


@portico_task(
    acks_late=True,
    soft_time_limit=batch_runner.chunk_seconds(),
    time_limit=batch_runner.chunk_seconds() + 30,
)
def batches_run_chunk(batch_id: str) -> None:
    wait = batch_runner.run(batch_id)
    if wait is not None:
        run_soon(batch_id, countdown=wait)


@shared_task(acks_late=True)
def batches_sweep() -> None:
    now = timezone.now()
    for batch_id in batches_overdue(now=now, limit=_SWEEP_LIMIT):
        expired = batch_lines_expire(batch_id=batch_id)
        if expired:
            logger.info("batch %s expired with %d line(s) not run", batch_id, expired)
    files_expire(now=now)
    # A batch between two chunks has its next job queued already: only one quiet for a sweep's interval is lost.
    grace = timedelta(seconds=max(settings.PORTICO_BATCH_SWEEP_INTERVAL, 1.0))
    for batch_id in batches_to_run(now=now, limit=_SWEEP_LIMIT, grace=grace):
        run_soon(batch_id)
