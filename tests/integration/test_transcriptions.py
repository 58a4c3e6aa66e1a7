"""/v1/audio/transcriptions: a multipart upload streamed through to the provider, its answer relayed as sent."""

from __future__ import annotations

import hashlib
import random
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import openai
import pytest
from openai import OpenAI
from openai.types.audio import Transcription, TranscriptionVerbose

from providers.models import ModelRoute, Provider
from providers.tests.factories import make_route
from tenants.tests.factories import IssuedKey
from tests.fakes.openai_upstream import Fail, FakeUpstream, Reply
from tests.integration.conftest import SMALL_UPLOAD_BYTES, Personas
from tests.servers import MAX_BODY_BYTES, PorticoServer, Settle

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("committed_db")]

TRANSCRIPT = "The stale smell of old beer lingers"
AUDIO_BYTES = 3 * 1024 * 1024  # far above the servers' JSON body limit, well below the upload limit


@pytest.fixture
def route(upstream: FakeUpstream, upstream_provider: Provider, tag: str, key: IssuedKey, settle: Settle) -> ModelRoute:
    route = make_route(
        provider=upstream_provider,
        public_id=f"whisper-{tag}",
        upstream_model=f"whisper-fake-{tag}",
        supports_chat=False,
        supports_transcription=True,
    )
    upstream.script(route.upstream_model, Reply(TRANSCRIPT))
    settle()
    return route


def _audio(path: Path, size: int) -> Path:
    path.write_bytes(random.Random(size).randbytes(size))
    return path


@pytest.fixture
def speech(tmp_path: Path) -> Path:
    return _audio(tmp_path / "speech.mp3", AUDIO_BYTES)


def _multipart(portico: PorticoServer, key: IssuedKey, *, fields: dict[str, str], audio: bytes) -> Any:
    return portico.http.post(
        "/v1/audio/transcriptions",
        data=fields,
        files={"file": ("speech.wav", audio, "audio/wav")},
        headers={"Authorization": f"Bearer {key.plaintext}"},
    )


def _file_first(model: str, audio: bytes) -> tuple[bytes, str]:
    """A multipart body with the file before the model, as `curl -F file=@… -F model=…` sends it; its content type."""
    head = b'--edge\r\nContent-Disposition: form-data; name="file"; filename="late.mp3"\r\n'
    head += b"Content-Type: audio/mpeg\r\n\r\n"
    tail = f'\r\n--edge\r\nContent-Disposition: form-data; name="model"\r\n\r\n{model}\r\n--edge--\r\n'.encode()
    return head + audio + tail, "multipart/form-data; boundary=edge"


def _chunks(body: bytes, size: int = 64 * 1024) -> Iterator[bytes]:
    for start in range(0, len(body), size):
        yield body[start : start + size]


def test_a_large_upload_reaches_the_upstream_byte_for_byte_with_the_upstream_model(
    client: OpenAI, upstream: FakeUpstream, route: ModelRoute, key: IssuedKey, upstream_credential: str, speech: Path
) -> None:
    assert AUDIO_BYTES > MAX_BODY_BYTES
    with speech.open("rb") as audio:
        transcription = client.audio.transcriptions.create(
            model=route.public_id, file=audio, language="en", prompt="Portico", temperature=0.2
        )

    assert isinstance(transcription, Transcription)
    assert transcription.text == TRANSCRIPT
    [received] = upstream.received(route.upstream_model)
    assert received.path == "/v1/audio/transcriptions"
    assert received.body == {"model": route.upstream_model, "language": "en", "prompt": "Portico", "temperature": "0.2"}
    [sent] = received.files
    assert (sent.field, sent.filename, sent.size) == ("file", "speech.mp3", AUDIO_BYTES)
    assert sent.sha256 == hashlib.sha256(speech.read_bytes()).hexdigest()
    assert received.headers["content-type"].startswith("multipart/form-data; boundary=")
    assert received.headers["authorization"] == f"Bearer {upstream_credential}"
    assert key.plaintext not in repr(received)


@pytest.mark.parametrize(
    ("response_format", "content_type", "expected"),
    [
        ("text", "text/plain", f"{TRANSCRIPT}\n"),
        ("srt", "text/plain", f"1\n00:00:00,000 --> 00:00:02,500\n{TRANSCRIPT}\n\n"),
        ("vtt", "text/plain", f"WEBVTT\n\n00:00:00.000 --> 00:00:02.500\n{TRANSCRIPT}\n\n"),
        ("json", "application/json", Transcription),
        ("verbose_json", "application/json", TranscriptionVerbose),
    ],
)
def test_every_response_format_comes_back_as_the_upstream_sent_it(
    client: OpenAI,
    route: ModelRoute,
    tmp_path: Path,
    response_format: str,
    content_type: str,
    expected: str | type,
) -> None:
    # Word timestamps come only with verbose_json.
    options = {"timestamp_granularities": ["word", "segment"]} if response_format == "verbose_json" else {}

    with _audio(tmp_path / "short.ogg", 40_000).open("rb") as audio:
        raw = client.audio.transcriptions.with_raw_response.create(
            model=route.public_id, file=audio, response_format=response_format, **options
        )

    assert raw.headers["content-type"].split(";")[0] == content_type
    parsed = raw.parse()
    if isinstance(expected, str):
        assert parsed == expected
        return
    assert isinstance(parsed, expected)
    assert parsed.text == TRANSCRIPT
    if isinstance(parsed, TranscriptionVerbose):
        assert (parsed.language, parsed.duration) == ("english", 2.5)
        assert parsed.segments is not None
        assert parsed.segments[0].text == f" {TRANSCRIPT}"
        assert [word.word for word in parsed.words or ()] == TRANSCRIPT.split()


def test_an_upload_over_the_upload_limit_is_refused_with_413(
    small_upload_portico: PorticoServer,
    upstream: FakeUpstream,
    route: ModelRoute,
    key: IssuedKey,
    settle: Settle,
) -> None:
    settle(small_upload_portico)
    fields = {"model": route.public_id}

    small = _multipart(small_upload_portico, key, fields=fields, audio=b"\1" * (SMALL_UPLOAD_BYTES // 2))
    large = _multipart(small_upload_portico, key, fields=fields, audio=b"\1" * (SMALL_UPLOAD_BYTES * 2))
    # Refused while spooling, before the model is known, rather than while streaming to the upstream.
    body, content_type = _file_first(route.public_id, b"\1" * (SMALL_UPLOAD_BYTES * 2))
    large_first = small_upload_portico.http.post(
        "/v1/audio/transcriptions",
        content=body,
        headers={"Authorization": f"Bearer {key.plaintext}", "Content-Type": content_type},
    )

    assert small.status_code == 200, small.text
    for refused in (large, large_first):
        assert refused.status_code == 413
        assert refused.json()["error"]["code"] == "request_too_large"
        assert str(SMALL_UPLOAD_BYTES) in refused.json()["error"]["message"]
    # Only the upload under the limit reached the upstream whole.
    assert [r.files[0].size for r in upstream.received(route.upstream_model)] == [SMALL_UPLOAD_BYTES // 2]


def test_a_file_sent_before_the_model_and_without_a_length_still_arrives_whole(
    portico: PorticoServer, upstream: FakeUpstream, route: ModelRoute, key: IssuedKey, speech: Path
) -> None:
    audio = speech.read_bytes()
    body, content_type = _file_first(route.public_id, audio)

    # A generator body goes out chunked: Portico cannot know its size before it has read it all.
    response = portico.http.post(
        "/v1/audio/transcriptions",
        content=_chunks(body),
        headers={"Authorization": f"Bearer {key.plaintext}", "Content-Type": content_type},
        timeout=30,
    )

    assert response.status_code == 200, response.text
    assert response.json()["text"] == TRANSCRIPT
    [received] = upstream.received(route.upstream_model)
    assert received.body == {"model": route.upstream_model}
    assert [(f.filename, f.size, f.sha256) for f in received.files] == [
        ("late.mp3", len(audio), hashlib.sha256(audio).hexdigest())
    ]


def test_an_upload_without_a_model_is_refused_by_name(
    portico: PorticoServer, key: IssuedKey, route: ModelRoute
) -> None:
    response = _multipart(portico, key, fields={"response_format": "json"}, audio=b"RIFF")

    assert response.status_code == 400
    assert response.json()["error"] == {
        "message": "Missing required parameter: 'model'.",
        "type": "invalid_request_error",
        "param": "model",
        "code": "missing_required_parameter",
    }


@pytest.mark.parametrize("kind", ["anthropic", "ollama", "openai"])
def test_a_route_that_cannot_transcribe_refuses_the_upload(
    request: pytest.FixtureRequest,
    client: OpenAI,
    upstream_provider: Provider,
    tag: str,
    settle: Settle,
    tmp_path: Path,
    kind: str,
) -> None:
    # Anthropic and Ollama take no audio, whatever the route says; the OpenAI route is not flagged.
    provider = upstream_provider if kind == "openai" else request.getfixturevalue(f"{kind}_provider")
    route = make_route(
        provider=provider,
        public_id=f"stt-{kind}-{tag}",
        upstream_model=f"stt-{kind}-{tag}",
        supports_transcription=kind != "openai",
    )
    settle()

    with _audio(tmp_path / "a.wav", 1000).open("rb") as audio, pytest.raises(openai.BadRequestError) as caught:
        client.audio.transcriptions.create(model=route.public_id, file=audio)

    assert (caught.value.code, caught.value.param) == ("unsupported_capability", "model")
    assert caught.value.body["message"] == f"The model `{route.public_id}` does not support audio transcription."


def test_an_upstream_refusal_of_the_file_reaches_the_client_as_openais(
    client: OpenAI, upstream: FakeUpstream, route: ModelRoute, tmp_path: Path
) -> None:
    message = "Invalid file format. Supported formats: ['flac', 'm4a', 'mp3', 'mp4', 'mpeg', 'mpga', 'oga', 'ogg']"
    upstream.script(route.upstream_model, Fail(400, message))

    with _audio(tmp_path / "a.txt", 1000).open("rb") as audio, pytest.raises(openai.BadRequestError) as caught:
        client.audio.transcriptions.create(model=route.public_id, file=audio)

    assert caught.value.body["message"] == message


def test_only_the_tenant_the_model_is_restricted_to_may_call_it(
    portico: PorticoServer,
    upstream: FakeUpstream,
    route: ModelRoute,
    personas: Callable[..., Personas],
    settle: Settle,
    tmp_path: Path,
    speech: Path,
) -> None:
    people = personas(route)
    settle()
    audio = _audio(tmp_path / "a.flac", 10_000)

    for member in (people.owner, people.teammate):
        with portico.client(member.plaintext) as sdk, audio.open("rb") as file:
            assert sdk.audio.transcriptions.create(model=route.public_id, file=file).text == TRANSCRIPT
    # Refused as soon as the model is read, megabytes of the upload still to come: the answer must still arrive.
    with (
        portico.client(people.outsider.plaintext) as sdk,
        speech.open("rb") as file,
        pytest.raises(openai.NotFoundError) as caught,
    ):
        sdk.audio.transcriptions.create(model=route.public_id, file=file)

    assert (caught.value.code, caught.value.param) == ("model_not_found", "model")
    assert len(upstream.received(route.upstream_model)) == 2
