"""The built-in mock provider: deterministic OpenAI answers computed in-process."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import httpx
import orjson
import pytest

from providers.adapters import ADAPTERS, adapter_for, kind_choices
from providers.adapters.base import Target
from providers.adapters.mock import MOCK_BASE_URL, MockAdapter
from providers.adapters.mock.answers import MAX_ECHO_CHARS
from providers.tests.factories import make_provider_info

MOCK = make_provider_info(
    name="mock",
    kind="mock",
    base_url=MOCK_BASE_URL,
    credential="",
    read_timeout=1.0,
    total_timeout=1.0,
    extra_headers={},
)


@pytest.fixture
async def mock_client() -> AsyncIterator[httpx.AsyncClient]:
    transport = MockAdapter().transport()
    assert transport is not None
    async with httpx.AsyncClient(transport=transport) as client:
        yield client


async def ask(client: httpx.AsyncClient, **body: Any) -> httpx.Response:
    request = MockAdapter().request("chat", Target(MOCK, "mock-echo", "house-model"), {"model": "house-echo", **body})
    return await client.request(request.method, request.url, headers=request.headers, content=request.content)


async def completion(client: httpx.AsyncClient, **body: Any) -> dict[str, Any]:
    response = await ask(client, **body)
    assert response.status_code == 200
    return orjson.loads(response.content)


async def stream_events(client: httpx.AsyncClient, **body: Any) -> list[bytes]:
    response = await ask(client, stream=True, **body)
    assert response.status_code == 200
    assert response.headers["content-type"] == "text/event-stream"
    # The mock frames every event as one `data:` line and a blank line, nothing else.
    blocks = response.content.split(b"\n\n")
    assert blocks[-1] == b""
    assert all(block.startswith(b"data: ") for block in blocks[:-1])
    return [block.removeprefix(b"data: ") for block in blocks[:-1]]


def user(text: Any) -> dict[str, Any]:
    return {"role": "user", "content": text}


def test_the_mock_kind_is_registered_with_a_clear_label() -> None:
    assert adapter_for("mock") is ADAPTERS["mock"]
    assert isinstance(ADAPTERS["mock"], MockAdapter)
    assert ("mock", MockAdapter.label) in kind_choices()
    assert "Mock" in MockAdapter.label


def test_the_mock_answers_in_process() -> None:
    assert isinstance(MockAdapter().transport(), httpx.MockTransport)
    assert adapter_for("openai").transport() is None


async def test_it_echoes_the_last_user_message(mock_client: httpx.AsyncClient) -> None:
    messages = [
        {"role": "system", "content": "Be brief."},
        user("first question"),
        {"role": "assistant", "content": "first answer"},
        user("the second question"),
        {"role": "assistant", "content": "not a user message"},
    ]

    body = await completion(mock_client, messages=messages)

    assert body["object"] == "chat.completion"
    assert body["choices"] == [
        {
            "index": 0,
            "message": {"role": "assistant", "content": "the second question", "refusal": None, "annotations": []},
            "logprobs": None,
            "finish_reason": "stop",
        }
    ]


async def test_it_receives_the_upstream_model_name(mock_client: httpx.AsyncClient) -> None:
    body = await completion(mock_client, messages=[user("hi")])

    assert body["model"] == "mock-echo"


async def test_it_echoes_the_text_parts_of_a_multi_part_message(mock_client: httpx.AsyncClient) -> None:
    content = [
        {"type": "text", "text": "look at"},
        {"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAA"}},
        {"type": "text", "text": "this"},
    ]

    body = await completion(mock_client, messages=[user(content)])

    assert body["choices"][0]["message"]["content"].split() == ["look", "at", "this"]


@pytest.mark.parametrize(
    ("messages", "reply"),
    [
        ([user("")], "(empty message)"),
        ([{"role": "system", "content": "Be brief."}], "Hello from Portico's mock provider."),
    ],
    ids=["empty-user-message", "no-user-message"],
)
async def test_it_answers_something_when_there_is_nothing_to_echo(
    mock_client: httpx.AsyncClient, messages: list[dict[str, Any]], reply: str
) -> None:
    body = await completion(mock_client, messages=messages)

    assert body["choices"][0]["message"]["content"] == reply


async def test_it_answers_n_choices(mock_client: httpx.AsyncClient) -> None:
    body = await completion(mock_client, messages=[user("again")], n=3)

    assert [choice["index"] for choice in body["choices"]] == [0, 1, 2]
    assert {choice["message"]["content"] for choice in body["choices"]} == {"again"}
    assert body["usage"] == {"prompt_tokens": 1, "completion_tokens": 3, "total_tokens": 4}


async def test_it_streams_every_one_of_n_choices(mock_client: httpx.AsyncClient) -> None:
    events = await stream_events(mock_client, messages=[user("hello again")], n=2)

    # The last chunk before [DONE] is the usage Portico asks every upstream for; it has no choices.
    chunks = [orjson.loads(event) for event in events[:-2]]
    for index in (0, 1):
        mine = [chunk["choices"][0] for chunk in chunks if chunk["choices"][0]["index"] == index]
        assert "".join(choice["delta"].get("content", "") for choice in mine) == "hello again"
        assert mine[-1]["finish_reason"] == "stop"


async def test_it_reports_one_token_per_word(mock_client: httpx.AsyncClient) -> None:
    messages = [{"role": "system", "content": "Be very brief."}, user("count these four words")]

    body = await completion(mock_client, messages=messages)

    assert body["usage"] == {"prompt_tokens": 7, "completion_tokens": 4, "total_tokens": 11}


async def test_its_answers_are_deterministic_but_for_the_id(mock_client: httpx.AsyncClient) -> None:
    first = await completion(mock_client, messages=[user("same")])
    second = await completion(mock_client, messages=[user("same")])

    assert first.pop("id") != second.pop("id")
    assert first == second


async def test_it_streams_word_by_word_and_ends_with_done(mock_client: httpx.AsyncClient) -> None:
    events = await stream_events(mock_client, messages=[user("one two  three")])

    assert events[-1] == b"[DONE]"
    *chunks, usage = [orjson.loads(event) for event in events[:-1]]
    assert (usage["choices"], usage["usage"]["completion_tokens"]) == ([], 3)  # Portico asks upstreams for usage
    deltas = [chunk["choices"][0]["delta"] for chunk in chunks]
    assert deltas == [
        {"role": "assistant", "content": ""},
        {"content": "one"},
        {"content": " two"},
        {"content": " three"},
        {},
    ]
    assert [chunk["choices"][0]["finish_reason"] for chunk in chunks] == [None, None, None, None, "stop"]
    assert {chunk["object"] for chunk in chunks} == {"chat.completion.chunk"}
    assert {chunk["model"] for chunk in chunks} == {"mock-echo"}
    assert len({chunk["id"] for chunk in chunks}) == 1
    assert all(chunk["usage"] is None for chunk in chunks)


async def test_it_streams_usage_last_when_asked(mock_client: httpx.AsyncClient) -> None:
    events = await stream_events(mock_client, messages=[user("one two three")], stream_options={"include_usage": True})

    assert events[-1] == b"[DONE]"
    *content, last = [orjson.loads(event) for event in events[:-1]]
    assert all(chunk["usage"] is None for chunk in content)
    assert last["choices"] == []
    assert last["usage"] == {"prompt_tokens": 3, "completion_tokens": 3, "total_tokens": 6}


async def test_it_lists_its_models(mock_client: httpx.AsyncClient) -> None:
    request = MockAdapter().models_request(MOCK)

    response = await mock_client.request(request.method, request.url, headers=request.headers)

    assert response.status_code == 200
    assert [model["id"] for model in response.json()["data"]] == ["mock-echo"]
    assert response.json()["object"] == "list"


async def test_an_unknown_path_is_an_openai_404(mock_client: httpx.AsyncClient) -> None:
    response = await mock_client.get(f"{MOCK_BASE_URL}/embeddings")

    assert response.status_code == 404
    assert response.json()["error"]["code"] == "unknown_url"
    assert set(response.json()["error"]) == {"message", "type", "param", "code"}


async def test_its_answer_is_rewritten_to_the_public_model(mock_client: httpx.AsyncClient) -> None:
    response = await ask(mock_client, messages=[user("hi")])

    rewritten = MockAdapter().response("chat", Target(MOCK, "mock-echo", "house-echo"), response.content)

    assert orjson.loads(rewritten)["model"] == "house-echo"


def test_its_request_carries_the_upstream_model_and_no_credential() -> None:
    request = MockAdapter().request(
        "chat", Target(MOCK, "mock-echo", "house-model"), {"model": "house-echo", "messages": [user("hi")]}
    )

    assert request.url == f"{MOCK_BASE_URL}/chat/completions"
    assert orjson.loads(request.content)["model"] == "mock-echo"
    assert "authorization" not in request.headers


async def test_it_refuses_more_choices_than_openai_allows(mock_client: httpx.AsyncClient) -> None:
    response = await ask(mock_client, messages=[user("again")], n=129)

    assert response.status_code == 400
    assert orjson.loads(response.content)["error"] == {
        "message": "Invalid 'n': integer above maximum value. Expected a value <= 128, but got 129 instead.",
        "type": "invalid_request_error",
        "param": "n",
        "code": "integer_above_max_value",
    }


async def test_a_huge_message_asked_for_many_times_echoes_a_bounded_answer(mock_client: httpx.AsyncClient) -> None:
    message = "word " * 200_000  # 1 MB

    body = await completion(mock_client, messages=[user(message)], n=128)

    texts = [choice["message"]["content"] for choice in body["choices"]]
    assert len(texts) == 128
    assert sum(map(len, texts)) <= MAX_ECHO_CHARS
    assert message.startswith(texts[0])
    assert texts[0].endswith("word")  # cut between words
    assert {choice["finish_reason"] for choice in body["choices"]} == {"length"}


async def test_a_huge_message_streams_a_bounded_answer_too(mock_client: httpx.AsyncClient) -> None:
    events = await stream_events(mock_client, messages=[user("word " * 200_000)], n=128)

    chunks = [orjson.loads(event) for event in events[:-2]]
    echoed = "".join(choice["delta"].get("content", "") for chunk in chunks for choice in chunk["choices"])
    assert len(echoed) <= MAX_ECHO_CHARS
    assert {chunk["choices"][0]["finish_reason"] for chunk in chunks} == {None, "length"}
