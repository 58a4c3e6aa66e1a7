from __future__ import annotations

import io

import orjson
import pytest

from batches.jsonl import physical_lines, read_line

CHAT = "/v1/chat/completions"


def line(**fields: object) -> bytes:
    request = {"custom_id": "a", "method": "POST", "url": CHAT, "body": {"model": "m", "messages": []}}
    request.update(fields)
    return orjson.dumps({key: value for key, value in request.items() if value is not None}) + b"\n"


def test_it_reads_a_valid_line() -> None:
    read = read_line(1, line(), CHAT, {}, 1000)
    assert read is not None
    assert (read.custom_id, read.model, read.error_code) == ("a", "m", "")
    assert orjson.loads(read.body) == {"model": "m", "messages": []}


@pytest.mark.parametrize(
    ("raw", "code"),
    [
        (b"{not json\n", "invalid_json_line"),
        (b"[1, 2]\n", "invalid_json_line"),
        (line(custom_id=None), "missing_required_parameter"),
        (line(custom_id="x" * 513), "invalid_value"),
        (line(method="GET"), "invalid_method"),
        (line(url="/v1/embeddings"), "invalid_url"),
        (line(body=None), "missing_required_parameter"),
        (line(body="hello"), "missing_required_parameter"),
    ],
)
def test_it_reports_a_line_it_cannot_run(raw: bytes, code: str) -> None:
    read = read_line(7, raw, CHAT, {}, 100_000)
    assert read is not None
    assert read.error_code == code
    assert read.error_message.startswith("Line 7: ")
    assert read.body == b""


def test_a_repeated_custom_id_fails_the_later_line_only() -> None:
    seen: dict[str, int] = {}
    first, second = read_line(1, line(), CHAT, seen, 1000), read_line(2, line(), CHAT, seen, 1000)
    assert first is not None
    assert second is not None
    assert first.error_code == ""
    assert second.error_code == "duplicate_custom_id"
    assert "line 1" in second.error_message


def test_blank_lines_are_skipped_and_long_ones_reported_without_being_held() -> None:
    data = line() + b"\n   \n" + b"x" * 5000 + b"\n" + line(custom_id="b")
    lines = list(physical_lines(io.BytesIO(data), 1000))
    assert [number for number, _ in lines] == [1, 2, 3, 4, 5]
    assert lines[3][1] is None
    assert read_line(2, lines[1][1], CHAT, {}, 1000) is None
    too_long = read_line(4, None, CHAT, {}, 1000)
    assert too_long is not None
    assert too_long.error_code == "line_too_large"
