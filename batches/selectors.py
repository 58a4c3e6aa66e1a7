"""Reads on files, batches and their lines, always within one tenant; bounded."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime, timedelta

from django.db.models import Q, QuerySet

from batches.facade import BatchRun, LineWork
from batches.models import Batch, BatchLine, File
from billing.models import UsageRecord

MAX_LIST = 100


def askable(value: str) -> bool:
    """Whether a client's id or filter may be looked up. Every id and name Portico issues is printable ASCII;
    anything else names no row, and Postgres refuses a NUL in any text (a database error where a 404 is right)."""
    return value.isascii() and value.isprintable()


def file_get(*, tenant_id: int, file_id: str) -> File | None:
    """Another tenant's file is no file at all."""
    if not askable(file_id):
        return None
    return File.objects.filter(tenant_id=tenant_id, pk=file_id).first()


def batch_get(*, tenant_id: int, batch_id: str) -> Batch | None:
    if not askable(batch_id):
        return None
    return Batch.objects.filter(tenant_id=tenant_id, pk=batch_id).first()


def _page(rows: QuerySet, anchor: File | Batch | None, *, limit: int, newest_first: bool) -> tuple[list, bool]:
    """One page of `rows` after the cursor `anchor`, in (created_at, id) order; and whether more follow."""
    if anchor is not None:
        if newest_first:
            after = Q(created_at__lt=anchor.created_at) | Q(created_at=anchor.created_at, pk__lt=anchor.pk)
        else:
            after = Q(created_at__gt=anchor.created_at) | Q(created_at=anchor.created_at, pk__gt=anchor.pk)
        rows = rows.filter(after)
    rows = rows.order_by(*(("-created_at", "-id") if newest_first else ("created_at", "id")))
    found = list(rows[: limit + 1])
    return found[:limit], len(found) > limit


def files_list(
    *, tenant_id: int, purpose: str | None, after: str | None, limit: int, newest_first: bool = True
) -> tuple[list[File], bool]:
    """A page of the tenant's files; an `after` that names none of its files starts from the beginning."""
    if purpose and not askable(purpose):
        return [], False
    rows = File.objects.filter(tenant_id=tenant_id)
    if purpose:
        rows = rows.filter(purpose=purpose)
    anchor = file_get(tenant_id=tenant_id, file_id=after) if after else None
    return _page(rows, anchor, limit=limit, newest_first=newest_first)


def batches_list(*, tenant_id: int, after: str | None, limit: int) -> tuple[list[Batch], bool]:
    rows = Batch.objects.filter(tenant_id=tenant_id)
    anchor = batch_get(tenant_id=tenant_id, batch_id=after) if after else None
    return _page(rows, anchor, limit=limit, newest_first=True)


# --- for the runner -----------------------------------------------------------------------------------------


def batch_run_get(*, batch_id: str) -> BatchRun | None:
    batch = Batch.objects.filter(pk=batch_id).select_related("api_key").first()
    if batch is None:
        return None
    return BatchRun(
        id=batch.id,
        tenant_id=batch.tenant_id,
        api_key_id=batch.api_key_id,
        key_prefix=batch.api_key.prefix if batch.api_key is not None else "",
        endpoint=batch.endpoint,
        status=batch.status,
        expires_at=batch.expires_at.timestamp(),
        not_before=batch.not_before.timestamp() if batch.not_before is not None else None,
    )


def _work(line: BatchLine) -> LineWork:
    claimed = line.claimed_at.timestamp() if line.claimed_at is not None else 0.0
    return LineWork(line.pk, line.number, line.custom_id, line.request_id, line.body.encode(), claimed)


def batch_lines_pending(*, batch_id: str, limit: int) -> list[LineWork]:
    """The next pending lines, in file order."""
    rows = BatchLine.objects.filter(batch_id=batch_id, state=BatchLine.State.PENDING).order_by("number")
    return [_work(line) for line in rows[:limit]]


def batch_lines_in_flight(*, batch_id: str, except_claim: str) -> list[LineWork]:
    """Lines running under another claim than `except_claim`: only a runner that died leaves any."""
    rows = BatchLine.objects.filter(batch_id=batch_id, state=BatchLine.State.RUNNING).exclude(claim=except_claim)
    return [_work(line) for line in rows.order_by("number")]


def batch_lines_unfinished(*, batch_id: str) -> bool:
    return BatchLine.objects.filter(
        batch_id=batch_id, state__in=(BatchLine.State.PENDING, BatchLine.State.RUNNING)
    ).exists()


def usage_recorded(*, request_ids: Iterable[str]) -> set[str]:
    """Which of these calls have a row in the usage ledger."""
    ids = list(request_ids)
    return set(UsageRecord.objects.filter(request_id__in=ids).values_list("request_id", flat=True))


def batches_to_run(*, now: datetime, limit: int, grace: timedelta = timedelta(0)) -> list[str]:
    """Batches that should be running but that nobody has held for `grace`: lost jobs, dead workers, waits ended.

    The grace leaves alone a batch between two chunks, whose next job is already queued.
    """
    active = (Batch.Status.VALIDATING, Batch.Status.IN_PROGRESS, Batch.Status.FINALIZING, Batch.Status.CANCELLING)
    quiet = now - grace
    unheld = Q(runner_until__isnull=True, created_at__lte=quiet) | Q(runner_until__lte=quiet)
    due = Q(not_before__isnull=True) | Q(not_before__lte=quiet)
    rows = Batch.objects.filter(unheld, due, status__in=active).order_by("created_at")
    return list(rows.values_list("id", flat=True)[:limit])


def batches_overdue(*, now: datetime, limit: int) -> list[str]:
    """Batches past their completion window with lines still to run."""
    active = (Batch.Status.VALIDATING, Batch.Status.IN_PROGRESS)
    rows = Batch.objects.filter(status__in=active, expires_at__lte=now).order_by("expires_at")
    return list(rows.values_list("id", flat=True)[:limit])
