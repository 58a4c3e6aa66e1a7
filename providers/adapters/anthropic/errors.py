"""Anthropic's error answers, in OpenAI's terms.

Anthropic answers errors as `{"type": "error", "error": {"type": "overloaded_error", "message": "…"}}`,
the same shape whether it comes as an HTTP error answer or as an `error` event inside a stream.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

import orjson

from providers.adapters.base import UpstreamFailure
from providers.adapters.wire import openai_failure
from providers.redaction import NO_SECRETS, Redactor

# The HTTP status each error type comes with; an error inside a stream carries only its type.
ERROR_STATUS = {
    "invalid_request_error": 400,
    "authentication_error": 401,
    "billing_error": 402,
    "permission_error": 403,
    "not_found_error": 404,
    "request_too_large": 413,
    "rate_limit_error": 429,
    "api_error": 500,
    "timeout_error": 504,
    "overloaded_error": 529,
}
OVERLOADED = 529


def anthropic_failure(
    status: int, payload: bytes, headers: Mapping[str, str], *, redactor: Redactor = NO_SECRETS
) -> UpstreamFailure:
    """An Anthropic error answer, mapped to what Portico tells its client (`retry-after` passed on)."""
    if _error_type(payload) == "overloaded_error":
        status = OVERLOADED  # whatever status a proxy in between gave it
    if status == 402:
        # Portico's Anthropic account is out of credit: like a refused key, nothing the client can fix.
        return UpstreamFailure(
            status=502,
            message="The upstream provider refused to bill the gateway's account; an operator must check the provider.",
            type="api_error",
            code="upstream_billing_error",
            reason="upstream_billing_error",
        )
    failure = openai_failure(status, payload, headers, redactor=redactor)
    if failure.code == "upstream_auth_error":
        return failure
    if failure.status == 429:
        return failure  # already OpenAI's rate-limit shape (providers.adapters.wire.rate_limit_failure)
    code = None
    if failure.status < 500:
        # Anthropic's own names (not_found_error, request_too_large) mean nothing to OpenAI clients.
        error_type = "invalid_request_error"
    else:
        error_type = "api_error"
        if status == OVERLOADED:
            code = "overloaded"
    return dataclasses.replace(failure, type=error_type, code=code, param=None)


def stream_error(error: Any, *, redactor: Redactor = NO_SECRETS) -> bytes:
    """The OpenAI error payload for an `error` event's `error` object."""
    error = error if isinstance(error, dict) else {}
    status = ERROR_STATUS.get(str(error.get("type")), 500)
    failure = anthropic_failure(status, orjson.dumps({"error": error}), {}, redactor=redactor)
    return orjson.dumps(
        {"error": {"message": failure.message, "type": failure.type, "param": None, "code": failure.code}}
    )


def _error_type(payload: bytes) -> str | None:
    try:
        body = orjson.loads(payload)
    except orjson.JSONDecodeError:
        return None
    error = body.get("error") if isinstance(body, dict) else None
    return str(error.get("type")) if isinstance(error, dict) else None
