"""Replicate's error answers, in OpenAI's terms.

Replicate answers an HTTP error with a problem document (`application/problem+json`):
`{"title": "Input validation failed", "detail": "- input.prompt: …", "status": 422}`. A prediction
that fails after it was accepted is no HTTP error at Replicate (its status is `failed`, its
`error` says why); Portico's prediction transport hands it on as an error answer carrying the
prediction itself, so that it is mapped here, as one, and retried elsewhere like any upstream
failure.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

import orjson

from providers.adapters.failures import UpstreamFailure
from providers.adapters.wire import openai_failure
from providers.redaction import NO_SECRETS, Redactor

# The status the prediction transport gives a prediction that failed or was canceled.
FAILED_PREDICTION_STATUS = 500


def replicate_failure(
    status: int, payload: bytes, headers: Mapping[str, str], *, redactor: Redactor = NO_SECRETS
) -> UpstreamFailure:
    body = _object(payload)
    if isinstance(body.get("status"), str):
        return _failed_prediction(body, redactor)
    if status == 402:
        # The account is out of credit or at its spend limit: nothing the client can fix.
        return UpstreamFailure(
            status=502,
            message="The upstream provider refused to bill the gateway's account; an operator must check the provider.",
            type="api_error",
            code="upstream_billing_error",
            reason="upstream_billing_error",
        )
    detail = body.get("detail") or body.get("title")
    message = {"error": {"message": str(detail)}} if detail else {}
    failure = openai_failure(status, orjson.dumps(message), headers, redactor=redactor)
    if failure.code in ("upstream_auth_error", "rate_limit_exceeded"):
        return failure  # already OpenAI's shape for a refused credential or a rate limit
    if failure.status >= 500:
        return dataclasses.replace(failure, type="api_error", code=None, param=None)
    code = "model_not_found" if status == 404 else None
    return dataclasses.replace(failure, type="invalid_request_error", code=code, param=None)


def stream_error(data: bytes, *, redactor: Redactor = NO_SECRETS) -> bytes:
    """The OpenAI error payload for a stream's `error` event (`{"detail": "…"}`)."""
    body = _object(data)
    detail = body.get("detail") or body.get("error") or "the prediction failed while it was streaming"
    message = redactor.text(f"The upstream provider failed: {detail}")
    return orjson.dumps({"error": {"message": message, "type": "api_error", "param": None, "code": None}})


def _failed_prediction(prediction: dict[str, Any], redactor: Redactor) -> UpstreamFailure:
    if prediction.get("status") == "canceled":
        message = "The upstream provider failed: the prediction was canceled before it finished."
    else:
        error = prediction.get("error") or "the prediction failed"
        message = redactor.text(f"The upstream provider failed: {error}")
    return UpstreamFailure(status=502, message=message, type="api_error")


def _object(payload: bytes) -> dict[str, Any]:
    try:
        body = orjson.loads(payload)
    except orjson.JSONDecodeError:
        return {}
    return body if isinstance(body, dict) else {}
