"""Relaying multipart uploads: bodies built by httpx's encoder, fed in chunks of every size, read back.

What Portico sends upstream is parsed again (with python-multipart, and in the
end-to-end test by aiohttp's own multipart reader behind a real server on
127.0.0.1) and compared part by part with what the client sent.
"""

from __future__ import annotations

import hashlib
import os
import random
import tracemalloc
from collections.abc import AsyncIterator, Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import httpx
import pytest
from aiohttp import web
from python_multipart.multipart import FormParser, MultipartParser, parse_options_header

from gateway.errors import BodyTooLarge
from gateway.fastpath import ClientGone
from gateway.uploads import MAX_FIELD_BYTES, Upload, UploadError, read_upload, receive_chunks

MB = 1 << 20
URL = "http://portico.test/v1/audio/transcriptions"
# Bytes that look like the start of a boundary, so the parser must hold some back and give them back as data.
AUDIO = (b"RIFF\r\n--\r\n-\r\r\n--boundary" + bytes(range(256))) * 150
TINY_FILE = {"file": ("a.wav", b"RIFF", "audio/wav")}
FIELDS: dict[str, Any] = {
    "model": "whisper-1",
    "language": "de",
    "prompt": "Grüße aus Köln",
    "response_format": "verbose_json",
    "temperature": "0.2",
    "timestamp_granularities[]": ["word", "segment"],
}


@dataclass(frozen=True)
class Part:
    name: str
    value: bytes
    filename: str | None = None
    content_type: str | None = None


def encode(data: dict[str, Any], files: Any) -> tuple[str, bytes]:
    """The content type and body httpx sends for this form."""
    request = httpx.Request("POST", URL, data=data, files=files)
    return request.headers["content-type"], request.read()


def parse(content_type: str, body: bytes) -> list[Part]:
    parts: list[Part] = []

    def on_field(part: Any) -> None:
        parts.append(Part(part.field_name.decode(), part.value or b""))

    def on_file(part: Any) -> None:
        part.file_object.seek(0)
        parts.append(
            Part(part.field_name.decode(), part.file_object.read(), part.file_name.decode(), part.content_type)
        )

    _, options = parse_options_header(content_type)
    parser = FormParser("multipart/form-data", on_field, on_file, boundary=options[b"boundary"])
    parser.write(body)
    parser.finalize()
    return parts


def replaced(parts: list[Part], name: str, value: str) -> list[Part]:
    return [Part(p.name, value.encode(), p.filename, p.content_type) if p.name == name else p for p in parts]


@dataclass
class Client:
    """A client's body, sent in chunks of `sizes` (cycled); hangs up once `gone_after` bytes are sent."""

    body: bytes
    sizes: Sequence[int] = (64 * 1024,)
    gone_after: int | None = None
    sent: int = 0
    chunks: int = 0

    async def stream(self) -> AsyncIterator[bytes]:
        for chunk in split(self.body, self.sizes):
            if self.gone_after is not None and self.sent >= self.gone_after:
                raise ClientGone
            self.sent += len(chunk)
            self.chunks += 1
            yield chunk


def split(body: bytes, sizes: Sequence[int]) -> Iterator[bytes]:
    position, turn = 0, 0
    while position < len(body):
        size = sizes[turn % len(sizes)]
        yield body[position : position + size]
        position += size
        turn += 1


def random_sizes(seed: int) -> list[int]:
    chooser = random.Random(seed)
    return [chooser.choice([1, 2, 7, 40, 333, 4096, 64 * 1024]) for _ in range(500)]


async def collect(chunks: AsyncIterator[bytes]) -> list[bytes]:
    return [chunk async for chunk in chunks]


async def pump(chunks: AsyncIterator[bytes], into: list[bytes]) -> None:
    """Like `collect`, keeping what arrived before a failure."""
    async for chunk in chunks:
        into.append(chunk)


async def relay(client: Client, content_type: str, *, limit: int = 50 * MB, memory: int = MB) -> tuple[Upload, bytes]:
    upload = await read_upload(client.stream(), content_type, limit=limit, memory=memory)
    try:
        return upload, b"".join(await collect(upload.body({"model": "provider-whisper"})))
    finally:
        await upload.aclose()


@pytest.mark.parametrize(
    "sizes",
    [(1,), (7,), (64 * 1024,), (MB,), random_sizes(1), random_sizes(2)],
    ids=["1-byte", "7-bytes", "64KiB", "1MiB", "random-1", "random-2"],
)
async def test_it_reencodes_a_body_split_anywhere_with_the_model_replaced(sizes: Sequence[int]) -> None:
    content_type, body = encode(FIELDS, {"file": ("speech.wav", AUDIO, "audio/wav")})

    upload, out = await relay(Client(body, sizes), content_type)

    assert upload.content_type.startswith("multipart/form-data; boundary=")
    assert parse(upload.content_type, out) == replaced(parse(content_type, body), "model", "provider-whisper")
    assert upload.fields["model"] == "whisper-1"


async def test_it_keeps_repeated_fields_in_their_order() -> None:
    content_type, body = encode(FIELDS, {"file": ("speech.wav", AUDIO, "audio/wav")})

    upload, out = await relay(Client(body), content_type)

    parts = parse(upload.content_type, out)
    assert [part.name for part in parts] == [
        "model",
        "language",
        "prompt",
        "response_format",
        "temperature",
        "timestamp_granularities[]",
        "timestamp_granularities[]",
        "file",
    ]
    assert [part.value for part in parts if part.name == "timestamp_granularities[]"] == [b"word", b"segment"]


async def test_it_reads_the_client_only_up_to_the_model_then_streams_the_file_as_it_arrives() -> None:
    content_type, body = encode({"model": "whisper-1"}, {"file": ("speech.wav", AUDIO * 10, "audio/wav")})
    client = Client(body, sizes=(4096,))

    upload = await read_upload(client.stream(), content_type, limit=50 * MB)
    assert client.chunks == 1
    out: list[bytes] = []
    async for chunk in upload.body({}):
        out.append(chunk)
        assert client.sent - 4096 <= sum(map(len, out)) <= client.sent + 500  # never far behind nor ahead
    await upload.aclose()

    assert len(out) <= client.chunks + 1  # one chunk out per chunk in, not one per callback
    assert parse(upload.content_type, b"".join(out)) == parse(content_type, body)


async def test_it_reads_the_client_body_to_its_end() -> None:
    content_type, body = encode({"model": "whisper-1"}, TINY_FILE)
    client = Client(body + b"\r\nan epilogue, which is dropped", sizes=(len(body), 100))

    upload, out = await relay(client, content_type)

    assert client.sent == len(client.body)
    assert out.endswith(upload.content_type.split("=")[1].encode() + b"--\r\n")


@pytest.mark.parametrize(("memory", "on_disk"), [(10, True), (MB, False)])
async def test_it_spools_a_file_sent_before_the_model(memory: int, on_disk: bool) -> None:
    files = [("file", ("speech.wav", AUDIO, "audio/wav")), ("model", (None, "whisper-1"))]
    content_type, body = encode({"language": "en"}, files)
    assert [part.name for part in parse(content_type, body)] == ["language", "file", "model"]

    upload = await read_upload(Client(body, sizes=(1000,)).stream(), content_type, limit=MB, memory=memory)
    assert upload._spool._rolled is on_disk  # type: ignore[attr-defined]
    out = b"".join(await collect(upload.body({"model": "provider-whisper"})))
    await upload.aclose()

    assert parse(upload.content_type, out) == replaced(parse(content_type, body), "model", "provider-whisper")
    assert upload._spool.closed


class BigFile:
    """A file of `size` random bytes on disk, whose digest is known without holding it in memory."""

    def __init__(self, directory: Path, size: int) -> None:
        self.path = directory / "long.wav"
        self.size = size
        digest = hashlib.sha256()
        with self.path.open("wb") as file:
            for _ in range(size // MB):
                block = os.urandom(MB)
                file.write(block)
                digest.update(block)
        self.sha256 = digest.hexdigest()


class Digests:
    """Parses a multipart body as it streams by, keeping each part's name, size and SHA-256."""

    def __init__(self, content_type: str) -> None:
        self.parts: list[tuple[str, int, str]] = []
        self._headers: list[bytes] = []
        self._name = ""
        self._size = 0
        self._digest = hashlib.sha256()
        self._parser = MultipartParser(
            parse_options_header(content_type)[1][b"boundary"],
            {
                "on_header_value": lambda data, start, end: self._headers.append(data[start:end] + b";"),
                "on_headers_finished": self._headers_finished,
                "on_part_data": self._part_data,
                "on_part_end": self._part_end,
            },
        )

    def write(self, chunk: bytes) -> None:
        self._parser.write(chunk)

    def _headers_finished(self) -> None:
        self._name = parse_options_header(b"".join(self._headers))[1][b"name"].decode()
        self._headers.clear()

    def _part_data(self, data: bytes, start: int, end: int) -> None:
        self._digest.update(data[start:end])
        self._size += end - start

    def _part_end(self) -> None:
        self.parts.append((self._name, self._size, self._digest.hexdigest()))
        self._size, self._digest = 0, hashlib.sha256()


async def httpx_stream(request: httpx.Request) -> AsyncIterator[bytes]:
    assert isinstance(request.stream, Iterable)
    for chunk in request.stream:
        yield chunk


@pytest.mark.parametrize("model_first", [True, False], ids=["model-first", "file-first"])
async def test_it_streams_a_20_mb_file_in_bounded_memory(tmp_path: Path, model_first: bool) -> None:
    big = BigFile(tmp_path, 20 * MB)
    with big.path.open("rb") as file:
        if model_first:
            request = httpx.Request("POST", URL, data={"model": "whisper-1"}, files={"file": ("long.wav", file)})
        else:
            request = httpx.Request("POST", URL, files=[("file", ("long.wav", file)), ("model", (None, "whisper-1"))])
        tracemalloc.start()
        try:
            upload = await read_upload(httpx_stream(request), request.headers["content-type"], limit=25 * MB)
            received = Digests(upload.content_type)
            async for chunk in upload.body({"model": "provider-whisper"}):
                received.write(chunk)
            await upload.aclose()
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()

    assert peak < 2 * MB  # the file-first case holds its first MiB in the spool's memory
    assert ("file", big.size, big.sha256) in received.parts
    assert ("model", 16, hashlib.sha256(b"provider-whisper").hexdigest()) in received.parts


@pytest.mark.parametrize(
    ("content_type", "body"),
    [
        encode({"language": "en"}, {"file": ("speech.wav", AUDIO, "audio/wav")}),
        encode({"models": "whisper-1"}, {"file": ("speech.wav", AUDIO, "audio/wav")}),
        ("multipart/form-data; boundary=b", b"--b--\r\n"),
        ("multipart/form-data; boundary=b", b""),
        # The client's body stops inside the file: the field never came.
        (
            "multipart/form-data; boundary=b",
            b'--b\r\nContent-Disposition: form-data; name="file"; filename="a"\r\n\r\nab',
        ),
    ],
    ids=["no-model", "misnamed", "no-parts", "empty-body", "truncated"],
)
async def test_it_rejects_an_upload_without_a_model(content_type: str, body: bytes) -> None:
    with pytest.raises(UploadError) as caught:
        await read_upload(Client(body).stream(), content_type, limit=MB)

    assert caught.value.body()["error"] == {
        "message": "Missing required parameter: 'model'.",
        "type": "invalid_request_error",
        "param": "model",
        "code": "missing_required_parameter",
    }
    assert caught.value.status == 400


@pytest.mark.parametrize(
    "content_type",
    [
        "application/json",
        "",
        "multipart/form-data",
        "multipart/form-data; charset=utf-8",
        "multipart/mixed; boundary=b",
        "text/plain; boundary=b",
        "multipart/form-data; boundary=\u2603",
    ],
)
async def test_it_rejects_a_body_that_is_not_multipart_form_data(content_type: str) -> None:
    with pytest.raises(UploadError) as caught:
        await read_upload(Client(b"--b--\r\n").stream(), content_type, limit=MB)

    assert caught.value.code == "invalid_content_type"
    assert (
        caught.value.message == f"Invalid Content-Type header ({content_type or 'none'}), expected multipart/form-data."
    )
    assert caught.value.status == 400


DISPOSITION = b"Content-Disposition: form-data"


@pytest.mark.parametrize(
    ("body", "code"),
    [
        (b"hello, this is not multipart", "invalid_multipart"),
        (b"--other\r\n" + DISPOSITION + b'; name="model"\r\n\r\nwhisper-1\r\n--other--\r\n', "invalid_multipart"),
        (b"--b\r\nContent-Type: text/plain\r\n\r\nwhisper-1\r\n--b--\r\n", "invalid_multipart"),
        (b"--b\r\n" + DISPOSITION + b"\r\n\r\nwhisper-1\r\n--b--\r\n", "invalid_multipart"),
        (b"--b\r\nBad Header: x\r\n\r\n\r\n--b--\r\n", "invalid_multipart"),
        (b"--b\r\n" + DISPOSITION + b'; name="model"; filename="m.txt"\r\n\r\nwhisper-1\r\n--b--\r\n', "invalid_type"),
        (
            b"--b\r\n" + DISPOSITION + b'; name="prompt"\r\n\r\n' + b"x" * (MAX_FIELD_BYTES + 1) + b"\r\n--b--\r\n",
            "string_above_max_length",
        ),
        (
            b"".join(b"--b\r\n" + DISPOSITION + b'; name="n"\r\n\r\n\r\n' for _ in range(1001)) + b"--b--",
            "too_many_parts",
        ),
    ],
    ids=[
        "garbage",
        "other-boundary",
        "no-disposition",
        "no-name",
        "bad-header",
        "model-as-file",
        "long-field",
        "too-many-parts",
    ],
)
async def test_it_rejects_a_malformed_body(body: bytes, code: str) -> None:
    with pytest.raises(UploadError) as caught:
        await read_upload(Client(body, sizes=(1000,)).stream(), "multipart/form-data; boundary=b", limit=MB)

    assert caught.value.code == code
    assert caught.value.status == 400


async def test_it_names_the_field_that_is_too_long() -> None:
    content_type, body = encode({"prompt": "x" * (MAX_FIELD_BYTES + 1), "model": "whisper-1"}, TINY_FILE)

    with pytest.raises(UploadError) as caught:
        await read_upload(Client(body).stream(), content_type, limit=MB)

    assert caught.value.param == "prompt"


async def test_it_refuses_a_body_over_the_limit_before_the_model() -> None:
    files = [("file", ("speech.wav", AUDIO, "audio/wav")), ("model", (None, "whisper-1"))]
    content_type, body = encode({}, files)
    client = Client(body, sizes=(1000,))

    with pytest.raises(BodyTooLarge) as caught:
        await read_upload(client.stream(), content_type, limit=len(body) - 1)

    assert caught.value.status == 413
    assert caught.value.message == f"The request body is larger than the {len(body) - 1} bytes this server accepts."


@pytest.mark.parametrize(
    ("client", "error"),
    [
        (lambda body: Client(body[: len(body) // 2], sizes=(1000,)), UploadError),
        (lambda body: Client(body, sizes=(1000,), gone_after=len(body) // 2), ClientGone),
        (lambda body: Client(body[:-10] + b"\r\n--other--\r\n", sizes=(1000,)), UploadError),
    ],
    ids=["truncated", "client-gone", "bad-ending"],
)
async def test_it_records_why_the_rest_of_the_body_could_not_be_read(client: Any, error: type[Exception]) -> None:
    content_type, body = encode({"model": "whisper-1"}, {"file": ("speech.wav", AUDIO, "audio/wav")})
    upload = await read_upload(client(body).stream(), content_type, limit=MB)
    out: list[bytes] = []

    with pytest.raises(error):
        await pump(upload.body({}), out)
    await upload.aclose()

    assert out  # what had arrived was relayed before the failure
    assert isinstance(upload.error, UploadError)
    assert upload.error.code == ("client_gone" if error is ClientGone else "invalid_multipart")


async def test_it_records_a_body_that_grows_over_the_limit_while_streaming() -> None:
    content_type, body = encode({"model": "whisper-1"}, {"file": ("speech.wav", AUDIO, "audio/wav")})
    upload = await read_upload(Client(body, sizes=(1000,)).stream(), content_type, limit=len(body) - 1)

    with pytest.raises(BodyTooLarge) as caught:
        await collect(upload.body({}))
    await upload.aclose()

    assert upload.error is caught.value


async def test_it_lets_a_client_gone_before_the_model_through() -> None:
    content_type, body = encode({"language": "en", "model": "whisper-1"}, TINY_FILE)

    with pytest.raises(ClientGone):
        await read_upload(Client(body, sizes=(10,), gone_after=20).stream(), content_type, limit=MB)


async def test_it_relays_a_body_only_once() -> None:
    content_type, body = encode({"model": "whisper-1"}, TINY_FILE)
    upload = await read_upload(Client(body).stream(), content_type, limit=MB)
    await collect(upload.body({}))

    with pytest.raises(RuntimeError):
        await collect(upload.body({}))
    await upload.aclose()


def single_file(disposition: bytes, part_type: bytes | None = b"audio/wav") -> bytes:
    headers = b"Content-Disposition: " + disposition + b"\r\n"
    if part_type is not None:
        headers += b"Content-Type: " + part_type + b"\r\n"
    model = b'--b\r\nContent-Disposition: form-data; name="model"\r\n\r\nwhisper-1\r\n'
    return model + b"--b\r\n" + headers + b"\r\nRIFF\r\n--b--\r\n"


@pytest.mark.parametrize(
    ("disposition", "part_type", "expected"),
    [
        (b'form-data; name="file"; filename="a.wav"', b"audio/wav", b'name="file"; filename="a.wav"'),
        (b'form-data; name="file"; filename="say \\"hi\\".wav"', b"audio/wav", b'filename="say %22hi%22.wav"'),
        (b'form-data; name="file"; filename="say %22hi%22.wav"', b"audio/wav", b'filename="say %22hi%22.wav"'),
        (b'form-data; name="fi\nle"; filename="a\n.wav"', b"audio/wav", b'name="fi%0Ale"; filename="a%0A.wav"'),
        (b'form-data; name="file"; filename="a;b=c.wav"', b"audio/wav", b'filename="a;b=c.wav"'),
        (
            b'form-data; name="file"; filename="\xc3\xa9t\xc3\xa9.wav"',
            b"audio/wav",
            b'filename="\xc3\xa9t\xc3\xa9.wav"',
        ),
        (b'form-data; name="file"; filename=""', b"audio/wav", b'name="file"; filename=""'),
        (b'form-data; name="file"; filename="a.wav"', None, b"Content-Type: application/octet-stream"),
        (
            b'form-data; name="file"; filename="a.wav"',
            b"audio/wav\nX-Forged: 1",
            b"Content-Type: application/octet-stream",
        ),
    ],
    ids=["plain", "escaped-quotes", "browser-quotes", "line-feeds", "semicolon", "utf-8", "empty", "no-type", "forged"],
)
async def test_it_quotes_names_and_filenames_safely(
    disposition: bytes, part_type: bytes | None, expected: bytes
) -> None:
    upload, out = await relay(Client(single_file(disposition, part_type)), "multipart/form-data; boundary=b")

    file_head = out.split(b"\r\n\r\n")[1].split(b"\r\n", 2)[2]  # after the model's value and boundary
    assert expected in file_head
    assert b"X-Forged" not in out
    assert parse(upload.content_type, out)[-1].value == b"RIFF"


@pytest.mark.parametrize(
    ("messages", "chunks", "gone"),
    [
        ([{"type": "http.request", "body": b"abc"}], [b"abc"], False),
        (
            [
                {"type": "http.request", "body": b"ab", "more_body": True},
                {"type": "http.request", "body": b"", "more_body": True},
                {"type": "http.request", "body": b"c", "more_body": False},
            ],
            [b"ab", b"c"],
            False,
        ),
        ([{"type": "http.request", "body": b"a", "more_body": True}, {"type": "http.request"}], [b"a"], False),
        ([{"type": "http.request", "body": b"a", "more_body": True}, {"type": "http.disconnect"}], [b"a"], True),
    ],
    ids=["one-message", "several", "empty-end", "disconnect"],
)
async def test_it_turns_asgi_messages_into_chunks(
    messages: list[dict[str, Any]], chunks: list[bytes], gone: bool
) -> None:
    pending = iter(messages)

    async def receive() -> dict[str, Any]:
        return next(pending)

    got: list[bytes] = []
    if gone:
        with pytest.raises(ClientGone):
            await pump(receive_chunks(receive), got)
    else:
        got = await collect(receive_chunks(receive))

    assert got == chunks
    assert next(pending, None) is None  # nothing read past the end of the body


class MultipartSink:
    """A fake upstream on 127.0.0.1 that reads uploads with aiohttp's own multipart reader."""

    def __init__(self) -> None:
        self.received: list[list[Part]] = []
        app = web.Application()
        app.router.add_post("/v1/audio/transcriptions", self._transcribe)
        self.runner = web.AppRunner(app)

    async def start(self) -> str:
        await self.runner.setup()
        site = web.TCPSite(self.runner, "127.0.0.1", 0)
        await site.start()
        host, port = self.runner.addresses[0][:2]
        return f"http://{host}:{port}/v1/audio/transcriptions"

    async def _transcribe(self, request: web.Request) -> web.Response:
        parts: list[Part] = []
        reader = await request.multipart()
        while (part := await reader.next()) is not None:
            assert isinstance(part, aiohttp.BodyPartReader)
            content_type = part.headers.get("Content-Type") if part.filename is not None else None
            parts.append(Part(part.name or "", bytes(await part.read()), part.filename, content_type))
        self.received.append(parts)
        return web.json_response({"text": "ok"})


@pytest.fixture
async def sink() -> AsyncIterator[tuple[MultipartSink, str]]:
    server = MultipartSink()
    url = await server.start()
    yield server, url
    await server.runner.cleanup()


@pytest.mark.integration
async def test_it_relays_a_valid_chunked_upload_to_a_real_server(sink: tuple[MultipartSink, str]) -> None:
    server, url = sink
    files = [("file", ("speech.wav", AUDIO, "audio/wav")), ("model", (None, "whisper-1"))]
    content_type, body = encode({"language": "en", "timestamp_granularities[]": ["word", "segment"]}, files)
    upload = await read_upload(Client(body, sizes=(7, 4096)).stream(), content_type, limit=MB, memory=100)

    async with (
        aiohttp.ClientSession() as session,
        session.post(
            url, data=upload.body({"model": "provider-whisper"}), headers={"content-type": upload.content_type}
        ) as response,
    ):
        assert response.status == 200
    await upload.aclose()

    assert server.received == [replaced(parse(content_type, body), "model", "provider-whisper")]
    assert upload.error is None


@pytest.mark.integration
async def test_it_fails_the_upstream_request_when_the_client_body_goes_wrong(sink: tuple[MultipartSink, str]) -> None:
    server, url = sink
    content_type, body = encode({"model": "whisper-1"}, {"file": ("speech.wav", AUDIO, "audio/wav")})
    upload = await read_upload(Client(body, sizes=(1000,)).stream(), content_type, limit=len(body) // 2)

    async with aiohttp.ClientSession() as session:
        with pytest.raises(aiohttp.ClientConnectionError) as caught:
            await session.post(url, data=upload.body({}), headers={"content-type": upload.content_type})
    await upload.aclose()

    # The HTTP client reports a failed connection; the upload knows the real reason.
    assert isinstance(upload.error, BodyTooLarge)
    assert caught.value.__cause__ is upload.error
    assert server.received == []
