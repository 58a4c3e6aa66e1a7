"""The Ollama adapter against a fake Ollama over real HTTP: the bodies it sends, the NDJSON it reads."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import orjson
import pytest

from providers.adapters.base import Target, UpstreamRequest
from providers.adapters.ollama import OllamaAdapter
from providers.redaction import Redactor
from providers.tests.factories import UPSTREAM_CREDENTIAL as CREDENTIAL
from providers.tests.factories import make_provider_info
from tests.fakes.ollama_upstream import CallTools, CutOff, Fail, FailMidStream, FakeOllama, Reply, vector

pytestmark = pytest.mark.integration
ADAPTER = OllamaAdapter()


@pytest.fixture(scope="module")
def ollama() -> Iterator[FakeOllama]:
    fake = FakeOllama()
    fake.start()
    yield fake
    fake.stop()


@pytest.fixture
def http() -> Iterator[httpx.Client]:
    with httpx.Client(timeout=5) as client:
        yield client


def target(ollama: FakeOllama, model: str) -> Target:
    provider = make_provider_info(kind="ollama", base_url=ollama.base_url, extra_headers={})
    return Target(provider=provider, upstream_model=model, public_model="house-model")


def send(http: httpx.Client, request: UpstreamRequest) -> httpx.Response:
    assert isinstance(request.content, bytes)
    return http.request(request.method, request.url, headers=request.headers, content=request.content)


def relay(http: httpx.Client, request: UpstreamRequest, translator: Any) -> tuple[list[dict[str, Any]], httpx.Response]:
    """Stream the answer line by line through `translator`, as the gateway's relay does."""
    assert isinstance(request.content, bytes)
    chunks: list[dict[str, Any]] = []
    with http.stream(request.method, request.url, headers=request.headers, content=request.content) as response:
        for each in response.iter_lines():
            chunks.extend(orjson.loads(event) for event in translator.feed(each.encode()))
    return chunks, response


def chat(body: dict[str, Any]) -> dict[str, Any]:
    return {"model": "house-model", "messages": [{"role": "user", "content": "Why is the sky blue?"}], **body}


def test_a_streamed_answer_arrives_as_ndjson_and_becomes_openai_chunks(ollama: FakeOllama, http: httpx.Client) -> None:
    ollama.script("stream-1", Reply("Rayleigh scattering, mostly.", prompt_eval_count=12))
    to = target(ollama, "stream-1")
    translator = ADAPTER.stream_translator("chat", to, include_usage=True, redactor=Redactor([CREDENTIAL]))

    chunks, response = relay(http, ADAPTER.request("chat", to, chat({"stream": True, "temperature": 0})), translator)

    assert response.headers["content-type"] == "application/x-ndjson"
    (received,) = ollama.received("stream-1")
    assert (received.path, received.headers["authorization"]) == ("/api/chat", f"Bearer {CREDENTIAL}")
    assert received.body == {
        "model": "stream-1",
        "messages": [{"role": "user", "content": "Why is the sky blue?"}],
        "stream": True,
        "options": {"temperature": 0},
    }
    text = "".join(c["choices"][0]["delta"].get("content", "") for c in chunks if c["choices"])
    assert text == "Rayleigh scattering, mostly."
    assert [c["choices"][0]["finish_reason"] for c in chunks if c["choices"]][-1] == "stop"
    assert chunks[-1]["usage"] == {"prompt_tokens": 12, "completion_tokens": 3, "total_tokens": 15}
    assert translator.done


def test_a_streamed_answer_with_two_tool_calls_becomes_two_tool_call_deltas(
    ollama: FakeOllama, http: httpx.Client
) -> None:
    ollama.script("tools-1", CallTools())
    to = target(ollama, "tools-1")
    translator = ADAPTER.stream_translator("chat", to, include_usage=False, redactor=Redactor([CREDENTIAL]))

    chunks, _ = relay(http, ADAPTER.request("chat", to, chat({"stream": True})), translator)

    calls = [call for c in chunks for call in c["choices"][0]["delta"].get("tool_calls", ())]
    assert [
        (call["index"], call["function"]["name"], orjson.loads(call["function"]["arguments"])) for call in calls
    ] == [
        (0, "get_current_weather", {"location": "Paris, FR", "format": "celsius"}),
        (1, "get_current_weather", {"location": "Lyon, FR", "format": "celsius"}),
    ]
    assert chunks[-1]["choices"][0]["finish_reason"] == "tool_calls"
    assert translator.done


def test_a_whole_answer_becomes_a_chat_completion(ollama: FakeOllama, http: httpx.Client) -> None:
    ollama.script("whole-1", CallTools())
    to = target(ollama, "whole-1")

    response = send(http, ADAPTER.request("chat", to, chat({})))
    body = orjson.loads(ADAPTER.response("chat", to, response.content))

    assert ollama.received("whole-1")[0].body["stream"] is False
    assert body["choices"][0]["finish_reason"] == "tool_calls"
    assert len(body["choices"][0]["message"]["tool_calls"]) == 2
    assert body["usage"] == {"prompt_tokens": 122, "completion_tokens": 33, "total_tokens": 155}


def test_a_stream_cut_before_done_leaves_the_translator_unfinished(ollama: FakeOllama, http: httpx.Client) -> None:
    ollama.script("cut-1", CutOff(after=2))
    to = target(ollama, "cut-1")
    translator = ADAPTER.stream_translator("chat", to, include_usage=True, redactor=Redactor([CREDENTIAL]))

    with pytest.raises(httpx.RemoteProtocolError):
        relay(http, ADAPTER.request("chat", to, chat({"stream": True})), translator)

    assert not translator.done
    assert translator.usage is None


def test_an_error_line_mid_stream_becomes_an_openai_error_payload(ollama: FakeOllama, http: httpx.Client) -> None:
    ollama.script("midfail-1", FailMidStream(after=1, message="llama runner process has terminated"))
    to = target(ollama, "midfail-1")
    translator = ADAPTER.stream_translator("chat", to, include_usage=False, redactor=Redactor([CREDENTIAL]))

    chunks, response = relay(http, ADAPTER.request("chat", to, chat({"stream": True})), translator)

    assert response.status_code == 200
    assert chunks[-1] == {
        "error": {
            "message": "The upstream provider failed: llama runner process has terminated",
            "type": "api_error",
            "param": None,
            "code": None,
        }
    }
    assert not translator.done


def test_a_model_the_server_lacks_is_a_model_not_found(ollama: FakeOllama, http: httpx.Client) -> None:
    ollama.script("missing-1", Fail(404, 'model "missing-1" not found, try pulling it first'))
    to = target(ollama, "missing-1")

    response = send(http, ADAPTER.request("chat", to, chat({"stream": True})))
    failure = ADAPTER.failure(response.status_code, response.content, response.headers, redactor=Redactor([CREDENTIAL]))

    assert (failure.status, failure.code) == (404, "model_not_found")
    assert failure.message == 'model "missing-1" not found, try pulling it first'


def test_embeddings_and_the_model_list_come_back_in_openai_terms(ollama: FakeOllama, http: httpx.Client) -> None:
    ollama.script("embed-1", Reply())
    to = target(ollama, "embed-1")

    response = send(http, ADAPTER.request("embeddings", to, {"model": "house-model", "input": ["one two", "three"]}))
    body = orjson.loads(ADAPTER.response("embeddings", to, response.content))
    models = send(http, ADAPTER.models_request(to.provider))

    assert ollama.received("embed-1")[0].body == {"model": "embed-1", "input": ["one two", "three"], "truncate": True}
    assert [item["embedding"] for item in body["data"]] == [vector("one two"), vector("three")]
    assert body["usage"] == {"prompt_tokens": 3, "total_tokens": 3}
    assert "embed-1" in ADAPTER.model_ids(models.content)
