"""OpenAI's chat shapes enforced on OpenAI-compatible answers: each deviation, and exact chunks left alone."""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from providers.adapters import adapter_for
from providers.adapters.answers import whole_answer
from providers.adapters.base import Target
from providers.adapters.openai import exact_completion
from providers.adapters.shapes import ChunkShaper, chunk_is_exact, completion_is_exact, shape_completion
from providers.tests.factories import make_provider_info

MODEL = "house-model"
EXACT_CHUNKS = [
    b'{"id":"chatcmpl-1","object":"chat.completion.chunk","created":1700000000,"model":"house-model",'
    b'"system_fingerprint":"fp_1","choices":[{"index":0,"delta":{"role":"assistant","content":"","refusal":null},'
    b'"logprobs":null,"finish_reason":null}]}',
    b'{"id":"chatcmpl-1","object":"chat.completion.chunk","created":1700000000,"model":"house-model",'
    b'"choices":[{"index":0,"delta":{"content":"Hi"},"logprobs":null,"finish_reason":null}],"usage":null}',
    # As Python's json writes it, with spaces.
    b'{"id": "chatcmpl-1", "object": "chat.completion.chunk", "created": 1700000000, "model": "house-model", '
    b'"choices": [{"index": 0, "delta": {"content": "say \\"tool_calls\\" twice"}, "logprobs": null, '
    b'"finish_reason": null}]}',
]


def chunk(**fields: Any) -> dict[str, Any]:
    choice = {"index": 0, "delta": {"content": "Hi"}, "logprobs": None, "finish_reason": None}
    return {
        "id": "chatcmpl-1",
        "object": "chat.completion.chunk",
        "created": 1_700_000_000,
        "model": MODEL,
        "choices": [{**choice, **fields.pop("choice", {})}],
        **fields,
    }


def shaped(value: dict[str, Any]) -> dict[str, Any]:
    return orjson.loads(ChunkShaper(MODEL).shape(orjson.dumps(value)))


@pytest.mark.parametrize("event", EXACT_CHUNKS)
def test_an_exact_chunk_is_passed_on_as_the_very_same_bytes(event: bytes) -> None:
    assert chunk_is_exact(orjson.loads(event))
    assert ChunkShaper(MODEL).shape(event) is event


def test_a_choice_without_logprobs_gets_a_null_one() -> None:
    loose = chunk()
    del loose["choices"][0]["logprobs"]

    assert not chunk_is_exact(loose)
    assert shaped(loose) == chunk()


def test_null_tool_calls_and_a_null_fingerprint_are_left_out() -> None:
    loose = chunk(choice={"delta": {"content": "Hi", "tool_calls": None, "role": None}}, system_fingerprint=None)

    assert shaped(loose) == chunk()


def test_a_chunk_without_id_created_object_or_index_gets_the_streams() -> None:
    shaper = ChunkShaper(MODEL)
    first = orjson.loads(shaper.shape(orjson.dumps(chunk())))
    loose = {"choices": [{"delta": {"content": "there"}}], "model": "upstream-name"}

    second = orjson.loads(shaper.shape(orjson.dumps(loose)))

    assert second == {
        **first,
        "choices": [{"index": 0, "delta": {"content": "there"}, "logprobs": None, "finish_reason": None}],
    }


@pytest.mark.parametrize(("reason", "expected"), [("stop", "stop"), ("eos", "stop"), ("", None), ("length", "length")])
def test_a_finish_reason_openai_does_not_have_reads_as_stop(reason: str, expected: str | None) -> None:
    assert shaped(chunk(choice={"finish_reason": reason}))["choices"][0]["finish_reason"] == expected


def test_tool_call_chunks_lose_their_nulls_and_keep_their_index() -> None:
    call = {"id": None, "type": None, "function": {"name": None, "arguments": '{"a'}}
    loose = chunk(choice={"delta": {"tool_calls": [call]}})

    assert shaped(loose)["choices"][0]["delta"] == {"tool_calls": [{"index": 0, "function": {"arguments": '{"a'}}]}


def test_a_usage_chunk_loses_null_details_and_gains_its_total() -> None:
    usage = {"prompt_tokens": 3, "completion_tokens": 2, "prompt_tokens_details": None}

    assert shaped({**chunk(), "choices": [], "usage": usage})["usage"] == {
        "prompt_tokens": 3,
        "completion_tokens": 2,
        "total_tokens": 5,
    }


def completion(**message: Any) -> dict[str, Any]:
    return {
        "id": "chatcmpl-1",
        "object": "chat.completion",
        "created": 1_700_000_000,
        "model": MODEL,
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": "Hi", "refusal": None, **message},
                "logprobs": None,
                "finish_reason": "stop",
            }
        ],
        "usage": {"prompt_tokens": 3, "completion_tokens": 1, "total_tokens": 4},
    }


def test_an_exact_whole_answer_is_unchanged() -> None:
    assert shape_completion(completion(), MODEL) == completion()


def test_a_whole_answer_gains_refusal_and_logprobs_and_loses_null_tool_calls_and_fingerprint() -> None:
    loose = completion(tool_calls=None)
    del loose["choices"][0]["message"]["refusal"]
    del loose["choices"][0]["logprobs"]
    loose["system_fingerprint"] = None
    loose["model"] = "llama3.2:latest"

    assert shape_completion(loose, MODEL) == completion()


def test_a_whole_answer_without_a_finish_reason_stopped_and_its_tool_calls_are_openais() -> None:
    call = {"function": {"name": "f", "arguments": {"city": "Paris"}}}
    loose = completion(content=None, tool_calls=[call])
    loose["choices"][0]["finish_reason"] = None

    answer = shape_completion(loose, MODEL)

    (shaped_call,) = answer["choices"][0]["message"]["tool_calls"]
    assert answer["choices"][0]["finish_reason"] == "stop"
    assert shaped_call["type"] == "function"
    assert shaped_call["id"].startswith("call_")
    assert shaped_call["function"] == {"name": "f", "arguments": '{"city":"Paris"}'}


def test_a_null_usage_is_left_out_of_a_whole_answer() -> None:
    answer = shape_completion({**completion(), "usage": None}, MODEL)

    assert "usage" not in answer


def test_an_exact_whole_answer_keeps_its_bytes_but_for_the_model() -> None:
    # As Python's json writes it (spaces after separators), and with OpenAI's empty annotations.
    body = completion(annotations=[])
    body["model"] = "gpt-4o-2024-08-06"
    payload = orjson.dumps(body).replace(b'":', b'": ').replace(b",", b", ")
    assert completion_is_exact(orjson.loads(payload))

    assert exact_completion(payload, MODEL)[0] == payload.replace(b'"gpt-4o-2024-08-06"', b'"house-model"')


@pytest.mark.parametrize(
    "loosen",
    [
        lambda body: body["choices"][0].pop("logprobs"),
        lambda body: body["choices"][0]["message"].pop("refusal"),
        lambda body: body["choices"][0]["message"].update(tool_calls=None),
        lambda body: body["choices"][0]["message"].update(annotations=None),
        lambda body: body["choices"][0].update(finish_reason="eos"),
        lambda body: body.update(system_fingerprint=None),
        lambda body: body.update(usage=None),
        lambda body: body["usage"].update(prompt_tokens_details=None),
        lambda body: body.pop("created"),
        lambda body: body.update(created=0),
        lambda body: body.update(id=""),
        lambda body: body["usage"].update(total_tokens=0),
    ],
)
def test_a_whole_answer_with_any_deviation_is_not_taken_for_exact(loosen: Any) -> None:
    body = completion()
    loosen(body)

    assert not completion_is_exact(body)
    assert completion_is_exact(shape_completion(body, MODEL))


@pytest.mark.parametrize("field", [{"id": ""}, {"created": 0}])
def test_a_chunk_with_an_empty_id_or_no_time_is_not_taken_for_exact(field: dict[str, Any]) -> None:
    loose = chunk(**field)

    assert not chunk_is_exact(loose)
    assert chunk_is_exact(shaped(loose))


def _loose() -> dict[str, Any]:
    body = completion()
    body["system_fingerprint"] = None
    del body["choices"][0]["logprobs"]
    return body


def _azure(body: dict[str, Any]) -> dict[str, Any]:
    verdict = {"hate": {"filtered": False, "severity": "safe"}}
    body["prompt_filter_results"] = [{"prompt_index": 0, "content_filter_results": verdict}]
    body["choices"][0]["content_filter_results"] = verdict
    return body


WHOLE_ANSWERS = {
    "exact, named as the public model": lambda: {**completion(), "model": MODEL},
    "exact, named otherwise": lambda: {**completion(), "model": "gpt-4o-2024-08-06"},
    "loose": _loose,
    "an error sent with a 200": lambda: {"error": {"message": "overloaded", "type": "server_error"}},
    "exact, from Azure": lambda: _azure({**completion(), "model": MODEL}),
}


@pytest.mark.parametrize("kind", ["openai", "azure"])
@pytest.mark.parametrize("exact_shapes", [False, True], ids=["checked", "exact_shapes"])
@pytest.mark.parametrize("case", WHOLE_ANSWERS, ids=list(WHOLE_ANSWERS))
def test_an_answer_s_parse_is_what_its_bytes_say(case: str, kind: str, exact_shapes: bool) -> None:
    # The relay reads usage from the parse `answer` hands it, instead of parsing the bytes again: the two must agree.
    adapter = adapter_for(kind)
    provider = make_provider_info(kind=kind, exact_shapes=exact_shapes, api_version="2024-06-01", extra_headers={})
    target = Target(provider, upstream_model="gpt-4o", public_model=MODEL)
    payload = orjson.dumps(WHOLE_ANSWERS[case]())

    content, body = adapter.answer("chat", target, payload)

    assert content == adapter.response("chat", target, payload)
    if body is not None:
        assert body == whole_answer("chat", content)
    if case.startswith("exact, named as") and kind == "openai" and not exact_shapes:
        assert body is not None  # the case the second parse is spared for: an exact answer passed on as it came
