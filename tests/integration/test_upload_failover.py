"""Uploads fail over like JSON calls: the official SDK's transcription still gets an answer when a deployment fails.

A public transcription model on the fleet's loopback upstreams, its first
deployment in trouble (a 500, a refused connection, a 429 with Retry-After).
Portico receives the upload whole into a spool (RAM, then a temporary file)
and sends it again to the next deployment, which gets every byte. The server
here runs with a temporary directory of its own, so the test can see, in the
server process's open files, that a spool on disk exists while an upload is
received and is gone once the call is over, whatever its outcome; and with an
upload limit of a few MiB, so the 413 needs no large file.
"""

from __future__ import annotations

import hashlib
import os
import random
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest

from billing.models import UsageRecord
from tenants.tests.factories import IssuedKey
from tests.conftest import Deploy
from tests.fakes.behaviours import Fail, Script, rate_limited
from tests.fakes.fleet import FakeFleet, refused_base_url
from tests.servers import PorticoServer, Settle

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("committed_db")]

UPLOAD_LIMIT = 3 * 1024 * 1024
AUDIO = random.Random(7).randbytes(int(1.5 * 1024 * 1024))  # past the spool's 1 MiB in memory: it goes to disk
SPOOL_WITHIN = 5.0
LEDGER_WITHIN = 10.0


@pytest.fixture(scope="module")
def spool_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("upload-spool")


@pytest.fixture(scope="module")
def server(
    server_env: dict[str, str], spool_dir: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[PorticoServer]:
    env = {**server_env, "TMPDIR": str(spool_dir), "PORTICO_MAX_UPLOAD_BYTES": str(UPLOAD_LIMIT)}
    portico = PorticoServer(env=env, log_path=tmp_path_factory.mktemp("portico-uploads") / "server.log")
    try:
        portico.start()
        yield portico
    finally:
        portico.stop()


def spooled_files(server: PorticoServer, spool_dir: Path) -> list[str]:
    """The files the server process holds open in its temporary directory (a spool gone to disk)."""
    found = []
    for fd in Path(f"/proc/{server.pid}/fd").iterdir():
        try:
            target = os.readlink(fd)
        except OSError:  # closed meanwhile
            continue
        if target.startswith(str(spool_dir)):
            found.append(target)
    return found


def no_spool_left(server: PorticoServer, spool_dir: Path) -> bool:
    deadline = time.monotonic() + SPOOL_WITHIN
    while spooled_files(server, spool_dir):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.02)
    return True


@pytest.fixture
def model(deploy: Deploy, upstreams: FakeFleet, settle: Settle, server: PorticoServer, tag: str) -> Any:
    def make(first: Script | None) -> tuple[str, str]:
        upstream_model = f"whisper-{tag}"
        urls = [upstream.base_url for upstream in upstreams]
        if first is None:
            urls[0] = refused_base_url()
        else:
            upstreams[0].script(upstream_model, first)
        public = f"whisper-fo-{tag}"
        deploy(public, upstream_model, urls=urls, supports_chat=False, supports_transcription=True)
        settle(server)
        return public, upstream_model

    return make


def ledger_row(request_id: str) -> UsageRecord:
    deadline = time.monotonic() + LEDGER_WITHIN
    while (row := UsageRecord.objects.filter(client_request_id=request_id).first()) is None:
        assert time.monotonic() < deadline, f"no ledger row for {request_id}"
        time.sleep(0.05)
    return row


TROUBLE: dict[str, Script | None] = {
    "500s": Fail(500, "upstream exploded", type="server_error"),
    "refused connections": None,  # its provider points at a port that refuses
    "429 with Retry-After": rate_limited(30),
}


@pytest.mark.parametrize("trouble", list(TROUBLE))
def test_the_next_deployment_transcribes_the_whole_upload_when_the_first_fails(
    server: PorticoServer,
    key: IssuedKey,
    upstreams: FakeFleet,
    model: Any,
    spool_dir: Path,
    tmp_path: Path,
    trouble: str,
) -> None:
    public, upstream_model = model(TROUBLE[trouble])
    audio = tmp_path / "speech.mp3"
    audio.write_bytes(AUDIO)

    with server.client(key.plaintext) as client, audio.open("rb") as file:
        raw = client.audio.transcriptions.with_raw_response.create(
            model=public, file=file, language="en", extra_headers={"x-request-id": f"up-{trouble}"}
        )

    assert raw.parse().text == "served by fake-2"
    assert raw.headers["x-portico-attempts"] == "2"
    assert raw.headers["x-portico-provider"].startswith("fake-2-")
    [received] = upstreams[1].received(upstream_model)
    assert received.body == {"model": upstream_model, "language": "en"}
    [sent] = received.files
    assert (sent.filename, sent.size, sent.sha256) == ("speech.mp3", len(AUDIO), hashlib.sha256(AUDIO).hexdigest())
    if trouble != "refused connections":  # the first deployment was sent every byte too, before it failed
        assert [f.sha256 for r in upstreams[0].received(upstream_model) for f in r.files] == [sent.sha256]
    assert upstreams[2].received(upstream_model) == []
    row = ledger_row(f"up-{trouble}")
    assert (row.status, row.attempts, row.operation) == (200, 2, "transcriptions")
    assert no_spool_left(server, spool_dir)


def test_a_deployment_that_said_retry_after_is_left_alone_by_the_next_upload(
    server: PorticoServer, key: IssuedKey, upstreams: FakeFleet, model: Any, tmp_path: Path
) -> None:
    public, upstream_model = model(rate_limited(30))
    audio = tmp_path / "short.wav"
    audio.write_bytes(AUDIO[:10_000])

    with server.client(key.plaintext) as client:
        attempts = []
        for _ in range(2):
            with audio.open("rb") as file:
                raw = client.audio.transcriptions.with_raw_response.create(model=public, file=file)
            attempts.append(raw.headers["x-portico-attempts"])

    assert attempts == ["2", "1"]
    assert len(upstreams[0].received(upstream_model)) == 1


def test_an_upload_over_the_limit_still_gets_the_413_and_reaches_no_deployment(
    server: PorticoServer, key: IssuedKey, upstreams: FakeFleet, model: Any, spool_dir: Path, tmp_path: Path
) -> None:
    public, upstream_model = model(Fail(500, "upstream exploded", type="server_error"))
    audio = tmp_path / "long.mp3"
    audio.write_bytes(AUDIO * 3)

    with (
        server.client(key.plaintext) as client,
        audio.open("rb") as file,
        pytest.raises(openai.APIStatusError) as caught,
    ):
        client.audio.transcriptions.create(model=public, file=file)

    assert caught.value.status_code == 413
    assert caught.value.body["code"] == "request_too_large"
    assert (
        caught.value.body["message"] == f"The request body is larger than the {UPLOAD_LIMIT} bytes this server accepts."
    )
    assert upstreams.received(upstream_model) == []
    assert no_spool_left(server, spool_dir)


def test_the_spool_is_on_disk_while_the_upload_arrives_and_gone_once_it_is_answered(
    server: PorticoServer, key: IssuedKey, model: Any, spool_dir: Path
) -> None:
    public, _ = model(Fail(500, "upstream exploded", type="server_error"))
    boundary = "spool-edge"
    head = (
        f'--{boundary}\r\nContent-Disposition: form-data; name="model"\r\n\r\n{public}\r\n'
        f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="a.mp3"\r\n'
        "Content-Type: audio/mpeg\r\n\r\n"
    ).encode()
    tail = f"\r\n--{boundary}--\r\n".encode()
    halfway = threading.Event()
    go_on = threading.Event()

    def body() -> Iterator[bytes]:
        yield head + AUDIO
        halfway.set()
        go_on.wait(timeout=30)
        yield AUDIO[:1000] + tail

    answer: list[httpx.Response] = []

    def upload() -> None:
        answer.append(
            httpx.post(
                server.url("/v1/audio/transcriptions"),
                content=body(),
                headers={
                    "Authorization": f"Bearer {key.plaintext}",
                    "Content-Type": f"multipart/form-data; boundary={boundary}",
                },
                timeout=30,
            )
        )

    sender = threading.Thread(target=upload)
    sender.start()
    try:
        assert halfway.wait(timeout=10)
        deadline = time.monotonic() + SPOOL_WITHIN
        while not spooled_files(server, spool_dir):
            assert time.monotonic() < deadline, "no spool file while 1.5 MiB of the upload had arrived"
            time.sleep(0.02)
    finally:
        go_on.set()
        sender.join(timeout=30)

    assert answer[0].status_code == 200, answer[0].text
    assert answer[0].json()["text"] == "served by fake-2"
    assert no_spool_left(server, spool_dir)
