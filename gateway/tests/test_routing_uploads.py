"""An upload received whole before the routing loop tries a deployment, so that each attempt can send it again.

What each attempt sends is parsed again and compared part by part with what the
client sent (the helpers of test_uploads.py); the end-to-end failover, through a
server and the official SDK, is tests/integration/test_upload_failover.py.
"""

from __future__ import annotations

import pytest

from gateway.errors import BodyTooLarge
from gateway.fastpath import ClientGone
from gateway.tests.test_uploads import (
    AUDIO,
    FIELDS,
    MB,
    TINY_FILE,
    Client,
    collect,
    encode,
    parse,
    random_sizes,
    replaced,
)
from gateway.uploads import UploadError, read_upload


@pytest.mark.parametrize("model_first", [True, False], ids=["model-first", "file-first"])
@pytest.mark.parametrize("memory", [100, MB], ids=["spooled-to-disk", "in-memory"])
async def test_a_received_upload_is_sent_whole_as_often_as_asked(model_first: bool, memory: int) -> None:
    files = [("file", ("speech.wav", AUDIO, "audio/wav"))]
    if model_first:
        content_type, body = encode(FIELDS, files)
    else:
        content_type, body = encode({"language": "de"}, [*files, ("model", (None, "whisper-1"))])
    client = Client(body + b"\r\nan epilogue, which is dropped", sizes=random_sizes(3))
    upload = await read_upload(client.stream(), content_type, limit=MB, memory=memory)

    await upload.receive()
    sent = [b"".join(await collect(upload.body({"model": f"provider-{turn}"}))) for turn in range(3)]
    await upload.aclose()

    assert client.sent == len(client.body)  # all of it read before the first attempt
    for turn, out in enumerate(sent):
        assert parse(upload.content_type, out) == replaced(parse(content_type, body), "model", f"provider-{turn}")
    assert upload._spool.closed


async def test_an_upload_that_grows_past_the_limit_is_refused_before_any_attempt() -> None:
    content_type, body = encode({"model": "whisper-1"}, {"file": ("a.wav", AUDIO * 10, "audio/wav")})
    upload = await read_upload(Client(body, sizes=(1000,)).stream(), content_type, limit=len(body) - 1)

    with pytest.raises(BodyTooLarge) as caught:
        await upload.receive()
    await upload.aclose()

    assert caught.value.status == 413
    assert caught.value.message == f"The request body is larger than the {len(body) - 1} bytes this server accepts."


async def test_an_upload_cut_short_or_abandoned_is_refused_before_any_attempt() -> None:
    content_type, body = encode({"model": "whisper-1"}, TINY_FILE)
    truncated = await read_upload(Client(body[:-10]).stream(), content_type, limit=MB)
    abandoned = await read_upload(Client(body, sizes=(10,), gone_after=len(body) // 2).stream(), content_type, limit=MB)

    with pytest.raises(UploadError) as caught:
        await truncated.receive()
    with pytest.raises(ClientGone):
        await abandoned.receive()
    await truncated.aclose()
    await abandoned.aclose()

    assert caught.value.code == "invalid_multipart"
    assert abandoned.error is not None
    assert abandoned.error.status == 499
