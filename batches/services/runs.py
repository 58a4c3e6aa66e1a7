"""The runner's hold on a batch, and each line's claim and record: what keeps a line from running twice.

One runner at a time holds a batch (`runner`, until `runner_until`), renewing
its lease while it works. A runner that dies stops renewing, and the next one
takes the batch once the lease has run out. Lease times are the database's
clock, so workers on hosts whose clocks differ agree on them.

Every line transition is a single UPDATE guarded by the state it leaves (and,
once claimed, by the claim), so two runners can never both claim, or both
record, one line: the second finds no row to change.
"""

from __future__ import annotations

import os
from datetime import datetime, timedelta

from django.db import transaction
from django.db.models import F, Q
from django.db.models.expressions import CombinedExpression
from django.db.models.functions import Now
from django.utils import timezone

from batches.facade import Answer
from batches.models import Batch, BatchLine

State = BatchLine.State


def new_token() -> str:
    return os.urandom(16).hex()


def _until(seconds: float) -> CombinedExpression:
    return Now() + timedelta(seconds=seconds)


def batch_lease_acquire(*, batch_id: str, token: str, seconds: float) -> bool:
    """Hold the batch for `seconds`, if nobody holds it (or the holder let the lease run out)."""
    free = Q(runner_until__isnull=True) | Q(runner_until__lt=Now()) | Q(runner=token)
    return Batch.objects.filter(free, pk=batch_id).update(runner=token, runner_until=_until(seconds)) == 1


def batch_lease_renew(*, batch_id: str, token: str, seconds: float) -> bool:
    """False if the lease was lost (it ran out and another runner took the batch)."""
    return Batch.objects.filter(pk=batch_id, runner=token).update(runner_until=_until(seconds)) == 1


def batch_lease_release(*, batch_id: str, token: str, not_before: datetime | None = None) -> None:
    """Let go of the batch; lines refused by its limits are not tried again before `not_before`.

    The lease ends now (just past, so the runner's successor may take it at once), which also tells the
    sweep the batch was held a moment ago (batches.selectors.batches_to_run).
    """
    ended = _until(-1e-6)
    Batch.objects.filter(pk=batch_id, runner=token).update(runner="", runner_until=ended, not_before=not_before)


def batch_line_claim(*, line_id: int, token: str) -> bool:
    """Mark the line running under `token`, committed before anything is sent; False if it is not pending."""
    claimed = BatchLine.objects.filter(pk=line_id, state=State.PENDING).update(
        state=State.RUNNING, claim=token, claimed_at=timezone.now(), attempts=F("attempts") + 1
    )
    return claimed == 1


def batch_line_release(*, line_id: int, token: str) -> None:
    """Back to pending: the tenant's limits refused it before anything was sent."""
    BatchLine.objects.filter(pk=line_id, state=State.RUNNING, claim=token).update(state=State.PENDING, claim="")


def _count(batch_id: str, answer: Answer, lines: int = 1) -> None:
    counter = "completed" if answer.succeeded else "failed"
    Batch.objects.filter(pk=batch_id).update(**{counter: F(counter) + lines})


def batch_line_record(*, batch_id: str, line_id: int, token: str, answer: Answer) -> bool:
    """Store the line's answer and count it, in one transaction; False if the claim was lost meanwhile."""
    with transaction.atomic():
        recorded = BatchLine.objects.filter(pk=line_id, state=State.RUNNING, claim=token).update(
            state=State.DONE if answer.succeeded else State.FAILED,
            finished_at=timezone.now(),
            status_code=answer.status,
            response=answer.body.decode(),
            error_code=answer.error_code,
            error_message=answer.error_message,
        )
        if recorded:
            _count(batch_id, answer)
    return recorded == 1


def batch_lines_interrupt(*, batch_id: str, line_ids: list[int], answer: Answer) -> int:
    """Fail lines found in flight under a dead runner's claim (never sent again); how many were."""
    with transaction.atomic():
        failed = BatchLine.objects.filter(pk__in=line_ids, batch_id=batch_id, state=State.RUNNING).update(
            state=State.FAILED,
            finished_at=timezone.now(),
            error_code=answer.error_code,
            error_message=answer.error_message,
        )
        if failed:
            _count(batch_id, answer, failed)
    return failed


def _fail_pending(batch_id: str, code: str, message: str) -> int:
    with transaction.atomic():
        failed = BatchLine.objects.filter(batch_id=batch_id, state=State.PENDING).update(
            state=State.FAILED, finished_at=timezone.now(), error_code=code, error_message=message
        )
        if failed:
            Batch.objects.filter(pk=batch_id).update(failed=F("failed") + failed)
    return failed


EXPIRED = "This request could not be executed before the completion window expired."
CANCELLED = "This request was not executed because the batch was cancelled."


def batch_lines_expire(*, batch_id: str) -> int:
    """Past the completion window: lines not yet run never will be."""
    return _fail_pending(batch_id, "batch_expired", EXPIRED)


def batch_lines_cancel(*, batch_id: str) -> int:
    return _fail_pending(batch_id, "batch_cancelled", CANCELLED)
