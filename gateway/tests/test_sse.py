"""EventSplitter: events come out whole however the bytes were cut on the way."""

from __future__ import annotations

from collections.abc import AsyncGenerator

import pytest

from gateway.sse import DONE, EventStream, frame
from providers.adapters.framing import EventSplitter, LineSplitter

STREAM = (
    b'data: {"id":"1","choices":[{"delta":{"content":"Hel"}}]}\n\n'
    b": keep-alive comment\n\n"
    b"event: message\nid: 7\nretry: 1000\n"
    b'data: {"id":"2","choices":[{"delta":{"content":"lo"}}]}\n\n'
    b"data: [DONE]\n\n"
)
EVENTS = [
    b'{"id":"1","choices":[{"delta":{"content":"Hel"}}]}',
    b'{"id":"2","choices":[{"delta":{"content":"lo"}}]}',
    b"[DONE]",
]


def feed_all(chunks: list[bytes]) -> tuple[list[bytes], bytes]:
    splitter = EventSplitter()
    events = [event for chunk in chunks for event in splitter.feed(chunk)]
    return events, splitter.pending


def byte_by_byte(stream: bytes) -> list[bytes]:
    return [stream[i : i + 1] for i in range(len(stream))]


def test_it_splits_a_stream_fed_whole() -> None:
    assert feed_all([STREAM]) == (EVENTS, b"")


def test_it_splits_a_stream_fed_byte_by_byte() -> None:
    assert feed_all(byte_by_byte(STREAM)) == (EVENTS, b"")


@pytest.mark.parametrize("cut", range(1, len(STREAM)))
def test_it_splits_a_stream_cut_anywhere_in_two(cut: int) -> None:
    assert feed_all([STREAM[:cut], STREAM[cut:]]) == (EVENTS, b"")


CRLF_STREAM = STREAM.replace(b"\n", b"\r\n")


def test_it_understands_crlf_line_endings() -> None:
    assert feed_all([CRLF_STREAM]) == (EVENTS, b"")


def test_it_understands_crlf_fed_byte_by_byte() -> None:
    assert feed_all(byte_by_byte(CRLF_STREAM)) == (EVENTS, b"")


@pytest.mark.parametrize("cut", range(1, len(CRLF_STREAM)))
def test_it_understands_crlf_cut_anywhere_in_two(cut: int) -> None:
    assert feed_all([CRLF_STREAM[:cut], CRLF_STREAM[cut:]]) == (EVENTS, b"")


def test_it_joins_a_crlf_whose_cr_ends_one_chunk_and_lf_starts_the_next() -> None:
    splitter = EventSplitter()

    assert splitter.feed(b"data: first\r\n\r") == []
    assert splitter.feed(b"\ndata: second\r") == [b"first"]
    assert splitter.feed(b"\n\r\n") == [b"second"]
    assert splitter.pending == b""


def test_it_keeps_an_unfinished_event_until_its_blank_line() -> None:
    splitter = EventSplitter()

    assert splitter.feed(b'data: {"a":') == []
    assert splitter.feed(b"1}\n") == []
    assert splitter.pending == b'data: {"a":1}\n'
    assert splitter.feed(b"\n") == [b'{"a":1}']


def test_it_joins_multi_line_data_with_newlines() -> None:
    assert feed_all([b"data: first line\ndata: second line\ndata:third\n\n"]) == (
        [b"first line\nsecond line\nthird"],
        b"",
    )


def test_it_removes_only_one_space_after_the_colon() -> None:
    assert feed_all([b"data:  indented\n\n"]) == ([b" indented"], b"")


@pytest.mark.parametrize(
    "block",
    [b": ping\n\n", b"event: ping\n\n", b"id: 3\n\n", b"retry: 500\n\n", b"\n\n"],
    ids=["comment", "event", "id", "retry", "blank"],
)
def test_it_drops_events_that_carry_no_data(block: bytes) -> None:
    assert feed_all([block, b"data: x\n\n"]) == ([b"x"], b"")


def test_it_passes_done_through_as_its_data() -> None:
    assert feed_all([b"data: [DONE]\n\n"]) == ([b"[DONE]"], b"")


def test_it_frames_data_as_one_event() -> None:
    assert frame(b'{"a":1}') == b'data: {"a":1}\n\n'
    assert DONE == b"data: [DONE]\n\n"
    assert feed_all([frame(b'{"a":1}') + DONE]) == ([b'{"a":1}', b"[DONE]"], b"")


async def test_closing_an_event_stream_that_never_started_still_releases_its_source() -> None:
    released: list[str] = []
    finished: list[str] = []

    async def events() -> AsyncGenerator[bytes]:
        try:
            yield b"data: never sent\n\n"
        finally:
            finished.append("generator")

    async def release() -> None:
        released.append("upstream")

    stream = EventStream(events(), release=release)
    await stream.aclose()

    assert released == ["upstream"]
    assert finished == []  # a generator closed before it started never runs its finally: hence release


@pytest.mark.parametrize(
    ("chunks", "lines", "tail"),
    [
        ([b'{"a":1}\n{"b":2}\n'], [b'{"a":1}', b'{"b":2}'], []),
        ([b'{"a"', b':1}\n\n{"b"', b":2}"], [b'{"a":1}'], [b'{"b":2}']),
        ([b'{"a":1}\r\n', b"  \n"], [b'{"a":1}'], []),
    ],
    ids=["whole-lines", "split-and-unterminated", "crlf-and-blank"],
)
def test_the_line_splitter_yields_each_complete_line_and_the_unterminated_tail(
    chunks: list[bytes], lines: list[bytes], tail: list[bytes]
) -> None:
    splitter = LineSplitter()

    assert [line for chunk in chunks for line in splitter.feed(chunk)] == lines
    assert splitter.flush() == tail
    assert splitter.flush() == []
