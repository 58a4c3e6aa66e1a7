"""Creating and cancelling batches."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from django.db import transaction
from django.utils import timezone

from batches.models import Batch, File
from batches.services.runs import batch_lines_cancel

COMPLETION_WINDOWS = {"24h": timedelta(hours=24)}


def batch_create(
    *,
    tenant_id: int,
    api_key_id: int,
    input_file: File,
    endpoint: str,
    completion_window: str,
    metadata: dict[str, Any] | None,
) -> Batch:
    """A batch waiting to be validated (the caller hands it to a worker: gateway.tasks.batches_start)."""
    now = timezone.now()
    return Batch.objects.create(
        tenant_id=tenant_id,
        api_key_id=api_key_id,
        input_file=input_file,
        endpoint=endpoint,
        completion_window=completion_window,
        metadata=metadata,
        created_at=now,
        expires_at=now + COMPLETION_WINDOWS[completion_window],
    )


_CANCELLABLE = (Batch.Status.VALIDATING, Batch.Status.IN_PROGRESS)


def batch_cancel(*, batch: Batch) -> Batch:
    """Lines not yet sent stop now; lines in flight finish; the runner then makes it `cancelled`.

    Cancelling a batch that is already cancelling or finished changes nothing.
    """
    with transaction.atomic():
        changed = Batch.objects.filter(pk=batch.pk, status__in=_CANCELLABLE).update(
            status=Batch.Status.CANCELLING, cancelling_at=timezone.now()
        )
        if changed:
            batch_lines_cancel(batch_id=batch.pk)
    batch.refresh_from_db()
    return batch
