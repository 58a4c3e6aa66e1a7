"""Files: stored as they stream in (never whole in memory), bounded in size, deleted with their bytes."""

from __future__ import annotations

import logging
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import datetime

from django.db import transaction
from django.utils import timezone

from batches.models import File, new_file_id
from batches.storage import storage

logger = logging.getLogger(__name__)


class FileTooLarge(Exception):
    def __init__(self, limit: int) -> None:
        super().__init__(f"over {limit} bytes")
        self.limit = limit


@dataclass(frozen=True, slots=True)
class Stored:
    """Bytes in the store, not yet a file: `file_create` makes them one, `stored_discard` drops them."""

    file_id: str
    key: str
    size: int


def _bounded(chunks: Iterable[bytes], limit: int) -> Iterator[bytes]:
    size = 0
    for chunk in chunks:
        size += len(chunk)
        if size > limit:
            raise FileTooLarge(limit)
        yield chunk


def file_store(*, tenant_id: int, chunks: Iterable[bytes], max_bytes: int) -> Stored:
    """Stream `chunks` to the store under a new file id; FileTooLarge (and nothing kept) past `max_bytes`."""
    file_id = new_file_id()
    key = f"{tenant_id}/{file_id}"
    size = storage().put_stream(key, _bounded(chunks, max_bytes))
    return Stored(file_id, key, size)


def stored_discard(*, stored: Stored) -> None:
    storage().delete(stored.key)


def storable_name(filename: str) -> str:
    """A file's name as a database can keep it: bytes that were not UTF-8 (kept by the upload as surrogates)
    and NULs, which no text column takes, become U+FFFD; at most 255 characters."""
    text = filename.encode("utf-8", "surrogateescape").decode("utf-8", "replace")
    return text.replace("\x00", "\ufffd")[:255]


def file_create(
    *,
    tenant_id: int,
    api_key_id: int | None,
    purpose: str,
    filename: str,
    stored: Stored,
    expires_at: datetime | None,
) -> File:
    try:
        return File.objects.create(
            id=stored.file_id,
            tenant_id=tenant_id,
            api_key_id=api_key_id,
            purpose=purpose,
            filename=storable_name(filename),
            size=stored.size,
            storage_key=stored.key,
            expires_at=expires_at,
        )
    except BaseException:
        stored_discard(stored=stored)
        raise


def file_delete(*, file: File) -> None:
    """The row first, then (once that is committed) its bytes: a file is never listed without them."""
    key = file.storage_key
    with transaction.atomic():
        file.delete()
        transaction.on_commit(lambda: storage().delete(key))


def files_expire(*, now: datetime | None = None, limit: int = 1000) -> int:
    """Delete files past their expiry, at most `limit` of them; how many were."""
    now = now or timezone.now()
    expired = list(File.objects.filter(expires_at__lte=now).order_by("expires_at")[:limit])
    for file in expired:
        file_delete(file=file)
    if expired:
        logger.info("deleted %d expired file(s)", len(expired))
    return len(expired)
