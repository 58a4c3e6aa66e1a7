"""Every kind keeps the provider's secrets out of errors and streams, and sends them where they belong.

The secrets are the credential and the extra header values; an upstream may quote any of them in
any field of an error, in a stream's error event, or in an answer's content.
"""

from __future__ import annotations

import dataclasses

import orjson
import pytest

from providers.adapters import adapter_for
from providers.adapters.base import Target
from providers.facade import ProviderInfo
from providers.tests.factories import UPSTREAM_CREDENTIAL as CREDENTIAL
from providers.tests.factories import make_provider_info

HEADER_VALUE = "acct-0123456789abcdef"
KINDS = ["openai", "azure", "ollama", "anthropic", "gemini", "cohere", "replicate"]
BASE_URLS = {
    "openai": "http://u.test/v1",
    "azure": "https://r.test",
    "ollama": "http://o.test",
    "anthropic": "x/v1",
    "gemini": "https://g.test",
    "cohere": "https://c.test",
    "replicate": "https://rp.test",
}
# Every header a kind carries its credential in by default.
CREDENTIAL_HEADERS = {"api-key", "x-api-key", "x-goog-api-key", "authorization"}


def provider(kind: str, **fields: object) -> ProviderInfo:
    return make_provider_info(
        kind=kind, base_url=BASE_URLS[kind], extra_headers={"X-Account-Key": HEADER_VALUE}, **fields
    )


def target(kind: str, **fields: object) -> Target:
    return Target(provider(kind, **fields), "upstream-model", "house-model")


def error_quoting(value: str) -> bytes:
    quoted = f"Bearer {value}"
    return orjson.dumps({"error": {"message": f"got {quoted}", "type": quoted, "param": quoted, "code": value}})


def kind_error_quoting(kind: str, value: str) -> bytes:
    """An error answer in the kind's own shape, quoting `value` in every field the kind reads."""
    quoted = f"Bearer {value}"
    if kind == "gemini":
        info = {"@type": "type.googleapis.com/google.rpc.ErrorInfo", "reason": quoted, "metadata": {"key": value}}
        error = {"code": 400, "message": f"got {quoted}", "status": "INVALID_ARGUMENT", "details": [info]}
        return orjson.dumps({"error": error})
    if kind == "cohere":
        return orjson.dumps({"id": value, "message": f"got {quoted}"})
    if kind == "replicate":
        return orjson.dumps({"title": quoted, "detail": f"got {quoted}", "status": 400, "error": quoted})
    return error_quoting(value)


def stream_event(kind: str, text: str) -> bytes:
    """One upstream stream event carrying `text` as content, in the kind's own format."""
    if kind == "anthropic":
        return orjson.dumps({"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": text}})
    if kind == "ollama":
        return orjson.dumps({"message": {"role": "assistant", "content": text}, "done": False})
    if kind == "gemini":
        parts = {"content": {"role": "model", "parts": [{"text": text}]}, "index": 0}
        return orjson.dumps({"candidates": [parts], "responseId": "r"})
    if kind == "cohere":
        delta = {"message": {"content": {"type": "text", "text": text}}}
        return orjson.dumps({"type": "content-delta", "index": 0, "delta": delta})
    if kind == "replicate":
        return b"output\n" + text.encode()
    chunk = {"id": "c", "object": "chat.completion.chunk", "created": 1, "model": "upstream-model"}
    return orjson.dumps({**chunk, "choices": [{"index": 0, "delta": {"content": text}, "finish_reason": None}]})


def stream_error(kind: str, value: str) -> bytes:
    if kind == "anthropic":
        return orjson.dumps({"type": "error", "error": {"type": "api_error", "message": f"Bearer {value}"}})
    if kind == "ollama":
        return orjson.dumps({"error": f"Bearer {value}"})
    if kind == "gemini":
        return orjson.dumps({"error": {"code": 500, "message": f"Bearer {value}", "status": "INTERNAL"}})
    if kind == "cohere":
        return orjson.dumps({"type": "message-end", "delta": {"finish_reason": "ERROR", "error": f"Bearer {value}"}})
    if kind == "replicate":
        return b"error\n" + orjson.dumps({"detail": f"Bearer {value}"})
    return error_quoting(value)


@pytest.mark.parametrize("secret", [CREDENTIAL, HEADER_VALUE], ids=["credential", "header value"])
@pytest.mark.parametrize("status", [400, 404, 429, 500, 503])
@pytest.mark.parametrize("kind", KINDS)
def test_no_field_of_an_error_quotes_a_secret(kind: str, status: int, secret: str) -> None:
    info = provider(kind)

    failure = adapter_for(kind).failure(status, kind_error_quoting(kind, secret), {}, redactor=info.redactor)

    fields = [failure.message, failure.type, failure.code, failure.param, *failure.headers.values()]
    assert not any(secret[:20] in str(field) for field in fields)


@pytest.mark.parametrize("secret", [CREDENTIAL, HEADER_VALUE], ids=["credential", "header value"])
@pytest.mark.parametrize("kind", KINDS)
def test_no_stream_event_quotes_a_secret(kind: str, secret: str) -> None:
    to = target(kind)
    translator = adapter_for(kind).stream_translator("chat", to, include_usage=False, redactor=to.provider.redactor)

    out = b"".join(
        b"".join(translator.feed(event))
        for event in (stream_event(kind, "Hello"), stream_event(kind, f"key {secret}"), stream_error(kind, secret))
    )

    assert secret[:20].encode() not in out
    assert b"[redacted]" in out
    assert translator.failed


@pytest.mark.parametrize("kind", KINDS)
def test_a_provider_may_name_the_credential_header(kind: str) -> None:
    to = target(kind, credential_header="X-Gateway-Key")

    request = adapter_for(kind).request("chat", to, {"messages": [{"role": "user", "content": "hi"}]})

    assert request.headers["x-gateway-key"] == CREDENTIAL
    assert not CREDENTIAL_HEADERS & set(request.headers)


@pytest.mark.parametrize("kind", KINDS)
def test_the_credential_and_extra_headers_go_on_chat_and_on_the_model_list(kind: str) -> None:
    info = provider(kind)
    to = target(kind)

    chat = adapter_for(kind).request("chat", to, {"messages": [{"role": "user", "content": "hi"}]})
    listing = adapter_for(kind).models_request(info)

    for request in (chat, listing):
        carried = {name.lower(): value for name, value in request.headers.items()}
        assert [value for name, value in carried.items() if name in CREDENTIAL_HEADERS] in (
            [CREDENTIAL],
            [f"Bearer {CREDENTIAL}"],
        )
        assert carried["x-account-key"] == HEADER_VALUE
        assert CREDENTIAL not in request.url


def test_a_credential_naming_its_own_scheme_is_sent_as_it_is() -> None:
    to = target("openai", credential="Token abcdef0123456789")

    request = adapter_for("openai").request("chat", to, {"messages": []})

    assert request.headers["authorization"] == "Token abcdef0123456789"


def test_the_credential_wins_over_an_extra_header_of_the_same_name() -> None:
    to = target("openai")
    to = dataclasses.replace(to, provider=dataclasses.replace(to.provider, extra_headers={"Authorization": "stale"}))

    request = adapter_for("openai").request("chat", to, {"messages": []})

    assert [name for name in request.headers if name.lower() == "authorization"] == ["authorization"]
    assert request.headers["authorization"] == f"Bearer {CREDENTIAL}"


def test_a_copied_provider_redacts_its_own_secrets() -> None:
    rotated = dataclasses.replace(provider("openai"), credential="sk-rotated-0123456789")

    assert rotated.redactor.text("sk-rotated-0123456789") == "[redacted]"
    assert rotated.redactor.text(HEADER_VALUE) == "[redacted]"
