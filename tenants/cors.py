"""Which browser origins a tenant's keys may be used from (docs/cors.md).

A tenant lists exact origins (`https://app.example.com`, a port if it is not the
scheme's default); `*` stands for any origin, and is accepted only where the
operator sets PORTICO_CORS_ALLOW_ANY, since it lets every web page spend the
tenant's keys once a key leaks into one.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

from django.conf import settings
from django.core.exceptions import ValidationError

ANY_ORIGIN = "*"


def any_origin_allowed() -> bool:
    return bool(settings.PORTICO_CORS_ALLOW_ANY)


def origin_problem(origin: Any) -> str | None:
    """Why `origin` is not an exact origin a browser would send, or None if it is one."""
    if not isinstance(origin, str) or not origin:
        return "an origin must be a non-empty text"
    if origin == ANY_ORIGIN:
        return None if any_origin_allowed() else "`*` is allowed only when PORTICO_CORS_ALLOW_ANY is true"
    if origin != origin.strip() or not origin.isascii():
        return f"{origin!r} is not an origin"
    try:
        parts = urlsplit(origin)
        parts.port  # noqa: B018 - raises on a malformed port
    except ValueError:
        return f"{origin!r} is not an origin"
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return f"{origin!r} is not an origin: it needs http:// or https:// and a host"
    if parts.path or parts.query or parts.fragment or parts.username or parts.password:
        return f"{origin!r} is not an origin: no path, query or credentials (as in https://app.example.com)"
    if origin != origin.lower():
        return f"{origin!r} is not an origin as a browser sends it: write it in lower case"
    return None


def validate_cors_origins(value: Any) -> None:
    """The model field's validator: a list of distinct origins."""
    if not isinstance(value, list):
        raise ValidationError("Expected a list of origins.")
    problems = [problem for problem in map(origin_problem, value) if problem]
    if problems:
        raise ValidationError(problems)
    if len(set(value)) != len(value):
        raise ValidationError("An origin is listed twice.")


def usable_origins(origins: list[str]) -> frozenset[str]:
    """What the hot path matches against: `*` falls away if the operator has since turned it off."""
    found = frozenset(origins)
    return found - {ANY_ORIGIN} if ANY_ORIGIN in found and not any_origin_allowed() else found
