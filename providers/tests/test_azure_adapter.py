"""The Azure OpenAI adapter: deployment URLs, `api-key`, `api-version`, and its prompt-filter chunks."""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator

import orjson
import pytest

from providers.adapters.azure import DEFAULT_API_VERSION, AzureOpenAIAdapter
from providers.adapters.base import Target
from providers.redaction import Redactor
from providers.tests.factories import UPSTREAM_CREDENTIAL as CREDENTIAL
from providers.tests.factories import make_provider_info

PROVIDER = make_provider_info(
    kind="azure", base_url="https://portico.openai.azure.com", api_version="2024-06-01", extra_headers={}
)
TARGET = Target(provider=PROVIDER, upstream_model="gpt4o-prod", public_model="house-model")
ADAPTER = AzureOpenAIAdapter()
DEPLOYMENT = "https://portico.openai.azure.com/openai/deployments/gpt4o-prod"


@pytest.mark.parametrize(
    ("operation", "url"),
    [
        ("chat", f"{DEPLOYMENT}/chat/completions?api-version=2024-06-01"),
        ("completions", f"{DEPLOYMENT}/completions?api-version=2024-06-01"),
        ("embeddings", f"{DEPLOYMENT}/embeddings?api-version=2024-06-01"),
        ("images", f"{DEPLOYMENT}/images/generations?api-version=2024-06-01"),
    ],
)
def test_a_json_operation_goes_to_its_deployment_path_with_the_api_key(operation: str, url: str) -> None:
    request = ADAPTER.request(operation, TARGET, {"model": "house-model", "input": "x"})  # type: ignore[arg-type]

    assert (request.method, request.url) == ("POST", url)
    assert request.headers["api-key"] == CREDENTIAL
    assert "authorization" not in request.headers
    assert request.headers["content-type"] == "application/json"


async def test_a_transcription_is_uploaded_to_its_deployment_path_with_the_api_key() -> None:
    async def upload() -> AsyncIterator[bytes]:
        yield b"audio"

    content = upload()
    request = ADAPTER.upload_request("transcriptions", TARGET, content, "multipart/form-data; boundary=b")

    assert request.url == f"{DEPLOYMENT}/audio/transcriptions?api-version=2024-06-01"
    assert request.headers["api-key"] == CREDENTIAL
    assert request.headers["content-type"] == "multipart/form-data; boundary=b"
    assert request.content is content


def test_azure_offers_no_moderations() -> None:
    assert "moderations" not in ADAPTER.operations
    assert ADAPTER.operations == {"chat", "completions", "embeddings", "images", "transcriptions"}
    with pytest.raises(ValueError, match="moderations"):
        ADAPTER.request("moderations", TARGET, {"input": "x"})


def test_a_provider_without_an_api_version_gets_the_default() -> None:
    target = dataclasses.replace(TARGET, provider=dataclasses.replace(PROVIDER, api_version=""))

    request = ADAPTER.request("chat", target, {"messages": []})

    assert request.url.endswith(f"/chat/completions?api-version={DEFAULT_API_VERSION}")
    assert DEFAULT_API_VERSION == "2024-10-21"


def test_the_body_names_the_deployment_and_asks_for_stream_usage() -> None:
    body = {"model": "house-model", "messages": [], "stream": True, "temperature": 0.2}

    request = ADAPTER.request("chat", TARGET, dict(body))

    assert orjson.loads(request.content) == {**body, "model": "gpt4o-prod", "stream_options": {"include_usage": True}}


def test_a_provider_without_a_key_sends_only_its_extra_headers() -> None:
    provider = dataclasses.replace(PROVIDER, credential="", extra_headers={"Authorization": "Bearer entra-token"})

    request = ADAPTER.request("chat", dataclasses.replace(TARGET, provider=provider), {"messages": []})

    assert "api-key" not in request.headers
    assert request.headers["Authorization"] == "Bearer entra-token"


def test_the_model_list_comes_from_the_data_plane_models_endpoint() -> None:
    request = ADAPTER.models_request(PROVIDER)
    payload = orjson.dumps({"data": [{"id": "gpt-4o", "object": "model"}, {"id": "text-embedding-3-small"}]})

    assert (request.method, request.url) == (
        "GET",
        "https://portico.openai.azure.com/openai/models?api-version=2024-06-01",
    )
    assert request.headers["api-key"] == CREDENTIAL
    assert "content-type" not in request.headers
    assert ADAPTER.model_ids(payload) == ["gpt-4o", "text-embedding-3-small"]


PROMPT_FILTER = {
    "choices": [],
    "created": 0,
    "id": "",
    "model": "",
    "object": "",
    "prompt_filter_results": [{"prompt_index": 0, "content_filter_results": {"hate": {"filtered": False}}}],
}
CONTENT = {
    "id": "chatcmpl-1",
    "object": "chat.completion.chunk",
    "model": "gpt-4o-2024-08-06",
    "choices": [
        {
            "index": 0,
            "delta": {"content": "Hi"},
            "finish_reason": None,
            "content_filter_results": {"hate": {"filtered": False, "severity": "safe"}},
        }
    ],
}
# What a tenant gets: OpenAI's chunk, without Azure's filter verdict.
RELAYED = {
    **CONTENT,
    "model": "house-model",
    "choices": [{"index": 0, "delta": {"content": "Hi"}, "finish_reason": None}],
}
USAGE = {
    "id": "chatcmpl-1",
    "model": "gpt-4o-2024-08-06",
    "choices": [],
    "usage": {"prompt_tokens": 3, "completion_tokens": 1, "total_tokens": 4},
}


@pytest.mark.parametrize(
    ("include_usage", "expected"),
    [
        (False, [RELAYED]),
        (True, [RELAYED, {**USAGE, "model": "house-model"}]),
    ],
)
def test_a_prompt_filter_chunk_is_dropped_and_the_usage_chunk_still_noted(include_usage: bool, expected: list) -> None:
    # A server declared exact: what is relayed is what it sent, less the filter verdicts.
    exact = dataclasses.replace(TARGET, provider=dataclasses.replace(PROVIDER, exact_shapes=True))
    translator = ADAPTER.stream_translator("chat", exact, include_usage=include_usage, redactor=Redactor([CREDENTIAL]))

    out = [event for chunk in (PROMPT_FILTER, CONTENT, USAGE) for event in translator.feed(orjson.dumps(chunk))]
    list(translator.feed(b"[DONE]"))

    assert [orjson.loads(event) for event in out] == expected
    assert translator.usage == USAGE["usage"]
    assert translator.done


def test_a_prompt_filter_chunk_does_not_pass_for_the_usage_chunk() -> None:
    translator = ADAPTER.stream_translator("chat", TARGET, include_usage=True, redactor=Redactor([CREDENTIAL]))

    assert list(translator.feed(orjson.dumps(PROMPT_FILTER))) == []
    assert translator.usage is None


def test_an_azure_content_filter_refusal_keeps_its_code() -> None:
    error = {
        "error": {"message": "The response was filtered", "type": None, "param": "prompt", "code": "content_filter"}
    }

    failure = ADAPTER.failure(400, orjson.dumps(error), {}, redactor=Redactor([CREDENTIAL]))

    assert (failure.status, failure.code, failure.param) == (400, "content_filter", "prompt")


def test_an_azure_key_refusal_is_not_blamed_on_the_client() -> None:
    error = {"error": {"code": "401", "message": f"Access denied due to invalid subscription key {CREDENTIAL}."}}

    failure = ADAPTER.failure(401, orjson.dumps(error), {}, redactor=Redactor([CREDENTIAL]))

    assert (failure.status, failure.code) == (502, "upstream_auth_error")
    assert CREDENTIAL not in failure.message


def test_filter_verdicts_are_removed_from_whole_answers_and_stream_chunks() -> None:
    verdict = {"hate": {"filtered": False, "severity": "safe"}}
    body = {
        "id": "chatcmpl-1",
        "object": "chat.completion",
        "model": "gpt-4o-2024-08-06",
        "prompt_filter_results": [{"prompt_index": 0, "content_filter_results": verdict}],
        "choices": [{"index": 0, "message": {"role": "assistant", "content": "hi"}, "content_filter_results": verdict}],
    }
    adapter = AzureOpenAIAdapter()
    target = Target(PROVIDER, "my-deployment", "house-model")

    answer = orjson.loads(adapter.response("chat", target, orjson.dumps(body)))
    chunk = {
        "id": "c",
        "object": "chat.completion.chunk",
        "choices": [{"index": 0, "delta": {"content": "hi"}, "content_filter_results": verdict}],
    }
    (relayed,) = adapter.stream_translator("chat", target, include_usage=False).feed(orjson.dumps(chunk))

    assert "prompt_filter_results" not in answer
    assert "content_filter_results" not in answer["choices"][0]
    assert answer["choices"][0]["message"]["content"] == "hi"
    # Shaped as OpenAI's too: the choice gains the `logprobs` and `finish_reason` the server left out.
    assert orjson.loads(relayed)["choices"][0] == {
        "index": 0,
        "delta": {"content": "hi"},
        "logprobs": None,
        "finish_reason": None,
    }
