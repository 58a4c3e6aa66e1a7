"""The exception tree: statuses, OpenAI's body shape, and the SSE frame a stream ends with."""

from __future__ import annotations

import orjson
import pytest

from gateway.errors import (
    AuthenticationFailed,
    BodyTooLarge,
    InternalError,
    InvalidRequest,
    MethodNotAllowed,
    ModelNotFound,
    NotFound,
    PorticoError,
    UpstreamError,
    UpstreamTimeout,
    UpstreamUnreachable,
    error_response,
)
from providers.adapters.base import UpstreamFailure
from providers.adapters.framing import EventSplitter

# (class, status, type, code) of every error raised without overrides.
TREE = [
    (PorticoError, 500, "api_error", None),
    (InvalidRequest, 400, "invalid_request_error", None),
    (BodyTooLarge, 413, "invalid_request_error", "request_too_large"),
    (AuthenticationFailed, 401, "invalid_request_error", "invalid_api_key"),
    (NotFound, 404, "invalid_request_error", None),
    (MethodNotAllowed, 405, "invalid_request_error", "method_not_allowed"),
    (InternalError, 500, "server_error", "internal_error"),
    (UpstreamError, 502, "api_error", None),
    (UpstreamTimeout, 504, "api_error", "upstream_timeout"),
    (UpstreamUnreachable, 502, "api_error", "upstream_unreachable"),
]


@pytest.mark.parametrize(("cls", "status", "kind", "code"), TREE, ids=[row[0].__name__ for row in TREE])
def test_each_error_has_its_status_type_and_code(
    cls: type[PorticoError], status: int, kind: str, code: str | None
) -> None:
    error = cls("Something is wrong.")

    assert error.status == status
    assert error.body() == {"error": {"message": "Something is wrong.", "type": kind, "param": None, "code": code}}
    assert isinstance(error, PorticoError)


def test_the_body_has_exactly_openais_four_fields() -> None:
    body = orjson.loads(InvalidRequest("Bad n.", param="n", code="integer_below_min_value").to_json())

    assert body == {
        "error": {"message": "Bad n.", "type": "invalid_request_error", "param": "n", "code": "integer_below_min_value"}
    }


def test_overrides_change_the_instance_not_the_class() -> None:
    error = InvalidRequest("x", code="invalid_json", status=422, type="other_error", headers={"Retry-After": "1"})

    assert (error.code, error.status, error.type, error.headers) == (
        "invalid_json",
        422,
        "other_error",
        {"Retry-After": "1"},
    )
    assert (InvalidRequest.code, InvalidRequest.status, InvalidRequest.type) == (None, 400, "invalid_request_error")


def test_each_error_gets_its_own_headers() -> None:
    first, second = PorticoError("a"), PorticoError("b")
    first.headers["Allow"] = "POST"

    assert second.headers == {}


def test_model_not_found_names_the_model_in_openais_words() -> None:
    error = ModelNotFound("gpt-9")

    assert error.body() == {
        "error": {
            "message": "The model `gpt-9` does not exist or you do not have access to it.",
            "type": "invalid_request_error",
            "param": "model",
            "code": "model_not_found",
        }
    }
    assert error.status == 404


def test_the_message_is_the_exception_text() -> None:
    assert str(NotFound("Invalid URL (GET /v1/nope)")) == "Invalid URL (GET /v1/nope)"


def test_an_upstream_failure_becomes_an_upstream_error_field_for_field() -> None:
    failure = UpstreamFailure(
        status=429,
        message="Rate limit reached.",
        type="rate_limit_error",
        code="rate_limit_exceeded",
        param=None,
        headers={"retry-after": "7"},
    )

    error = UpstreamError.from_failure(failure)

    assert isinstance(error, UpstreamError)
    assert error.status == 429
    assert error.headers == {"retry-after": "7"}
    assert error.body() == {
        "error": {
            "message": "Rate limit reached.",
            "type": "rate_limit_error",
            "param": None,
            "code": "rate_limit_exceeded",
        }
    }


def test_an_upstream_failure_keeps_the_param_it_names() -> None:
    failure = UpstreamFailure(status=400, message="Bad.", type="invalid_request_error", code=None, param="messages")

    assert UpstreamError.from_failure(failure).body()["error"]["param"] == "messages"


@pytest.mark.parametrize("cls", [row[0] for row in TREE], ids=[row[0].__name__ for row in TREE])
def test_the_sse_frame_is_one_data_event_holding_the_error_body(cls: type[PorticoError]) -> None:
    error = cls('A "quoted"\nmulti-line message.')

    framed = error.to_sse()

    assert framed.startswith(b"data: ")
    assert framed.endswith(b"\n\n")
    assert framed.count(b"\n") == 2  # JSON escapes the newline, so the frame is one line
    (data,) = EventSplitter().feed(framed)
    assert orjson.loads(data) == error.body()
    assert orjson.loads(data)["error"]["message"] == 'A "quoted"\nmulti-line message.'


def test_the_http_answer_carries_status_body_and_headers() -> None:
    error = UpstreamError("Slow down.", status=429, type="rate_limit_error", headers={"retry-after": "3"})

    response = error_response(error)

    assert response.status_code == 429
    assert response["Content-Type"] == "application/json"
    assert response["Retry-After"] == "3"
    assert orjson.loads(response.content) == error.body()


# --- what the ledger records ---

QUOTED = "Bearer sk-proj-UPSTREAMsecret1234567890"


@pytest.mark.parametrize(
    ("failure", "classification"),
    [
        (UpstreamFailure(400, "m", QUOTED, code=QUOTED), "upstream_invalid_request"),
        (UpstreamFailure(404, "m", "invalid_request_error", code="model_not_found"), "upstream_invalid_request"),
        (UpstreamFailure(429, "m", "rate_limit_error", code=QUOTED), "upstream_rate_limited"),
        (UpstreamFailure(502, "m", "api_error", code=QUOTED), "upstream_error"),
        (UpstreamFailure(503, "m", "api_error", code="overloaded"), "upstream_unavailable"),
        (
            UpstreamFailure(502, "m", "api_error", "upstream_auth_error", reason="upstream_auth_error"),
            "upstream_auth_error",
        ),
    ],
)
def test_an_upstream_error_is_classified_in_porticos_words_never_the_upstreams(
    failure: UpstreamFailure, classification: str
) -> None:
    assert UpstreamError.from_failure(failure).classification == classification


@pytest.mark.parametrize(
    ("error", "classification"),
    [
        (UpstreamTimeout("t"), "upstream_timeout"),
        (UpstreamUnreachable("u"), "upstream_unreachable"),
        (UpstreamError("mid-stream"), "upstream_error"),
        (ModelNotFound("m"), "model_not_found"),
        (InvalidRequest("bad", code="unsupported_parameter"), "unsupported_parameter"),
        (InvalidRequest("bad"), "invalid_request_error"),
    ],
)
def test_porticos_own_errors_are_classified_by_their_code(error: PorticoError, classification: str) -> None:
    assert error.classification == classification
