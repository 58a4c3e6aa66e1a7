"""Gemini's error answers, in OpenAI's terms.

Gemini answers errors as Google APIs do: `{"error": {"code": 429, "message": "…", "status":
"RESOURCE_EXHAUSTED", "details": [...]}}`, as an HTTP error answer or, rarely, as an event inside a
stream. The canonical `status` decides, whatever HTTP status a proxy in between gave the answer:

    INVALID_ARGUMENT, FAILED_PRECONDITION, OUT_OF_RANGE   400 invalid_request_error
    UNAUTHENTICATED, PERMISSION_DENIED                    502 upstream_auth_error (the gateway's key)
    INVALID_ARGUMENT with reason API_KEY_INVALID          502 upstream_auth_error (Gemini's answer to a bad key)
    NOT_FOUND                                             404 model_not_found
    RESOURCE_EXHAUSTED                                    429 rate_limit_exceeded, retry-after from RetryInfo
    INTERNAL, UNKNOWN, CANCELLED                          502 api_error
    UNAVAILABLE                                           503 api_error
    DEADLINE_EXCEEDED                                     504 api_error
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from typing import Any

import orjson

from providers.adapters.failures import UpstreamFailure
from providers.adapters.wire import openai_failure
from providers.redaction import NO_SECRETS, Redactor

# Google's canonical error statuses and the HTTP status each comes with.
STATUS_CODES = {
    "INVALID_ARGUMENT": 400,
    "FAILED_PRECONDITION": 400,
    "OUT_OF_RANGE": 400,
    "UNAUTHENTICATED": 401,
    "PERMISSION_DENIED": 403,
    "NOT_FOUND": 404,
    "ALREADY_EXISTS": 409,
    "ABORTED": 409,
    "RESOURCE_EXHAUSTED": 429,
    # The request was canceled upstream, not by Portico's client: an upstream failure, not a 499.
    "CANCELLED": 502,
    "INTERNAL": 500,
    "UNKNOWN": 500,
    "DATA_LOSS": 500,
    "NOT_IMPLEMENTED": 501,
    "UNAVAILABLE": 503,
    "DEADLINE_EXCEEDED": 504,
}
# Reasons (in `details`) Gemini gives a 400 that is really a refused key.
_KEY_REASONS = frozenset({"API_KEY_INVALID", "API_KEY_SERVICE_BLOCKED", "API_KEY_HTTP_REFERRER_BLOCKED"})
_RETRY_INFO = "type.googleapis.com/google.rpc.RetryInfo"
_QUOTA_FAILURE = "type.googleapis.com/google.rpc.QuotaFailure"


def gemini_failure(
    status: int, payload: bytes, headers: Mapping[str, str], *, redactor: Redactor = NO_SECRETS
) -> UpstreamFailure:
    """A Gemini error answer, mapped to what Portico tells its client."""
    error = error_object(payload)
    status = STATUS_CODES.get(str(error.get("status")), status)
    if _reason(error) in _KEY_REASONS:
        status = 401
    answered = {name.lower(): value for name, value in headers.items()}
    delay = _retry_delay(error)
    if status == 429 and delay and "retry-after" not in answered:
        answered["retry-after"] = delay  # Gemini says when to come back in the body only
    # Only the message goes to the shared mapping: Gemini's numeric `code` and its status name mean
    # nothing to OpenAI clients, which read `type` and `code` as OpenAI's own.
    shared = {"message": error.get("message"), "type": "tokens" if _tokens_spent(error) else None}
    failure = openai_failure(status, orjson.dumps({"error": shared}), answered, redactor=redactor)
    if status == 404:
        return dataclasses.replace(failure, code="model_not_found")
    if failure.status < 500 and failure.status != 429:
        return dataclasses.replace(failure, type="invalid_request_error")
    return failure


def stream_error(error: Any, *, redactor: Redactor = NO_SECRETS) -> bytes:
    """The OpenAI error payload for an error a stream carried instead of an answer."""
    error = error if isinstance(error, dict) else {}
    code = error.get("code")
    status = code if isinstance(code, int) and code >= 400 else 500
    failure = gemini_failure(status, orjson.dumps({"error": error}), {}, redactor=redactor)
    return orjson.dumps(
        {"error": {"message": failure.message, "type": failure.type, "param": None, "code": failure.code}}
    )


def error_object(payload: bytes) -> dict[str, Any]:
    try:
        body = orjson.loads(payload)
    except orjson.JSONDecodeError:
        return {}
    # Some Google front ends answer with a list holding the error object.
    if isinstance(body, list) and body and isinstance(body[0], dict):
        body = body[0]
    error = body.get("error") if isinstance(body, dict) else None
    return error if isinstance(error, dict) else {}


def _details(error: dict[str, Any]) -> list[dict[str, Any]]:
    details = error.get("details")
    return [item for item in details if isinstance(item, dict)] if isinstance(details, list) else []


def _reason(error: dict[str, Any]) -> str:
    return next((str(item["reason"]) for item in _details(error) if item.get("reason")), "")


def _retry_delay(error: dict[str, Any]) -> str:
    """Seconds to wait from a RetryInfo detail (`"retryDelay": "17s"`, or "0.5s"), rounded up; "" if none."""
    for item in _details(error):
        if item.get("@type") == _RETRY_INFO and isinstance(item.get("retryDelay"), str):
            try:
                seconds = float(item["retryDelay"].removesuffix("s"))
            except ValueError:
                return ""
            return str(max(1, math.ceil(seconds))) if math.isfinite(seconds) else ""
    return ""


def _tokens_spent(error: dict[str, Any]) -> bool:
    """Whether a quota failure names a token quota rather than a request one."""
    for item in _details(error):
        if item.get("@type") != _QUOTA_FAILURE:
            continue
        for violation in item.get("violations") or ():
            if isinstance(violation, dict) and "token" in str(violation.get("quotaMetric", "")).lower():
                return True
    return False
