"""Cohere's error answers, in OpenAI's terms.

Cohere answers errors as `{"message": "…"}` (sometimes with an `id`), with the meaning in the
HTTP status. Besides the usual statuses it has 498 (the key is invalid), 499 (the request was
cancelled) and 402 (the account cannot pay). A generation can also fail after a 200: a whole answer,
or a stream's `message-end` event, whose finish reason is ERROR or TIMEOUT (`failed_generation`).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

import orjson

from providers.adapters.failures import UpstreamFailure
from providers.adapters.wire import openai_failure
from providers.redaction import NO_SECRETS, Redactor

# Cohere's "invalid token": a refused key, whatever it is called.
INVALID_TOKEN = 498
CANCELLED = 499


def cohere_failure(
    status: int, payload: bytes, headers: Mapping[str, str], *, redactor: Redactor = NO_SECRETS
) -> UpstreamFailure:
    """A Cohere error answer, mapped to what Portico tells its client (`retry-after` passed on)."""
    if status == 402:
        # Portico's Cohere account cannot pay: like a refused key, nothing the client can fix.
        return UpstreamFailure(
            status=502,
            message="The upstream provider refused to bill the gateway's account; an operator must check the provider.",
            type="api_error",
            code="upstream_billing_error",
            reason="upstream_billing_error",
        )
    if status == INVALID_TOKEN:
        status = 401
    elif status == CANCELLED:
        status = 502  # Cohere gave up on the request: for the client it is the upstream that failed
    failure = openai_failure(status, payload, headers, redactor=redactor)
    if status == 404 and failure.code is None:
        # Cohere's 404 on chat or embed is a model it does not serve.
        return dataclasses.replace(failure, code="model_not_found")
    return failure


def failed_generation(reason: str, detail: Any, *, redactor: Redactor = NO_SECRETS) -> UpstreamFailure:
    """A generation Cohere ended with a failed finish reason (ERROR, TIMEOUT): the upstream's fault, so a 502."""
    said = detail if isinstance(detail, str) and detail else f"the generation ended with {reason}."
    return UpstreamFailure(status=502, message=redactor.text(f"The upstream provider failed: {said}"), type="api_error")


def stream_error(failure: UpstreamFailure) -> bytes:
    """OpenAI's error payload for a stream Cohere ended with a failure."""
    error = {"message": failure.message, "type": failure.type, "param": failure.param, "code": failure.code}
    return orjson.dumps({"error": error})
