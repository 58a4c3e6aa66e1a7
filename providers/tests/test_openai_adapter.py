"""The OpenAI pass-through adapter: what it sends upstream, and what it does to stream events."""

from __future__ import annotations

import dataclasses

import orjson

from providers.adapters.base import Target
from providers.adapters.openai import OpenAIAdapter
from providers.redaction import Redactor
from providers.tests.factories import UPSTREAM_CREDENTIAL as CREDENTIAL
from providers.tests.factories import make_provider_info

PROVIDER = make_provider_info()


def test_the_request_carries_the_upstream_model_the_credential_and_every_other_field() -> None:
    body = {"model": "house-model", "messages": [], "foo": {"bar": 1}, "stream": True}

    request = OpenAIAdapter().request("chat", Target(PROVIDER, "gpt-upstream", "house-model"), dict(body))

    assert (request.method, request.url) == ("POST", "http://upstream.test/v1/chat/completions")
    assert request.headers["authorization"] == f"Bearer {CREDENTIAL}"
    assert request.headers["OpenAI-Organization"] == "org-portico"
    # A stream also asks for usage, which the ledger needs whether or not the client asked.
    assert orjson.loads(request.content) == {**body, "model": "gpt-upstream", "stream_options": {"include_usage": True}}


def test_a_provider_without_a_credential_sends_no_authorization() -> None:
    request = OpenAIAdapter().request(
        "chat", Target(dataclasses.replace(PROVIDER, credential=""), "m", "house-model"), {"messages": []}
    )

    assert "authorization" not in request.headers


def test_stream_events_get_the_public_model() -> None:
    translator = OpenAIAdapter().stream_translator(
        "chat", Target(PROVIDER, "gpt-upstream", "house-model"), include_usage=False, redactor=Redactor([CREDENTIAL])
    )

    (event,) = translator.feed(b'{"id":"c1","model":"gpt-upstream","choices":[]}')

    assert orjson.loads(event)["model"] == "house-model"


def test_a_credential_quoted_in_a_stream_event_is_redacted() -> None:
    translator = OpenAIAdapter().stream_translator(
        "chat", Target(PROVIDER, "gpt-upstream", "house-model"), include_usage=False, redactor=Redactor([CREDENTIAL])
    )
    error = {"error": {"message": f"key {CREDENTIAL} was revoked mid-stream", "type": "server_error"}}

    (event,) = translator.feed(orjson.dumps(error))

    assert CREDENTIAL.encode() not in event
    assert orjson.loads(event)["error"]["message"] == "key [redacted] was revoked mid-stream"


def test_the_request_repr_never_shows_the_credential() -> None:
    request = OpenAIAdapter().request("chat", Target(PROVIDER, "gpt-upstream", "house-model"), {"messages": []})

    assert CREDENTIAL not in repr(request)
    assert CREDENTIAL not in repr(PROVIDER)


def test_the_usage_portico_asked_for_stays_out_of_a_stream_whose_client_did_not_ask() -> None:
    exact = dataclasses.replace(PROVIDER, exact_shapes=True)  # relayed as sent: this is about usage only
    translator = OpenAIAdapter().stream_translator(
        "chat", Target(exact, "gpt-upstream", "house-model"), include_usage=False, redactor=Redactor([CREDENTIAL])
    )
    usage = {"prompt_tokens": 3, "completion_tokens": 1, "total_tokens": 4}

    (chunk,) = translator.feed(b'{"id":"c1","model":"gpt-upstream","choices":[{"index":0,"delta":{}}],"usage":null}')
    dropped = translator.feed(orjson.dumps({"id": "c1", "model": "gpt-upstream", "choices": [], "usage": usage}))

    assert orjson.loads(chunk) == {"id": "c1", "model": "house-model", "choices": [{"index": 0, "delta": {}}]}
    assert list(dropped) == []
    assert translator.usage == usage


def test_a_client_that_asked_for_usage_gets_the_chunks_as_sent() -> None:
    translator = OpenAIAdapter().stream_translator(
        "chat", Target(PROVIDER, "gpt-upstream", "house-model"), include_usage=True, redactor=Redactor([CREDENTIAL])
    )
    usage = {"prompt_tokens": 3, "completion_tokens": 1, "total_tokens": 4}

    (chunk,) = translator.feed(b'{"id":"c1","model":"gpt-upstream","choices":[],"usage":null}')
    (last,) = translator.feed(orjson.dumps({"id": "c1", "model": "gpt-upstream", "choices": [], "usage": usage}))

    assert orjson.loads(chunk)["usage"] is None
    assert orjson.loads(last)["usage"] == usage
