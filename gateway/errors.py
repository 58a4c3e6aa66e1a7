"""Portico's one exception tree, and the one place it becomes OpenAI's error shape.

    PorticoError                      any error a client may see
     ├── InvalidRequest          400  a parameter or the body is wrong (names `param`)
     │    ├── BodyTooLarge       413
     │    ├── RequestTimeout     408  headers or body too slow to arrive (answered by the server protocol)
     │    └── HeadersTooLarge    431  request line and headers over their size or count bound
     ├── AuthenticationFailed    401  missing, malformed, unknown, revoked or expired key
     ├── NotFound                404  unknown URL
     │    └── ModelNotFound      404  unknown model, or one this key may not use
     ├── MethodNotAllowed        405
     ├── RateLimited             429  a requests, tokens or concurrency limit (type names which)
     ├── QuotaExceeded           429  a budget's hard limit (insufficient_quota)
     ├── LimitsUnavailable       503  the shared limiter is down and the operator chose to fail closed
     ├── ServerBusy              503  the process is at its connection bound (refused before the request is read)
     ├── InternalError           500  a bug in Portico; the cause is logged, never sent
     └── UpstreamError           the provider failed; status from the provider's answer
          ├── UpstreamTimeout    504
          ├── UpstreamUnreachable 502  refused, reset or dropped connections
          └── NoDeployment       503  every deployment of the model is resting (breaker open, rate-limited)

Each becomes `{"error": {"message", "type", "param", "code"}}` with its status,
both as an HTTP answer and, mid-stream, as an SSE `data:` frame that the
official SDKs raise as an APIError.
"""

from __future__ import annotations

from typing import Any

import orjson
from django.db import InterfaceError, OperationalError
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

    @property
    def classification(self) -> str:
        """What the ledger records as the error's type: always a name Portico chose."""
        return self.code or self.type

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


class RequestTimeout(InvalidRequest):
    status = 408
    code = "request_timeout"


class HeadersTooLarge(InvalidRequest):
    status = 431
    code = "request_header_fields_too_large"


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


class DatabaseUnavailable(PorticoError):
    """The database cannot be reached (a refused or dropped connection, a pool that stayed empty): the client may
    try again shortly. Only those errors (UNREACHABLE): any other database error is a bug, and stays a 500."""

    status = 503
    type = "api_error"
    code = "database_unavailable"

    def __init__(self) -> None:
        super().__init__("The database is unavailable right now; try again shortly.", headers={"Retry-After": "1"})


UNREACHABLE = (OperationalError, InterfaceError)


class ServerBusy(PorticoError):
    status = 503
    type = "server_error"
    code = "server_busy"


class InternalError(PorticoError):
    status = 500
    type = "server_error"  # OpenAI's type for its own 500s
    code = "internal_error"


class UpstreamError(PorticoError):
    status = 502
    type = "api_error"
    # Portico's own diagnosis, when it made one (see `UpstreamFailure.reason`).
    reason = ""
    # Seconds the deployment asked to be left alone (Retry-After, or rate-limit headers saying it is spent).
    cool_down = 0.0

    @classmethod
    def from_failure(cls, failure: UpstreamFailure) -> UpstreamError:
        error = cls(
            failure.message,
            status=failure.status,
            type=failure.type,
            code=failure.code,
            param=failure.param,
            headers=failure.headers,
        )
        error.reason = failure.reason
        return error

    @property
    def classification(self) -> str:
        # `code` and `type` may be the upstream's own text: the ledger gets Portico's words instead.
        own = type(self).code or self.reason
        if own:
            return own
        if self.status == 429:
            return "upstream_rate_limited"
        if self.status < 500:
            return "upstream_invalid_request"
        if self.status == 503:
            return "upstream_unavailable"
        return "upstream_error"


class UpstreamTimeout(UpstreamError):
    status = 504
    code = "upstream_timeout"


class UpstreamUnreachable(UpstreamError):
    status = 502
    code = "upstream_unreachable"


class NoDeployment(UpstreamError):
    status = 503
    code = "no_deployment_available"

    def __init__(self, model: str) -> None:
        super().__init__(f"No deployment of the model `{model}` is available right now; please retry shortly.")


def error_response(exc: PorticoError) -> HttpResponse:
    """The HTTP answer for an error: its status, OpenAI's body, and any headers it carries (Retry-After)."""
    response = HttpResponse(exc.to_json(), status=exc.status, content_type="application/json")
    for name, value in exc.headers.items():
        response[name] = value
    return response
