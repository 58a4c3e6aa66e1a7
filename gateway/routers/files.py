"""/v1/files: upload (multipart, streamed to the store), list, retrieve, download and delete a tenant's files.

An upload is read as it arrives: the `file` part goes straight to the store
(batches.storage) from a worker thread that pulls it chunk by chunk, so it is
never whole in memory, and past PORTICO_FILES_MAX_BYTES it is refused with a
413 and nothing is kept. Files belong to the tenant: every key of the tenant
sees them, another tenant's file is answered as one that does not exist.

These views read the database (files are not on the chat hot path), each query
in a worker thread whose connection goes back to the pool.
"""

from __future__ import annotations

import asyncio
import collections
from collections.abc import AsyncGenerator, AsyncIterator, Callable, Iterator
from datetime import datetime, timedelta
from typing import Any, BinaryIO, TypeVar

import orjson
from asgiref.sync import sync_to_async
from django.conf import settings
from django.http import HttpRequest, HttpResponse
from django.utils import timezone
from ninja import Router

from batches import threads
from batches.models import File
from batches.objects import file_object
from batches.selectors import file_get, files_list
from batches.services.files import FileTooLarge, Stored, file_create, file_delete, file_store, stored_discard
from batches.storage import storage
from gateway.errors import UNREACHABLE, BodyTooLarge, DatabaseUnavailable, InvalidRequest, NotFound
from gateway.intake import grant_of
from gateway.routers.openapi import documented
from gateway.sse import EventStream
from gateway.uploads import FileEnd, FileStart, FormField, MultipartDecoder, UploadError, boundary_of, receive_chunks

router = Router(tags=["files"])

T = TypeVar("T")
PURPOSES = ("batch",)  # what Portico keeps files for
MAX_FILES_LIST = 10_000  # OpenAI's most (and default) files per page
_EXPIRY_SECONDS = (3600, 30 * 86400)  # OpenAI's bounds on `expires_after[seconds]`
_OVERHEAD = 1024 * 1024  # multipart framing and text fields allowed besides the file itself
_BLOCK = 256 * 1024  # bytes read from the store at a time for a download

FILE_UPLOAD = {
    "type": "object",
    "required": ["file", "purpose"],
    "properties": {
        "file": {"type": "string", "format": "binary"},
        "purpose": {"enum": list(PURPOSES)},
        "expires_after[anchor]": {"enum": ["created_at"]},
        "expires_after[seconds]": {"type": "integer", "minimum": _EXPIRY_SECONDS[0], "maximum": _EXPIRY_SECONDS[1]},
    },
}


async def in_thread(work: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    """Database work off the event loop; an unreachable database is a 503 the client may retry, other errors 500s."""
    try:
        return await threads.in_thread(work, *args, **kwargs)
    except UNREACHABLE:
        raise DatabaseUnavailable() from None


def json_response(payload: dict[str, Any]) -> HttpResponse:
    return HttpResponse(orjson.dumps(payload), content_type="application/json")


def no_such_file(file_id: str, param: str = "id") -> NotFound:
    return NotFound(f"No such File object: {file_id}", param=param)


async def tenant_file(request: HttpRequest, file_id: str) -> File:
    """The tenant's file; any other is a 404 (another tenant's files do not exist for this key)."""
    file = await in_thread(file_get, tenant_id=grant_of(request).tenant_id, file_id=file_id)
    if file is None:
        raise no_such_file(file_id)
    return file


def limit_of(request: HttpRequest, *, default: int, most: int) -> int:
    raw = request.GET.get("limit")
    if raw is None:
        return default
    try:
        limit = int(raw)
    except ValueError:
        limit = 0
    if not 1 <= limit <= most:
        raise InvalidRequest(
            f"Invalid value for 'limit': expected an integer between 1 and {most}.", param="limit", code="invalid_value"
        )
    return limit


def page(data: list[dict[str, Any]], has_more: bool) -> dict[str, Any]:
    first, last = (data[0]["id"], data[-1]["id"]) if data else (None, None)
    return {"object": "list", "data": data, "first_id": first, "last_id": last, "has_more": has_more}


# --- the upload -------------------------------------------------------------------------------------------


class _Form:
    """A multipart body read as it arrives: text fields kept, the `file` part's bytes handed out as they come."""

    def __init__(self, chunks: AsyncIterator[bytes], content_type: str, limit: int) -> None:
        self._decoder = MultipartDecoder(boundary_of(content_type))
        self._chunks = chunks
        self._limit = limit
        self._size = 0
        self._data: collections.deque[bytes] = collections.deque()
        self._in_file = False
        self.fields: dict[str, str] = {}
        self.filename: str | None = None
        self.ended = False  # the client's body is over

    async def _read(self) -> None:
        chunk = await anext(self._chunks, None)
        if chunk is None:
            self.ended = True
            if not self._decoder.finished:
                raise UploadError("The multipart body ended before its closing boundary.", code="invalid_multipart")
            return
        self._size += len(chunk)
        if self._size > self._limit:
            raise BodyTooLarge.over(self._limit)
        for item in self._decoder.write(chunk):
            if isinstance(item, FormField):
                self.fields[item.name] = item.value.decode("utf-8", "replace")
            elif isinstance(item, FileStart):
                if item.name == "file" and self.filename is None:
                    self.filename, self._in_file = item.filename, True
            elif isinstance(item, FileEnd):
                self._in_file = False
            elif self._in_file:
                self._data.append(item)

    async def file_chunk(self) -> bytes | None:
        """The next piece of the `file` part; None once it is over (or the body is, without one)."""
        while not self._data:
            if self.ended or (self.filename is not None and not self._in_file):
                return None
            await self._read()
        return self._data.popleft()

    async def rest(self) -> None:
        """Read the fields that follow the file."""
        while not self.ended:
            await self._read()


def _store(form: _Form, loop: asyncio.AbstractEventLoop, tenant_id: int) -> Stored:
    """In a worker thread: the file's bytes, pulled from the event loop as they arrive, into the store."""

    def chunks() -> Iterator[bytes]:
        while (piece := asyncio.run_coroutine_threadsafe(form.file_chunk(), loop).result()) is not None:
            yield piece

    try:
        return file_store(tenant_id=tenant_id, chunks=chunks(), max_bytes=settings.PORTICO_FILES_MAX_BYTES)
    except FileTooLarge as exc:
        raise BodyTooLarge(
            f"The file is larger than the {exc.limit} bytes this server accepts.", param="file", code="file_too_large"
        ) from None


def _expiry(fields: dict[str, str], now: datetime) -> datetime | None:
    anchor, seconds = fields.get("expires_after[anchor]"), fields.get("expires_after[seconds]")
    if anchor is None and seconds is None:
        days = settings.PORTICO_FILES_EXPIRE_DAYS
        return now + timedelta(days=days) if days else None
    if anchor != "created_at":
        raise InvalidRequest(
            "Invalid value for 'expires_after[anchor]': expected 'created_at'.",
            param="expires_after[anchor]",
            code="invalid_value",
        )
    low, high = _EXPIRY_SECONDS
    # isdigit() alone takes "²" and other Unicode digits, which int() refuses.
    if seconds is None or not (seconds.isascii() and seconds.isdigit()) or not low <= int(seconds) <= high:
        raise InvalidRequest(
            f"Invalid value for 'expires_after[seconds]': expected an integer between {low} and {high}.",
            param="expires_after[seconds]",
            code="invalid_value",
        )
    return now + timedelta(seconds=int(seconds))


def _check(form: _Form) -> None:
    purpose = form.fields.get("purpose")
    if purpose is None:
        raise UploadError("Missing required parameter: 'purpose'.", param="purpose", code="missing_required_parameter")
    if purpose not in PURPOSES:
        raise InvalidRequest(
            f"Invalid value for 'purpose': Portico keeps files for {', '.join(PURPOSES)} only.",
            param="purpose",
            code="invalid_value",
        )
    if form.filename is None:
        raise UploadError("Missing required parameter: 'file'.", param="file", code="missing_required_parameter")


async def _whole(body: bytes) -> AsyncIterator[bytes]:
    yield body


@router.post(
    "/files",
    summary="Upload a file",
    url_name="files",
    openapi_extra=documented(FILE_UPLOAD, media_type="multipart/form-data"),
)
async def upload_file(request: HttpRequest) -> HttpResponse:
    receive = getattr(request, "asgi_receive", None)
    # The fast path hands over the unread body; Django's own handler (PORTICO_FAST_PATH=false) has read it already.
    chunks = receive_chunks(receive) if receive is not None else _whole(request.body)
    grant = grant_of(request)
    form = _Form(chunks, request.META.get("CONTENT_TYPE", ""), settings.PORTICO_FILES_MAX_BYTES + _OVERHEAD)
    stored = await sync_to_async(_store, thread_sensitive=False)(form, asyncio.get_running_loop(), grant.tenant_id)
    try:
        await form.rest()
        _check(form)
        now = timezone.now()
        file = await in_thread(
            file_create,
            tenant_id=grant.tenant_id,
            api_key_id=grant.key_id,
            purpose=form.fields["purpose"],
            filename=form.filename or "",
            stored=stored,
            expires_at=_expiry(form.fields, now),
        )
    except BaseException:
        await sync_to_async(stored_discard, thread_sensitive=False)(stored=stored)
        raise
    return json_response(file_object(file))


# --- the rest ---------------------------------------------------------------------------------------------


@router.get("/files", summary="List files", openapi_extra=documented())
async def list_files(request: HttpRequest) -> HttpResponse:
    order = request.GET.get("order", "desc")
    if order not in ("asc", "desc"):
        message = "Invalid value for 'order': expected 'asc' or 'desc'."
        raise InvalidRequest(message, param="order", code="invalid_value")
    files, has_more = await in_thread(
        files_list,
        tenant_id=grant_of(request).tenant_id,
        purpose=request.GET.get("purpose") or None,
        after=request.GET.get("after") or None,
        limit=limit_of(request, default=MAX_FILES_LIST, most=MAX_FILES_LIST),
        newest_first=order == "desc",
    )
    return json_response(page([file_object(file) for file in files], has_more))


@router.get("/files/{file_id}", summary="Retrieve a file", openapi_extra=documented())
async def retrieve_file(request: HttpRequest, file_id: str) -> HttpResponse:
    return json_response(file_object(await tenant_file(request, file_id)))


@router.delete("/files/{file_id}", summary="Delete a file", openapi_extra=documented())
async def delete_file(request: HttpRequest, file_id: str) -> HttpResponse:
    file = await tenant_file(request, file_id)
    await in_thread(file_delete, file=file)
    return json_response({"id": file.id, "object": "file", "deleted": True})


async def _blocks(handle: BinaryIO) -> AsyncGenerator[bytes]:
    while block := await asyncio.to_thread(handle.read, _BLOCK):
        yield block


@router.get("/files/{file_id}/content", summary="Retrieve a file's content", openapi_extra=documented())
async def file_content(request: HttpRequest, file_id: str) -> EventStream:
    file = await tenant_file(request, file_id)
    try:
        handle = await asyncio.to_thread(storage().open, file.storage_key)
    except FileNotFoundError:
        raise no_such_file(file_id) from None

    async def release() -> None:
        await asyncio.to_thread(handle.close)

    # The fast path streams an EventStream's events as they come: the file is read a block at a time.
    download = EventStream(_blocks(handle), release=release)
    download["Content-Type"] = "application/octet-stream"
    download["Content-Length"] = str(file.size)
    return download
