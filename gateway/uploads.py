"""Relaying a multipart/form-data upload without holding the file in memory.

`POST /v1/audio/transcriptions` carries an audio file of up to tens of
megabytes next to a few text fields, one of which (`model`) names the public
model the gateway must map to the provider's name before forwarding. So the
client's body is read only until that field is complete; whatever file data
came before it is spooled (to RAM up to `memory` bytes, then to a temporary
file in the system's temporary directory). Then either:

* `receive()` spools the rest too, and `body()` sends the whole upload as often
  as asked: each attempt of the routing loop re-sends it (gateway.routing_uploads);
* or the rest streams from the client to one upstream as it arrives, and `body()`
  can be read only once.

Either way each part is re-encoded with a boundary of Portico's own:

    upload = await read_upload(receive_chunks(receive), content_type, limit=..., needed="model")
    try:
        route = resolve(upload.fields["model"])
        await upload.receive()
        ...post(url, data=upload.body({"model": route.upstream_name}),
                headers={"content-type": upload.content_type})
    finally:
        await upload.aclose()    # the spool and any temporary file go, on every exit

`receive()` raises what reading the client's body can raise (too large,
malformed, client gone). Streamed through, that happens while `body()` is
being consumed: the HTTP client sending it then fails the upstream request
with its own error, and `upload.error` says what really happened.

Every part is re-encoded rather than copied byte for byte, so the upstream
sees one clean encoding (our boundary, quoted names, no preamble, epilogue or
Content-Transfer-Encoding) whatever the client sent.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass

from python_multipart.exceptions import FormParserError
from python_multipart.multipart import MultipartParser, parse_options_header

from gateway.errors import BodyTooLarge, InvalidRequest, PorticoError
from gateway.fastpath import ClientGone, Receive

MAX_FIELD_BYTES = 64 * 1024  # a text field's value; a transcription prompt is a few hundred tokens
MAX_PARTS = 1000  # every part costs a little memory before `model` is found, however small
_BLOCK = 64 * 1024  # how much spooled file data one chunk of the re-encoded body carries
_QUOTED = str.maketrans({'"': "%22", "\r": "%0D", "\n": "%0A"})  # as browsers quote names in form-data


class UploadError(InvalidRequest):
    """The upload is not a multipart/form-data body Portico can relay."""


@dataclass(frozen=True)
class FormField:
    name: str
    value: bytes


@dataclass(frozen=True)
class FileStart:
    name: str
    filename: str
    content_type: str


@dataclass(frozen=True)
class FileEnd:
    pass


@dataclass(frozen=True)
class _Spooled:
    """File data read before the needed field, kept in the spool at `offset`."""

    offset: int
    size: int


_FILE_END = FileEnd()

# What the decoder makes of the client's body, in order: text fields whole, files as a start, data, an end.
_Item = FormField | FileStart | FileEnd | bytes


def _text(raw: bytes) -> str:
    # Undecodable bytes survive the round trip to the upstream unchanged.
    return raw.decode("utf-8", "surrogateescape")


def _part_type(raw: bytes | None) -> str:
    value = (raw or b"").decode("latin-1").strip()
    # A part's header value runs to its CR, so it may hold a bare LF that would forge a header upstream.
    if value and value.isascii() and value.isprintable():
        return value
    return "application/octet-stream"


def _malformed() -> UploadError:
    return UploadError("The request body is not valid multipart/form-data.", code="invalid_multipart")


def _truncated() -> UploadError:
    return UploadError("The multipart body ended before its closing boundary.", code="invalid_multipart")


class MultipartDecoder:
    """python-multipart's push parser, turned into the `_Item`s each written chunk completes."""

    def __init__(self, boundary: bytes) -> None:
        self.finished = False  # the closing boundary was seen
        self._items: list[_Item] = []
        self._header: list[bytearray] = [bytearray(), bytearray()]
        self._headers: dict[bytes, bytes] = {}
        self._name = ""
        self._value: bytearray | None = None  # the text field being read; None inside a file
        self._parts = 0
        try:
            self._parser = MultipartParser(
                boundary,
                callbacks={
                    "on_part_begin": self._headers.clear,
                    "on_header_field": self._header_field,
                    "on_header_value": self._header_value,
                    "on_header_end": self._header_end,
                    "on_headers_finished": self._headers_finished,
                    "on_part_data": self._part_data,
                    "on_part_end": self._part_end,
                    "on_end": self._end,
                },
            )
        except FormParserError as exc:  # a boundary longer than the parser accepts
            raise _malformed() from exc

    def write(self, chunk: bytes) -> list[_Item]:
        try:
            self._parser.write(chunk)
        except FormParserError as exc:
            raise _malformed() from exc
        items, self._items = self._items, []
        return items

    def _header_field(self, data: bytes, start: int, end: int) -> None:
        self._header[0] += data[start:end]

    def _header_value(self, data: bytes, start: int, end: int) -> None:
        self._header[1] += data[start:end]

    def _header_end(self) -> None:
        name, value = self._header
        self._headers[bytes(name).lower()] = bytes(value).strip(b" \t")
        name.clear()
        value.clear()

    def _headers_finished(self) -> None:
        self._parts += 1
        if self._parts > MAX_PARTS:
            raise UploadError(f"The multipart body has more than {MAX_PARTS} parts.", code="too_many_parts")
        _, options = parse_options_header(self._headers.get(b"content-disposition"))
        name = options.get(b"name")
        if name is None:
            raise UploadError("A part of the multipart body has no name.", code="invalid_multipart")
        self._name = _text(name)
        filename = options.get(b"filename")
        if filename is None:
            self._value = bytearray()
            return
        self._value = None
        content_type = _part_type(self._headers.get(b"content-type"))
        self._items.append(FileStart(self._name, _text(filename), content_type))

    def _part_data(self, data: bytes, start: int, end: int) -> None:
        if self._value is None:
            self._items.append(data[start:end])
            return
        if len(self._value) + end - start > MAX_FIELD_BYTES:
            raise UploadError(
                f"Invalid '{self._name}': string too long. Expected a string with maximum length "
                f"{MAX_FIELD_BYTES}, but got a longer string instead.",
                param=self._name,
                code="string_above_max_length",
            )
        self._value += data[start:end]

    def _part_end(self) -> None:
        if self._value is None:
            self._items.append(_FILE_END)
        else:
            self._items.append(FormField(self._name, bytes(self._value)))
            self._value = None

    def _end(self) -> None:
        self.finished = True


class _Source:
    """The client's chunks, counted against the limit and decoded."""

    def __init__(self, chunks: AsyncIterator[bytes], decoder: MultipartDecoder, limit: int) -> None:
        self.decoder = decoder
        self.size = 0
        self._chunks = chunks
        self._limit = limit

    async def read(self) -> list[_Item] | None:
        """The items the next chunk completes; None once the client's body has ended."""
        chunk = await anext(self._chunks, None)
        if chunk is None:
            return None
        self.size += len(chunk)
        if self.size > self._limit:
            raise BodyTooLarge.over(self._limit)
        return self.decoder.write(chunk)


class Upload:
    """A multipart body read up to its needed field; `body()` relays all of it, re-encoded."""

    def __init__(self, source: _Source, memory: int) -> None:
        self.fields: dict[str, str] = {}
        self.error: PorticoError | None = None
        self.boundary_of = os.urandom(16).hex().encode()
        self.content_type = f"multipart/form-data; boundary={self.boundary_of.decode()}"
        self._source = source
        self._spool = tempfile.SpooledTemporaryFile(max_size=memory)  # closed by aclose()
        # The parts before the needed field (all of them once received), file data in the spool.
        self._read: list[_Item | _Spooled] = []
        self._pending: list[_Item] = []  # what came after it in the same chunk
        self._file_start = 0
        self._started = False  # streamed through: read once
        self._received = False  # the whole body is in the spool: read as often as asked

    async def _read_until(self, needed: str) -> None:
        while (items := await self._source.read()) is not None:
            for index, item in enumerate(items):
                self._keep(item)
                if isinstance(item, FileStart) and item.name == needed:
                    raise UploadError(
                        f"Invalid type for '{needed}': expected a string, but got a file instead.",
                        param=needed,
                        code="invalid_type",
                    )
                if isinstance(item, FormField) and item.name == needed:
                    self._pending = items[index + 1 :]
                    return
            if self._source.decoder.finished:
                break
        raise UploadError(f"Missing required parameter: '{needed}'.", param=needed, code="missing_required_parameter")

    def _keep(self, item: _Item) -> None:
        # The spool's writes block the loop briefly, into the page cache at worst: one chunk at a time.
        if isinstance(item, bytes):
            self._spool.write(item)
            return
        if isinstance(item, FormField):
            self.fields[item.name] = item.value.decode("utf-8", "replace")
        elif isinstance(item, FileStart):
            self._file_start = self._spool.tell()
        else:
            self._read.append(_Spooled(self._file_start, self._spool.tell() - self._file_start))
        self._read.append(item)

    async def receive(self) -> None:
        """Read the rest of the client's body into the spool, so that `body()` can send it again and again.

        Raises BodyTooLarge past the limit, UploadError for a malformed or truncated body, and lets
        ClientGone through.
        """
        if self._started:
            raise RuntimeError("An upload streamed through cannot be received as well.")
        self._spool.seek(0, os.SEEK_END)  # appended after what was spooled before the needed field
        items: list[_Item] | None = self._pending
        self._pending = []
        while items is not None:  # to the end of the client's body: an epilogue decodes to nothing
            for item in items:
                self._keep(item)
            items = await self._read_more()
        if not self._source.decoder.finished:
            self.error = _truncated()
            raise self.error
        self._received = True

    async def body(self, replace: dict[str, str]) -> AsyncIterator[bytes]:
        """The whole body re-encoded, each field named in `replace` given that value instead.

        Once received, the spooled parts, as often as asked. Otherwise the parts read so
        far, then one chunk per chunk of the client's body, and only once.
        """
        out: list[bytes] = []
        if self._received:
            for block in self._replayed(replace, out):
                yield block
            out.append(b"--" + self.boundary_of + b"--\r\n")
            yield b"".join(out)
            return
        if self._started:
            raise RuntimeError("An upload's body can be read only once.")
        self._started = True
        for block in self._replayed(replace, out):
            yield block
        items = self._pending
        while True:
            for item in items:
                if isinstance(item, FormField):
                    self.fields[item.name] = item.value.decode("utf-8", "replace")
                out.append(self._encode(item, replace))
            if self._source.decoder.finished:
                break
            if out:
                yield b"".join(out)
                out.clear()
            more = await self._read_more()
            if more is None:
                self.error = _truncated()
                raise self.error
            items = more
        out.append(b"--" + self.boundary_of + b"--\r\n")
        yield b"".join(out)
        # Take the rest of the client's body (an epilogue, the end of the stream) so none of it is left unread.
        while await self._read_more() is not None:
            pass

    async def _read_more(self) -> list[_Item] | None:
        try:
            items = await self._source.read()
        except PorticoError as exc:
            self.error = exc
            raise
        except ClientGone:
            self.error = UploadError(
                "The client disconnected before its upload was complete.", code="client_gone", status=499
            )
            raise
        return items

    def _replayed(self, replace: dict[str, str], out: list[bytes]) -> Iterator[bytes]:
        """The parts kept so far, re-encoded: a chunk per block of spooled file data, the rest left in `out`."""
        for stored in self._read:
            if isinstance(stored, _Spooled):
                for block in self._replay(stored):
                    out.append(block)
                    yield b"".join(out)
                    out.clear()
            else:
                out.append(self._encode(stored, replace))

    def _replay(self, spooled: _Spooled) -> Iterator[bytes]:
        self._spool.seek(spooled.offset)
        left = spooled.size
        while left > 0:
            block = self._spool.read(min(left, _BLOCK))
            if not block:
                raise RuntimeError("The upload's spool is shorter than what was written to it.")
            left -= len(block)
            yield block

    def _encode(self, item: _Item, replace: dict[str, str]) -> bytes:
        if isinstance(item, bytes):
            return item
        if isinstance(item, FileEnd):
            return b"\r\n"
        head = b"--" + self.boundary_of + b"\r\nContent-Disposition: form-data" + _param("name", item.name)
        if isinstance(item, FileStart):
            head += _param("filename", item.filename) + b"\r\nContent-Type: " + item.content_type.encode()
            return head + b"\r\n\r\n"
        value = replace[item.name].encode() if item.name in replace else item.value
        return head + b"\r\n\r\n" + value + b"\r\n"

    async def aclose(self) -> None:
        """Drop the spool, and with it any temporary file."""
        self._spool.close()


def _param(key: str, value: str) -> bytes:
    return f'; {key}="{value.translate(_QUOTED)}"'.encode("utf-8", "surrogateescape")


def boundary_of(content_type: str) -> bytes:
    try:
        kind, options = parse_options_header(content_type)
    except UnicodeEncodeError:  # not a header value any client could have sent
        kind, options = b"", {}
    boundary = options.get(b"boundary")
    if kind != b"multipart/form-data" or not boundary:
        raise UploadError(
            f"Invalid Content-Type header ({content_type or 'none'}), expected multipart/form-data.",
            code="invalid_content_type",
        )
    return boundary


async def read_upload(
    chunks: AsyncIterator[bytes], content_type: str, *, limit: int, needed: str = "model", memory: int = 1 << 20
) -> Upload:
    """Read a multipart/form-data body from `chunks` until its text field `needed` is complete.

    Raises UploadError for a body that is not multipart, is malformed or lacks the field,
    BodyTooLarge past `limit` bytes, and lets ClientGone through. At most `memory` bytes
    of file data read meanwhile stay in RAM.
    """
    upload = Upload(_Source(chunks, MultipartDecoder(boundary_of(content_type)), limit), memory)
    try:
        await upload._read_until(needed)
    except BaseException:
        await upload.aclose()
        raise
    return upload


async def receive_chunks(receive: Receive) -> AsyncIterator[bytes]:
    """An ASGI request body as chunks, raising ClientGone if the client disconnects first."""
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise ClientGone
        if chunk := message.get("body", b""):
            yield chunk
        if not message.get("more_body", False):
            return
