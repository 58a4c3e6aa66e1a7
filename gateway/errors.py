"""Portico's one exception tree, and the one place it becomes OpenAI's error shape.

    PorticoError                      any error a client may see
     ├── InvalidRequest          400  a parameter or the body is wrong (names `param`)
     │    └── BodyTooLarge       413
     ├── AuthenticationFailed    401  missing, malformed, unknown, revoked or expired key
     ├── NotFound                404  unknown URL
     │    └── ModelNotFound      404  unknown model, or one this key may not use
     ├── MethodNotAllowed        405
     ├── RateLimited             429  a requests, tokens or concurrency limit (type names which)
     ├── QuotaExceeded           429  a budget's hard limit (insufficient_quota)
     ├── LimitsUnavailable       503  the shared limiter is down and the operator chose to fail closed
     ├── InternalError           500  a bug in Portico; the cause is logged, never sent
     └── UpstreamError           the provider failed; status from the provider's answer
          ├── UpstreamTimeout    504
          └── UpstreamUnreachable 502  refused, reset or dropped connections

Each becomes `{"error": {"message", "type", "param", "code"}}` with its status,
both as an HTTP answer and, mid-stream, as an SSE `data:` frame that the
official SDKs raise as an APIError.
"""

from __future__ import annotations

from typing import Any

import orjson
from django.http import HttpResponse

from providers.adapters.base import UpstreamFailure


class PorticoError(Exception):
    status = 500
    type = "api_error"
    code: str | None = None

    def __init__(
        self,
        message: str,
        *,
        param: str | None = None,
        code: str | None = None,
        status: int | None = None,
        type: str | None = None,  # noqa: A002 - OpenAI's field name
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.param = param
        if code is not None:
            self.code = code
        if status is not None:
            self.status = status
        if type is not None:
            self.type = type
        self.headers = headers or {}

    def body(self) -> dict[str, Any]:
        return {"error": {"message": self.message, "type": self.type, "param": self.param, "code": self.code}}

    def to_json(self) -> bytes:
        return orjson.dumps(self.body())

    def to_sse(self) -> bytes:
        return b"data: " + self.to_json() + b"\n\n"


class InvalidRequest(PorticoError):
    status = 400
    type = "invalid_request_error"


class BodyTooLarge(InvalidRequest):
    status = 413
    code = "request_too_large"

    @classmethod
    def over(cls, limit: int) -> BodyTooLarge:
        return cls(f"The request body is larger than the {limit} bytes this server accepts.")


class AuthenticationFailed(PorticoError):
    status = 401
    type = "invalid_request_error"
    code = "invalid_api_key"


class NotFound(PorticoError):
    status = 404
    type = "invalid_request_error"


class ModelNotFound(NotFound):
    code = "model_not_found"

    def __init__(self, model: str) -> None:
        super().__init__(f"The model `{model}` does not exist or you do not have access to it.", param="model")


class MethodNotAllowed(PorticoError):
    status = 405
    type = "invalid_request_error"
    code = "method_not_allowed"


class RateLimited(PorticoError):
    status = 429
    type = "requests"
    code = "rate_limit_exceeded"


class QuotaExceeded(PorticoError):
    status = 429
    type = "insufficient_quota"
    code = "insufficient_quota"


class LimitsUnavailable(PorticoError):
    status = 503
    type = "api_error"
    code = "limiter_unavailable"


class InternalError(PorticoError):
    status = 500
    type = "api_error"
    code = "internal_error"


class UpstreamError(PorticoError):
    status = 502
    type = "api_error"

    @classmethod
    def from_failure(cls, failure: UpstreamFailure) -> UpstreamError:
        return cls(
            failure.message,
            status=failure.status,
            type=failure.type,
            code=failure.code,
            param=failure.param,
            headers=failure.headers,
        )


class UpstreamTimeout(UpstreamError):
    status = 504
    code = "upstream_timeout"


class UpstreamUnreachable(UpstreamError):
    status = 502
    code = "upstream_unreachable"


def error_response(exc: PorticoError) -> HttpResponse:
    """The HTTP answer for an error: its status, OpenAI's body, and any headers it carries (Retry-After)."""
    response = HttpResponse(exc.to_json(), status=exc.status, content_type="application/json")
    for name, value in exc.headers.items():
        response[name] = value
    return response
