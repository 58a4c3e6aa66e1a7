"""Validating a batch: its input file read, line by line, into the lines its runner will run."""

from __future__ import annotations

import os
from collections.abc import Iterator

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from batches.jsonl import RequestLine, physical_lines, read_line
from batches.models import Batch, BatchLine, File
from batches.storage import storage

_INSERT_PAGE = 1000


def _line(batch: Batch, request: RequestLine) -> BatchLine:
    invalid = bool(request.error_code)
    return BatchLine(
        batch=batch,
        number=request.number,
        custom_id=request.custom_id or "",
        request_id=f"req_{os.urandom(16).hex()}",
        body=request.body.decode(),
        state=BatchLine.State.FAILED if invalid else BatchLine.State.PENDING,
        finished_at=timezone.now() if invalid else None,
        error_code=request.error_code,
        error_message=request.error_message,
    )


def _requests(batch: Batch) -> Iterator[RequestLine]:
    file = File.objects.filter(pk=batch.input_file_id).first()
    if file is None:
        raise FileNotFoundError(batch.input_file_id)
    seen: dict[str, int] = {}
    limit, endpoint = settings.PORTICO_MAX_BODY_BYTES, batch.endpoint
    with storage().open(file.storage_key) as handle:
        for number, raw in physical_lines(handle, limit):
            request = read_line(number, raw, endpoint, seen, limit)
            if request is not None:
                yield request


class _Refused(Exception):
    """The whole file is refused: the batch fails with this error."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


def batch_validate(*, batch_id: str) -> Batch:
    """Read the input file into lines and start the batch (in_progress), or fail it; once only.

    One transaction, with the batch's row locked: a cancel waits for it, then finds the lines to stop.
    """
    with transaction.atomic():
        batch = Batch.objects.select_for_update().get(pk=batch_id)
        if batch.status != Batch.Status.VALIDATING:
            return batch
        try:
            with transaction.atomic():  # a refused file leaves no lines behind
                _insert_lines(batch)
        except _Refused as exc:
            batch.status, batch.failed_at = Batch.Status.FAILED, timezone.now()
            batch.errors = [{"code": exc.code, "message": exc.message, "param": "input_file_id", "line": None}]
            batch.save(update_fields=["status", "failed_at", "errors"])
            return batch
        batch.status, batch.in_progress_at = Batch.Status.IN_PROGRESS, timezone.now()
        batch.save(update_fields=["status", "in_progress_at", "total", "failed", "model"])
    return batch


def _insert_lines(batch: Batch) -> None:
    most = settings.PORTICO_BATCH_MAX_LINES
    page: list[BatchLine] = []
    total = failed = 0
    try:
        for request in _requests(batch):
            if total == most:
                raise _Refused("batch_too_large", f"The input file holds more than {most} requests.")
            line = _line(batch, request)
            total += 1
            failed += line.state == BatchLine.State.FAILED
            if not batch.model and request.model:
                batch.model = request.model[:200]
            page.append(line)
            if len(page) == _INSERT_PAGE:
                BatchLine.objects.bulk_create(page)
                page = []
    except FileNotFoundError:
        raise _Refused("file_not_found", f"The input file {batch.input_file_id} no longer exists.") from None
    if total == 0:
        raise _Refused("empty_file", "The input file holds no requests.")
    BatchLine.objects.bulk_create(page)
    batch.total, batch.failed = total, failed
