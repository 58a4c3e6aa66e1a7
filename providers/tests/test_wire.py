"""OpenAI wire helpers: model rewriting in raw bytes, and upstream error answers mapped for our clients."""

from __future__ import annotations

import json
from typing import Any

import httpx
import orjson
import pytest

from providers.adapters.wire import model_rewriter, openai_failure, rewrite_model
from providers.redaction import Redactor

SECRET = "sk-proj-UPSTREAMsecret1234567890"


def completion(model: str, content: str = "Hi!") -> dict[str, Any]:
    return {
        "id": "chatcmpl-1",
        "object": "chat.completion",
        "model": model,
        "choices": [{"index": 0, "message": {"role": "assistant", "content": content}}],
    }


def compact(payload: dict[str, Any]) -> bytes:
    return orjson.dumps(payload)


def spaced(payload: dict[str, Any]) -> bytes:
    # How Python's json module (and many OpenAI-compatible servers) write JSON.
    return json.dumps(payload, ensure_ascii=False).encode()


@pytest.mark.parametrize("dump", [compact, spaced], ids=["compact", "spaced"])
def test_it_rewrites_the_model_to_the_public_id(dump: Any) -> None:
    out = rewrite_model(dump(completion("gpt-4o-2024-08-06")), "house-model")

    assert orjson.loads(out) == completion("house-model")


@pytest.mark.parametrize("dump", [compact, spaced], ids=["compact", "spaced"])
def test_it_leaves_a_model_named_inside_the_content_alone(dump: Any) -> None:
    content = 'Reply with {"model":"up", "model": "up"} and "model":"up" verbatim.'
    payload = {"choices": [{"message": {"content": content}}], "model": "up"}

    out = orjson.loads(rewrite_model(dump(payload), "public"))

    assert out["model"] == "public"
    assert out["choices"][0]["message"]["content"] == content


def test_it_leaves_content_alone_when_it_comes_before_the_model_key() -> None:
    content = '{"model":"up"}'
    payload = compact({"choices": [{"delta": {"content": content}}], "model": "up"})

    assert b'\\"model\\":\\"up\\"' in payload  # the content really holds the escaped pattern
    out = orjson.loads(rewrite_model(payload, "public"))

    assert out == {"choices": [{"delta": {"content": content}}], "model": "public"}


@pytest.mark.parametrize("dump", [compact, spaced], ids=["compact", "spaced"])
def test_it_rewrites_the_dated_name_an_upstream_answers_with(dump: Any) -> None:
    # Asked for `gpt-4o`, OpenAI answers `gpt-4o-2024-08-06`: the client must still see the public id.
    out = rewrite_model(dump(completion("gpt-4o-2024-08-06")), "house-model")

    assert orjson.loads(out) == completion("house-model")


def test_it_rewrites_only_the_first_model_member() -> None:
    payload = b'{"model":"up","choices":[],"extra":{"model":"nested"}}'

    assert orjson.loads(rewrite_model(payload, "public")) == {
        "model": "public",
        "choices": [],
        "extra": {"model": "nested"},
    }


@pytest.mark.parametrize(
    ("upstream", "public"),
    [
        ('quote"d', "public"),
        ("back\\slash", 'pub"lic'),
        ("org/model:tag", "é-模型"),
        ("tab\tname", "line\nbreak"),
    ],
    ids=["quote", "backslash", "slash-and-unicode", "control-characters"],
)
def test_it_rewrites_names_that_need_json_escaping(upstream: str, public: str) -> None:
    out = rewrite_model(compact(completion(upstream)), public)

    assert orjson.loads(out) == completion(public)


def test_a_body_without_a_model_is_left_as_it_is() -> None:
    payload = b'{"object":"list","data":[]}'

    assert rewrite_model(payload, "public") == payload


def test_it_rewrites_a_stream_chunk() -> None:
    chunk = b'{"id":"c","object":"chat.completion.chunk","model":"up","choices":[{"delta":{"content":"x"}}]}'

    assert orjson.loads(rewrite_model(chunk, "public"))["model"] == "public"


def error_body(message: str, kind: str = "invalid_request_error", code: Any = None, param: Any = None) -> bytes:
    return orjson.dumps({"error": {"message": message, "type": kind, "param": param, "code": code}})


# (upstream status, Portico status, type when the body names none of its own)
STATUS_TABLE = [
    (400, 400, "invalid_request_error"),
    (404, 404, "invalid_request_error"),
    (409, 409, "invalid_request_error"),
    (413, 413, "invalid_request_error"),
    (422, 400, "invalid_request_error"),
    (429, 429, "requests"),
    (418, 400, "api_error"),
    (500, 502, "api_error"),
    (502, 502, "api_error"),
    (503, 503, "api_error"),
    (504, 504, "api_error"),
    (529, 503, "api_error"),
    (599, 502, "api_error"),
]


@pytest.mark.parametrize(("upstream", "status", "kind"), STATUS_TABLE, ids=[str(row[0]) for row in STATUS_TABLE])
def test_it_maps_each_upstream_status(upstream: int, status: int, kind: str) -> None:
    failure = openai_failure(upstream, orjson.dumps({"error": {"message": "Nope."}}), httpx.Headers())

    assert (failure.status, failure.type) == (status, kind)


def test_a_client_error_keeps_the_upstreams_message_type_code_and_param() -> None:
    payload = error_body("'messages' is too long.", code="context_length_exceeded", param="messages")

    failure = openai_failure(400, payload, httpx.Headers())

    assert (failure.status, failure.message, failure.type, failure.code, failure.param) == (
        400,
        "'messages' is too long.",
        "invalid_request_error",
        "context_length_exceeded",
        "messages",
    )


def test_a_missing_model_upstream_stays_a_404_with_its_code() -> None:
    payload = error_body("The model `gpt-9` does not exist.", code="model_not_found", param="model")

    failure = openai_failure(404, payload, httpx.Headers())

    assert (failure.status, failure.code, failure.param) == (404, "model_not_found", "model")


@pytest.mark.parametrize("upstream", [401, 403])
def test_a_refused_credential_becomes_a_502_that_never_quotes_it(upstream: int) -> None:
    payload = error_body(f"Incorrect API key provided: {SECRET}.", code="invalid_api_key")

    failure = openai_failure(upstream, payload, httpx.Headers(), redactor=Redactor([SECRET]))

    assert failure.status == 502
    assert (failure.type, failure.code, failure.param) == ("api_error", "upstream_auth_error", None)
    assert SECRET not in failure.message
    assert "sk-" not in failure.message
    # Our client's key is fine; a 401 would tell them otherwise.
    assert "invalid_api_key" not in repr(failure)


def test_a_refused_credential_is_not_quoted_even_when_no_secret_is_given() -> None:
    payload = error_body(f"Incorrect API key provided: {SECRET}.")

    failure = openai_failure(401, payload, httpx.Headers())

    assert SECRET not in failure.message


def test_the_credential_is_scrubbed_from_any_upstream_message() -> None:
    payload = error_body(f"Key {SECRET} is not allowed to use this model.")

    failure = openai_failure(400, payload, httpx.Headers(), redactor=Redactor([SECRET]))

    assert SECRET not in failure.message
    assert "[redacted]" in failure.message


def test_a_rate_limit_passes_retry_after_on() -> None:
    payload = error_body("Rate limit reached.", kind="requests", code="rate_limit_exceeded")
    headers = httpx.Headers({"Retry-After": "7", "Retry-After-Ms": "6500", "X-Request-Id": "upstream-req"})

    failure = openai_failure(429, payload, headers)

    assert failure.status == 429
    assert failure.headers == {"retry-after": "7", "retry-after-ms": "6500"}
    assert (failure.message, failure.code) == ("Rate limit reached.", "rate_limit_exceeded")


def test_a_rate_limit_without_a_type_is_openais_requests_rate_limit() -> None:
    failure = openai_failure(429, orjson.dumps({"error": {"message": "Slow down."}}), httpx.Headers())

    assert (failure.type, failure.code) == ("requests", "rate_limit_exceeded")


def test_a_server_error_says_the_upstream_failed_and_hides_the_upstreams_type() -> None:
    payload = error_body("The server had an error.", kind="server_error")

    failure = openai_failure(500, payload, httpx.Headers())

    assert failure.status == 502
    assert failure.type == "api_error"
    assert failure.message == "The upstream provider failed: The server had an error."


@pytest.mark.parametrize(
    "payload",
    [b"<html><body>502 Bad Gateway</body></html>", b"", b"upstream connect error", b"[1, 2]", b'"text"'],
    ids=["html", "empty", "plain-text", "json-array", "json-string"],
)
def test_a_body_that_is_not_an_openai_error_gets_a_generic_message(payload: bytes) -> None:
    failure = openai_failure(503, payload, httpx.Headers())

    assert failure.status == 503
    assert failure.message == "The upstream provider failed: The upstream provider answered with HTTP 503."
    assert (failure.code, failure.param) == (None, None)


def test_an_error_given_as_a_string_becomes_the_message() -> None:
    failure = openai_failure(400, orjson.dumps({"error": "model is required"}), httpx.Headers())

    assert failure.message == "model is required"
    assert failure.status == 400


def test_a_top_level_message_becomes_the_message() -> None:
    failure = openai_failure(400, orjson.dumps({"message": "bad request", "object": "error"}), httpx.Headers())

    assert failure.message == "bad request"


def test_a_numeric_code_becomes_a_string() -> None:
    failure = openai_failure(400, error_body("Bad.", code=1234), httpx.Headers())

    assert failure.code == "1234"


def test_a_chunk_that_already_names_the_public_model_is_passed_on_untouched() -> None:
    chunk = b'{"id":"c","model":"public","choices":[{"delta":{"content":"x"}}]}'

    assert model_rewriter("public")(chunk) is chunk
