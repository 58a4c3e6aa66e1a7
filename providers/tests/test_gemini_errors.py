"""The Gemini adapter's error mapping: Google's error answers in, OpenAI's statuses, types and codes out."""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from providers.adapters.gemini import GeminiAdapter
from providers.redaction import Redactor
from providers.tests.factories import UPSTREAM_CREDENTIAL as CREDENTIAL

ADAPTER = GeminiAdapter()


def google_error(code: int, status: str, message: str = "Something went wrong.", details: Any = None) -> bytes:
    error: dict[str, Any] = {"code": code, "message": message, "status": status}
    if details is not None:
        error["details"] = details
    return orjson.dumps({"error": error})


CASES = [
    pytest.param(400, "INVALID_ARGUMENT", 400, "invalid_request_error", None, id="invalid-argument"),
    pytest.param(400, "FAILED_PRECONDITION", 400, "invalid_request_error", None, id="failed-precondition"),
    pytest.param(401, "UNAUTHENTICATED", 502, "api_error", "upstream_auth_error", id="unauthenticated"),
    pytest.param(403, "PERMISSION_DENIED", 502, "api_error", "upstream_auth_error", id="permission-denied"),
    pytest.param(404, "NOT_FOUND", 404, "invalid_request_error", "model_not_found", id="not-found"),
    pytest.param(429, "RESOURCE_EXHAUSTED", 429, "requests", "rate_limit_exceeded", id="resource-exhausted"),
    pytest.param(500, "INTERNAL", 502, "api_error", None, id="internal"),
    # Gemini gave up on the request itself: the client did nothing wrong, so it is not a 4xx.
    pytest.param(499, "CANCELLED", 502, "api_error", None, id="cancelled"),
    pytest.param(503, "UNAVAILABLE", 503, "api_error", None, id="unavailable"),
    pytest.param(504, "DEADLINE_EXCEEDED", 504, "api_error", None, id="deadline-exceeded"),
    # A proxy between Portico and Google may change the HTTP status: Google's own status name decides.
    pytest.param(502, "RESOURCE_EXHAUSTED", 429, "requests", "rate_limit_exceeded", id="status-name-wins"),
]


@pytest.mark.parametrize(("http", "name", "status", "kind", "code"), CASES)
def test_each_google_status_maps_to_openais(http: int, name: str, status: int, kind: str, code: str | None) -> None:
    failure = ADAPTER.failure(http, google_error(http, name), {})

    assert (failure.status, failure.type, failure.code, failure.param) == (status, kind, code, None)
    if code != "upstream_auth_error":
        assert "Something went wrong." in failure.message


def test_a_bad_key_that_gemini_answers_with_400_is_the_gateways_credential_problem() -> None:
    details = [{"@type": "type.googleapis.com/google.rpc.ErrorInfo", "reason": "API_KEY_INVALID"}]
    payload = google_error(400, "INVALID_ARGUMENT", "API key not valid. Please pass a valid API key.", details)

    failure = ADAPTER.failure(400, payload, {})

    assert (failure.status, failure.code, failure.reason) == (502, "upstream_auth_error", "upstream_auth_error")
    assert "API key" not in failure.message


@pytest.mark.parametrize(
    ("details", "headers", "retry_after", "kind"),
    [
        pytest.param(
            [
                {
                    "@type": "type.googleapis.com/google.rpc.QuotaFailure",
                    "violations": [{"quotaMetric": "x/input_token_count"}],
                },
                {"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": "41.2s"},
            ],
            {},
            "42",
            "tokens",
            id="token-quota-with-retry-info",
        ),
        pytest.param(
            [{"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": "0.2s"}],
            {},
            "1",
            "requests",
            id="sub-second-delay-rounds-up",
        ),
        pytest.param(
            [{"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": "41s"}],
            {"Retry-After": "5"},
            "5",
            "requests",
            id="a-header-wins",
        ),
        pytest.param(
            [{"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": "soon"}],
            {},
            None,
            "requests",
            id="unreadable",
        ),
    ],
)
def test_a_rate_limit_passes_on_when_to_come_back(
    details: list[dict[str, Any]], headers: dict[str, str], retry_after: str | None, kind: str
) -> None:
    failure = ADAPTER.failure(429, google_error(429, "RESOURCE_EXHAUSTED", "Quota exceeded.", details), headers)

    assert (failure.status, failure.type, failure.code) == (429, kind, "rate_limit_exceeded")
    assert failure.headers.get("retry-after") == retry_after


@pytest.mark.parametrize(
    "payload",
    [b"<html>Bad Gateway</html>", b"", b'{"error": "plain"}', b'[{"error": {"code": 503, "status": "UNAVAILABLE"}}]'],
)
def test_an_answer_that_is_not_googles_error_shape_still_gets_a_message(payload: bytes) -> None:
    failure = ADAPTER.failure(503, payload, {})

    assert (failure.status, failure.type) == (503, "api_error")
    assert failure.message.startswith("The upstream provider failed:")


def test_every_field_is_redacted_of_the_providers_key() -> None:
    payload = google_error(400, "INVALID_ARGUMENT", f"Bad request with key={CREDENTIAL}")

    failure = ADAPTER.failure(400, payload, {"retry-after": CREDENTIAL}, redactor=Redactor([CREDENTIAL]))

    assert CREDENTIAL not in repr(failure)
    assert "Bad request with key=" in failure.message
