"""Reading a batch's input file: OpenAI's request lines, checked one by one.

Each line must be a JSON object with a `custom_id` unique in the file, `method`
POST, the batch's endpoint as `url`, and an object `body`:

    {"custom_id": "request-1", "method": "POST", "url": "/v1/chat/completions", "body": {"model": ..., ...}}

A line that is not is reported (in the error file, counted as failed) and the
others still run; whether the body is a valid request for its endpoint is
checked when the line runs, as for a live request. Blank lines are skipped.
Pure: bytes in, values out.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import BinaryIO

import orjson

MAX_CUSTOM_ID = 512
_READ = 64 * 1024


@dataclass(frozen=True, slots=True)
class RequestLine:
    number: int  # in the file, from 1
    custom_id: str | None
    body: bytes = b""  # the request body, as JSON; empty when the line is invalid
    model: str = ""
    error_code: str = ""
    error_message: str = ""


def physical_lines(handle: BinaryIO, limit: int) -> Iterator[tuple[int, bytes | None]]:
    """Each line of the file and its number; None for a line longer than `limit` bytes (never held whole)."""
    number = 0
    while True:
        line = handle.readline(limit + 1)
        if not line:
            return
        number += 1
        if len(line) > limit and not line.endswith(b"\n"):
            while (rest := handle.readline(_READ)) and not rest.endswith(b"\n"):
                pass
            yield number, None
            continue
        yield number, line


def _invalid(number: int, custom_id: str | None, code: str, message: str) -> RequestLine:
    # The message may quote the line (its url), and is kept in a text column, which on Postgres takes no NUL.
    return RequestLine(
        number, custom_id, error_code=code, error_message=f"Line {number}: {message}".replace("\x00", "\ufffd")
    )


def read_line(number: int, raw: bytes | None, endpoint: str, seen: dict[str, int], limit: int) -> RequestLine | None:
    """The line checked; None for a blank one. `seen` holds the custom ids of earlier lines and their numbers."""
    if raw is None:
        return _invalid(number, None, "line_too_large", f"the line is longer than the {limit} bytes allowed.")
    if not raw.strip():
        return None
    try:
        request = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return _invalid(number, None, "invalid_json_line", "this line is not parseable as valid JSON.")
    if not isinstance(request, dict):
        return _invalid(number, None, "invalid_json_line", "this line is not a JSON object.")
    custom_id = request.get("custom_id")
    if not isinstance(custom_id, str) or not custom_id:
        return _invalid(number, None, "missing_required_parameter", "missing required parameter 'custom_id'.")
    if len(custom_id) > MAX_CUSTOM_ID:
        return _invalid(number, None, "invalid_value", f"'custom_id' is longer than {MAX_CUSTOM_ID} characters.")
    if "\x00" in custom_id:  # kept in a text column, which on Postgres takes no NUL; and it comes back as sent
        return _invalid(number, None, "invalid_value", "'custom_id' may not contain NUL characters.")
    if custom_id in seen:
        message = f"the custom_id '{custom_id}' is not unique: line {seen[custom_id]} has it too."
        return _invalid(number, custom_id, "duplicate_custom_id", message)
    seen[custom_id] = number
    if request.get("method") != "POST":
        return _invalid(number, custom_id, "invalid_method", "'method' must be 'POST'.")
    if request.get("url") != endpoint:
        message = f"the URL '{request.get('url')}' does not match the batch's endpoint '{endpoint}'."
        return _invalid(number, custom_id, "invalid_url", message)
    body = request.get("body")
    if not isinstance(body, dict):
        return _invalid(number, custom_id, "missing_required_parameter", "missing required parameter 'body'.")
    model = body.get("model")
    # The batch keeps its first line's model as text, which on Postgres takes no NUL.
    named = model if isinstance(model, str) and "\x00" not in model else ""
    return RequestLine(number, custom_id, orjson.dumps(body), named)
