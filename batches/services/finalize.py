"""Finishing a batch: its output and error files written, its last status set.

Idempotent: the files go to keys named after the batch, so finishing again
after a crash overwrites what a first attempt left, and the status changes
only in the transaction that creates the File rows.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import orjson
from django.conf import settings
from django.db import transaction
from django.utils import timezone

from batches.models import Batch, BatchLine, File, new_file_id
from batches.objects import output_line
from batches.selectors import batch_lines_unfinished
from batches.storage import storage

FINAL = (Batch.Status.COMPLETED, Batch.Status.FAILED, Batch.Status.EXPIRED, Batch.Status.CANCELLED)
_FIELDS = ("number", "custom_id", "request_id", "status_code", "response", "error_code", "error_message")


class _Usage:
    """Tokens of the answers, summed as OpenAI's Batch object reports them."""

    def __init__(self) -> None:
        self.input = self.cached = self.output = self.reasoning = 0

    def add(self, response: str) -> None:
        try:
            usage = orjson.loads(response).get("usage") or {}
        except (orjson.JSONDecodeError, AttributeError):
            return
        self.input += int(usage.get("prompt_tokens") or 0)
        self.output += int(usage.get("completion_tokens") or 0)
        self.cached += int((usage.get("prompt_tokens_details") or {}).get("cached_tokens") or 0)
        self.reasoning += int((usage.get("completion_tokens_details") or {}).get("reasoning_tokens") or 0)

    def object(self) -> dict[str, Any]:
        return {
            "input_tokens": self.input,
            "input_tokens_details": {"cached_tokens": self.cached},
            "output_tokens": self.output,
            "output_tokens_details": {"reasoning_tokens": self.reasoning},
            "total_tokens": self.input + self.output,
        }


def _lines(batch: Batch, state: str, usage: _Usage | None) -> Iterator[bytes]:
    rows = BatchLine.objects.filter(batch=batch, state=state).order_by("number").only(*_FIELDS)
    for line in rows.iterator(chunk_size=1000):
        if usage is not None and line.response:
            usage.add(line.response)
        yield output_line(line) + b"\n"


def _write(batch: Batch, state: str, name: str, usage: _Usage | None) -> File | None:
    if not BatchLine.objects.filter(batch=batch, state=state).exists():
        return None
    key = f"{batch.tenant_id}/{batch.id}.{name}.jsonl"
    size = storage().put_stream(key, _lines(batch, state, usage))
    days = settings.PORTICO_FILES_EXPIRE_DAYS
    return File(
        id=new_file_id(),
        tenant_id=batch.tenant_id,
        purpose=File.Purpose.BATCH_OUTPUT,
        filename=f"{batch.id}_{name}.jsonl",
        size=size,
        storage_key=key,
        expires_at=timezone.now() + timedelta(days=days) if days else None,
    )


def _last_status(batch: Batch) -> str:
    if batch.status == Batch.Status.CANCELLING:
        return Batch.Status.CANCELLED
    if BatchLine.objects.filter(batch=batch, error_code="batch_expired").exists():
        return Batch.Status.EXPIRED
    return Batch.Status.COMPLETED


def batch_finalize(*, batch_id: str) -> Batch:
    """Write the files and set the last status, once every line has ended; otherwise change nothing."""
    batch = Batch.objects.get(pk=batch_id)
    if batch.status in FINAL or batch.status == Batch.Status.VALIDATING or batch_lines_unfinished(batch_id=batch_id):
        return batch
    if batch.status != Batch.Status.FINALIZING and batch.status != Batch.Status.CANCELLING:
        Batch.objects.filter(pk=batch_id, status=batch.status).update(
            status=Batch.Status.FINALIZING, finalizing_at=timezone.now()
        )
    usage = _Usage()
    output = _write(batch, BatchLine.State.DONE, "output", usage)
    errors = _write(batch, BatchLine.State.FAILED, "error", None)
    now = timezone.now()
    with transaction.atomic():
        locked = Batch.objects.select_for_update().get(pk=batch_id)
        if locked.status in FINAL:
            return locked  # finished by another runner meanwhile: its files stand, these are overwritten copies
        status = _last_status(locked)
        stamp = {"completed": "completed_at", "expired": "expired_at", "cancelled": "cancelled_at"}[status]
        for file in (output, errors):
            if file is not None:
                file.save(force_insert=True)
        locked.status = status
        setattr(locked, stamp, now)
        if locked.finalizing_at is None and status != Batch.Status.CANCELLED:
            locked.finalizing_at = now
        locked.output_file, locked.error_file = output, errors
        locked.usage = usage.object() if output is not None else None
        locked.save()
    return locked
