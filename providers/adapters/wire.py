"""Small pieces of OpenAI's wire format that several adapters share."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

import orjson

from providers.adapters.base import UpstreamFailure
from providers.redaction import NO_SECRETS, Redactor

# Upstream status -> (status Portico answers with, OpenAI error type).
_STATUS_MAP: dict[int, tuple[int, str]] = {
    400: (400, "invalid_request_error"),
    404: (404, "invalid_request_error"),
    409: (409, "invalid_request_error"),
    413: (413, "invalid_request_error"),
    422: (400, "invalid_request_error"),
    429: (429, "rate_limit_error"),
    500: (502, "api_error"),
    502: (502, "api_error"),
    503: (503, "api_error"),
    504: (504, "api_error"),
    529: (503, "api_error"),
}
_PASSED_HEADERS = ("retry-after", "retry-after-ms")


# The first `"model": "…"` member of a body. Inside a JSON string every quote is escaped, so this can only
# match a key, and in OpenAI's bodies and chunks the first such key is the top-level one.
_MODEL_MEMBER = re.compile(rb'"model"(\s*):(\s*)"(?:[^"\\]|\\.)*"')


def model_rewriter(public_model: str) -> Callable[[bytes], bytes]:
    """A function giving a body or chunk the public model id, whatever name the upstream answered with.

    Upstreams often answer with a dated name (`gpt-4o` -> `gpt-4o-2024-08-06`), so the value is
    replaced whatever it is. Working on bytes saves a parse and a dump per stream chunk, and a
    chunk that already names the public id (the usual case) is passed on untouched.
    """
    public = orjson.dumps(public_model)
    already = (b'"model":' + public, b'"model": ' + public)

    def rewrite(payload: bytes) -> bytes:
        if already[0] in payload or already[1] in payload:
            return payload
        return _MODEL_MEMBER.sub(lambda match: b'"model"' + match[1] + b":" + match[2] + public, payload, count=1)

    return rewrite


def rewrite_model(payload: bytes, public_model: str) -> bytes:
    return model_rewriter(public_model)(payload)


def openai_failure(status: int, payload: bytes, headers: Any, *, redactor: Redactor = NO_SECRETS) -> UpstreamFailure:
    """An OpenAI-style upstream error answer, mapped to what Portico tells its client.

    Every field the upstream wrote (message, type, param, code) is redacted, not only the message:
    an upstream may quote the request's credential or headers in any of them.
    """
    passed = {name: redactor.text(headers[name]) for name in _PASSED_HEADERS if name in headers}
    if status in (401, 403):
        # The upstream refused *Portico's* credential: the client can do nothing about it,
        # and the upstream's message may quote part of that credential.
        return UpstreamFailure(
            status=502,
            message="The upstream provider refused the gateway's credentials; an operator must check the provider.",
            type="api_error",
            code="upstream_auth_error",
            headers=passed,
            reason="upstream_auth_error",
        )
    mapped_status, default_type = _STATUS_MAP.get(status, (502 if status >= 500 else 400, "api_error"))
    error = _error_object(payload)

    def field(name: str) -> str | None:
        value = error.get(name)
        return None if value is None else redactor.text(str(value))

    message = field("message") or f"The upstream provider answered with HTTP {status}."
    if mapped_status >= 500:
        message = f"The upstream provider failed: {message}"
    return UpstreamFailure(
        status=mapped_status,
        message=message,
        type=(field("type") or default_type) if mapped_status < 500 else default_type,
        code=field("code"),
        param=field("param"),
        headers=passed,
    )


def _error_object(payload: bytes) -> dict[str, Any]:
    try:
        body = orjson.loads(payload)
    except orjson.JSONDecodeError:
        return {}
    if isinstance(body, dict):
        error = body.get("error")
        if isinstance(error, dict):
            return error
        if isinstance(error, str):
            return {"message": error}
        if isinstance(body.get("message"), str):
            return {"message": body["message"]}
    return {}


def openai_model_ids(payload: bytes) -> list[str]:
    """The ids of an OpenAI model list; ValueError if the payload is not one."""
    try:
        body = orjson.loads(payload)
        return [str(item["id"]) for item in body["data"]]
    except (orjson.JSONDecodeError, KeyError, TypeError) as exc:
        raise ValueError("not an OpenAI model list") from exc
