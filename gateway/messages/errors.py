"""Portico's errors in Anthropic's shape: `{"type": "error", "error": {"type": ..., "message": ...}}`.

The Messages surface raises the same exception tree as the OpenAI one (gateway.errors); only the body
differs. An answer keeps its status and headers (Retry-After, the rate-limit headers) and names the
Anthropic error type of that status. Inside a stream there is no status: an OpenAI error frame (the
relay's own, or an upstream's) is read back by its type and code.

    status  Anthropic type              status  Anthropic type
    400     invalid_request_error       429     rate_limit_error
    401     authentication_error        500     api_error (502 too)
    402     billing_error               503     overloaded_error (529 too)
    403     permission_error            504     timeout_error
    404     not_found_error             other   invalid_request_error below 500, api_error above
    413     request_too_large
"""

from __future__ import annotations

from typing import Any

import orjson
from django.http import HttpResponse

from gateway.errors import PorticoError

_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    402: "billing_error",
    403: "permission_error",
    404: "not_found_error",
    413: "request_too_large",
    429: "rate_limit_error",
    500: "api_error",
    502: "api_error",
    503: "overloaded_error",
    504: "timeout_error",
    529: "overloaded_error",
}
# An OpenAI error frame's code or type, as the Anthropic type a stream's `error` event carries.
_FRAME_CODES = {
    "upstream_timeout": "timeout_error",
    "overloaded": "overloaded_error",
    "no_deployment_available": "overloaded_error",
    "rate_limit_exceeded": "rate_limit_error",
    "insufficient_quota": "rate_limit_error",
}
_FRAME_TYPES = {
    "invalid_request_error": "invalid_request_error",
    "rate_limit_error": "rate_limit_error",
    "requests": "rate_limit_error",
    "tokens": "rate_limit_error",
}


def error_type(status: int) -> str:
    found = _TYPES.get(status)
    if found is not None:
        return found
    return "invalid_request_error" if status < 500 else "api_error"


def error_body(kind: str, message: str) -> dict[str, Any]:
    return {"type": "error", "error": {"type": kind, "message": message}}


def error_response(exc: PorticoError) -> HttpResponse:
    """The HTTP answer for an error: its status and headers, Anthropic's body."""
    content = orjson.dumps(error_body(error_type(exc.status), exc.message))
    response = HttpResponse(content, status=exc.status, content_type="application/json")
    for name, value in exc.headers.items():
        response[name] = value
    return response


def error_from_frame(payload: bytes) -> dict[str, Any]:
    """The Anthropic `error` event for an OpenAI error frame's payload (`{"error": {...}}`)."""
    try:
        error = orjson.loads(payload).get("error")
    except (orjson.JSONDecodeError, AttributeError):
        error = None
    if not isinstance(error, dict):
        return error_body("api_error", "The stream failed.")
    code, kind = str(error.get("code") or ""), str(error.get("type") or "")
    anthropic_type = _FRAME_CODES.get(code) or _FRAME_TYPES.get(kind) or "api_error"
    return error_body(anthropic_type, str(error.get("message") or "The stream failed."))
