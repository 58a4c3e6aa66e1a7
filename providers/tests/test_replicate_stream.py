"""Replicate's named server-sent events in, OpenAI chunks out: exact sequences."""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from providers.adapters.base import Target
from providers.adapters.replicate import ReplicateAdapter
from providers.adapters.replicate.stream import NamedEventSplitter, ReplicateStream
from providers.redaction import Redactor
from providers.tests.factories import make_provider_info
from tests.openai_schemas import assert_valid

CREATED = 1721680408


def translator(*, include_usage: bool = False, redactor: Redactor | None = None) -> ReplicateStream:
    return ReplicateStream(
        "house-model",
        include_usage=include_usage,
        created=CREATED,
        completion_id="chatcmpl-test",
        redactor=redactor or Redactor(()),
    )


def chunk(delta: dict[str, Any], finish: str | None = None) -> dict[str, Any]:
    return {
        "id": "chatcmpl-test",
        "object": "chat.completion.chunk",
        "created": CREATED,
        "model": "house-model",
        "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}],
    }


def run(stream: ReplicateStream, raw: bytes, *, pieces: int = 1) -> list[dict[str, Any]]:
    """Feed `raw` split into `pieces` parts, as a network may split it."""
    splitter = NamedEventSplitter()
    size = max(1, len(raw) // pieces)
    out: list[dict[str, Any]] = []
    for start in range(0, len(raw), size):
        for event in splitter.feed(raw[start : start + size]):
            out.extend(orjson.loads(payload) for payload in stream.feed(event))
    return out


REPLY = (
    b"event: output\nid: 1690212292:0\ndata: Hello\n\n"
    b"event: output\nid: 1690212292:1\ndata:  there\n\n"
    b": a comment to keep the connection open\n\n"
    b"event: output\nid: 1690212292:2\ndata: ,\ndata: friend\n\n"
    b"event: done\ndata: {}\n\n"
)
ROLE = chunk({"role": "assistant", "content": ""})


@pytest.mark.parametrize("pieces", [1, 7, len(REPLY)])
def test_output_events_become_content_deltas_however_the_bytes_are_split(pieces: int) -> None:
    stream = translator()

    chunks = run(stream, REPLY, pieces=pieces)

    assert chunks == [
        ROLE,
        chunk({"content": "Hello"}),
        chunk({"content": " there"}),  # one space goes with the colon, the piece keeps its own
        chunk({"content": ",\nfriend"}),
        chunk({}, "stop"),
    ]
    assert (stream.done, stream.failed, stream.usage) == (True, False, None)
    for each in chunks:
        assert_valid("CreateChatCompletionStreamResponse", each)


def test_crlf_framing_reads_as_lf() -> None:
    assert run(translator(), REPLY.replace(b"\n", b"\r\n"), pieces=5) == run(translator(), REPLY)


def test_with_usage_asked_for_every_chunk_says_null_and_the_gateway_adds_its_count() -> None:
    chunks = run(translator(include_usage=True), REPLY)

    assert all(each["usage"] is None for each in chunks)
    assert chunks[-1]["choices"][0]["finish_reason"] == "stop"


def test_a_stream_with_no_output_still_opens_and_stops() -> None:
    stream = translator()

    assert run(stream, b"event: done\ndata: {}\n\n") == [ROLE, chunk({}, "stop")]
    assert stream.done


def test_an_error_event_is_an_error_payload_and_the_done_after_it_adds_nothing() -> None:
    stream = translator()
    raw = (
        b"event: output\ndata: Once\n\n"
        b'event: error\ndata: {"detail": "CUDA out of memory"}\n\n'
        b'event: done\ndata: {"reason": "error"}\n\n'
    )

    chunks = run(stream, raw)

    assert chunks[:2] == [ROLE, chunk({"content": "Once"})]
    assert chunks[2:] == [
        {
            "error": {
                "message": "The upstream provider failed: CUDA out of memory",
                "type": "api_error",
                "param": None,
                "code": None,
            }
        }
    ]
    assert (stream.failed, stream.done) == (True, False)


def test_a_canceled_prediction_fails_the_stream() -> None:
    stream = translator()

    chunks = run(stream, b'event: output\ndata: Hi\n\nevent: done\ndata: {"reason": "canceled"}\n\n')

    assert chunks[:2] == [ROLE, chunk({"content": "Hi"})]
    assert chunks[2]["error"]["message"] == (
        "The upstream provider failed: the prediction was canceled before it finished."
    )
    assert (stream.failed, stream.done) == (True, False)


def test_secrets_quoted_in_a_stream_are_redacted() -> None:
    secret = "r8_SECRETSECRETSECRET0123"
    raw = f'event: output\ndata: my key is {secret}\n\nevent: error\ndata: {{"detail": "{secret}"}}\n\n'.encode()

    chunks = run(translator(redactor=Redactor([secret])), raw)

    assert secret not in orjson.dumps(chunks).decode()
    assert chunks[1]["choices"][0]["delta"]["content"] == "my key is [redacted]"


def test_a_cut_off_event_is_not_relayed() -> None:
    splitter = NamedEventSplitter()

    assert splitter.feed(b"event: output\ndata: Hel") == []
    assert splitter.flush() == []


def test_the_adapter_hands_the_relay_this_splitter_and_translator() -> None:
    adapter = ReplicateAdapter()
    target = Target(make_provider_info(kind="replicate"), "meta/llama", "house-model")

    assert isinstance(adapter.splitter(), NamedEventSplitter)
    assert isinstance(adapter.stream_translator("chat", target, include_usage=True), ReplicateStream)
