"""The management API's one request parser: JSON whose strings hold no control characters.

Postgres refuses NUL in text, so a NUL that reached a query or a row was a
500; other control characters have no business in names and model ids either.
Checking the parsed body once here covers every field of every endpoint.
"""

from __future__ import annotations

import re
from typing import Any

from rest_framework.exceptions import ParseError
from rest_framework.parsers import JSONParser

# C0 controls but tab, newline and carriage return; DEL.
_CONTROL = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")


def _has_control_characters(value: Any) -> bool:
    if isinstance(value, str):
        return _CONTROL.search(value) is not None
    if isinstance(value, dict):
        return any(_has_control_characters(key) or _has_control_characters(item) for key, item in value.items())
    if isinstance(value, list):
        return any(_has_control_characters(item) for item in value)
    return False


class PlainTextJSONParser(JSONParser):
    def parse(self, stream: Any, media_type: str | None = None, parser_context: Any = None) -> Any:
        data = super().parse(stream, media_type, parser_context)
        if _has_control_characters(data):
            raise ParseError("Strings in the request body may not contain control characters.")
        return data
