"""Files, batches and batch lines in OpenAI's shapes (the File and Batch objects, the output file's lines)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import orjson

from batches.models import Batch, BatchLine, File


def _epoch(moment: datetime | None) -> int | None:
    return int(moment.timestamp()) if moment is not None else None


def file_object(file: File) -> dict[str, Any]:
    return {
        "id": file.id,
        "object": "file",
        "bytes": file.size,
        "created_at": _epoch(file.created_at),
        "expires_at": _epoch(file.expires_at),
        "filename": file.filename,
        "purpose": file.purpose,
        "status": file.status,
        "status_details": None,
    }


def batch_object(batch: Batch) -> dict[str, Any]:
    errors = {"object": "list", "data": batch.errors} if batch.errors else None
    return {
        "id": batch.id,
        "object": "batch",
        "endpoint": batch.endpoint,
        "model": batch.model or None,
        "errors": errors,
        "input_file_id": batch.input_file_id,
        "completion_window": batch.completion_window,
        "status": batch.status,
        "output_file_id": batch.output_file_id,
        "error_file_id": batch.error_file_id,
        "created_at": _epoch(batch.created_at),
        "in_progress_at": _epoch(batch.in_progress_at),
        "expires_at": _epoch(batch.expires_at),
        "finalizing_at": _epoch(batch.finalizing_at),
        "completed_at": _epoch(batch.completed_at),
        "failed_at": _epoch(batch.failed_at),
        "expired_at": _epoch(batch.expired_at),
        "cancelling_at": _epoch(batch.cancelling_at),
        "cancelled_at": _epoch(batch.cancelled_at),
        "request_counts": {"total": batch.total, "completed": batch.completed, "failed": batch.failed},
        "usage": batch.usage,
        "metadata": batch.metadata,
    }


def line_id(line: BatchLine) -> str:
    """The output line's `id`: batch_req_ and the hex of the call's request id (req_…)."""
    return "batch_req_" + line.request_id.removeprefix("req_")


def output_line(line: BatchLine) -> bytes:
    """The line as the output or error file holds it: the answer it got, or the error it got instead."""
    head = {"id": line_id(line), "custom_id": line.custom_id or None}
    if line.status_code is not None:
        body = orjson.Fragment(line.response.encode()) if line.response else None
        response = {"status_code": line.status_code, "request_id": line.request_id, "body": body}
        return orjson.dumps({**head, "response": response, "error": None})
    error = {"code": line.error_code, "message": line.error_message}
    return orjson.dumps({**head, "response": None, "error": error})
