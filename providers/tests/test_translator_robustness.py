"""Malformed answers in, clean failures out: every kind, every field of its answers broken in turn.

The relay turns a ValueError from an adapter's `response()` or a stream translator's `feed()` into an
upstream error, and `FailedAnswer` into the upstream's reported failure; anything else would reach the
client as a 500. So for valid answers and streams of each kind (the translated ones, and the OpenAI and
Azure kinds, whose answers are passed through and shaped), every field in turn is replaced by
null, a number, a string, a list or an object, or removed, and the mutant is translated: it must fail
with one of those two, or translate to what Portico can relay and bill: OpenAI's shapes, with usage
counts that are integers.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import orjson
import pytest

from providers.adapters import wire
from providers.adapters.anthropic import AnthropicAdapter
from providers.adapters.azure import AzureOpenAIAdapter
from providers.adapters.base import Target
from providers.adapters.cohere import CohereAdapter
from providers.adapters.failures import FailedAnswer
from providers.adapters.gemini import GeminiAdapter
from providers.adapters.ollama import OllamaAdapter
from providers.adapters.openai import OpenAIAdapter
from providers.adapters.replicate import ReplicateAdapter
from providers.redaction import Redactor
from providers.tests.factories import UPSTREAM_CREDENTIAL, make_provider_info
from tests.fakes import cohere_upstream, gemini_upstream, ollama_upstream, openai_upstream
from tests.fakes.anthropic_upstream import recording_events, replayed_message
from tests.fakes.azure_upstream import CONTENT_FILTER_RESULTS, PROMPT_FILTER_RESULTS, prompt_filter_chunk
from tests.mutants import mutants
from tests.openai_schemas import assert_valid

CLEAN = (ValueError, FailedAnswer)
USAGE_COUNTS = ("prompt_tokens", "completion_tokens", "total_tokens")


@dataclass(frozen=True)
class Kind:
    name: str
    adapter: Any
    target: Target
    answers: tuple[dict[str, Any], ...]
    streams: tuple[tuple[Any, ...], ...]  # each a stream's events, as JSON values
    wire: Callable[[Any], bytes] = orjson.dumps  # an event as the splitter hands it over
    breaks: Callable[[Any], Iterator[tuple[str, Any]]] = lambda event: mutants(event)  # an event's mutants
    operation: str = "chat"


def _clock() -> float:
    return 1_750_000_000.0


def _target(kind: str) -> Target:
    return Target(make_provider_info(kind=kind, base_url="http://upstream.test"), "upstream-model", "house-model")


def _anthropic_data(recording: str) -> tuple[Any, ...]:
    return tuple(orjson.loads(event.split(b"data: ", 1)[1]) for event in recording_events(recording))


def _cohere_kind() -> Kind:
    reply = cohere_upstream.reply_events(cohere_upstream.Reply())
    tools = cohere_upstream.tool_call_events(cohere_upstream.CallTools())
    thinking = [
        {"type": "content-start", "index": 0, "delta": {"message": {"content": {"type": "thinking", "thinking": ""}}}},
        {"type": "message-end", "delta": {"finish_reason": "ERROR", "error": "overloaded"}},
    ]
    answers = (cohere_upstream.whole_answer(reply), cohere_upstream.whole_answer(tools))
    return Kind(
        "cohere", CohereAdapter(clock=_clock), _target("cohere"), answers, (tuple(reply), tuple(tools), tuple(thinking))
    )


def _ollama_kind() -> Kind:
    reply = ollama_upstream.reply_lines("llama3.2", ollama_upstream.Reply())
    tools = ollama_upstream.tool_call_lines("llama3.2", ollama_upstream.CallTools())
    answers = (ollama_upstream.whole_answer(reply), ollama_upstream.whole_answer(tools))
    return Kind("ollama", OllamaAdapter(), _target("ollama"), answers, (tuple(reply), tuple(tools)))


def _replicate_event(event: tuple[str, Any]) -> bytes:
    name, data = event
    return name.encode() + b"\n" + (data if isinstance(data, bytes) else orjson.dumps(data))


def _replicate_mutants(event: tuple[str, Any]) -> Iterator[tuple[str, Any]]:
    name, data = event
    if not isinstance(data, bytes):
        for path, broken in mutants(data):
            yield path, (name, broken)


def _replicate_kind() -> Kind:
    prediction = {
        "id": "gm3qorzdhgbfurvjtvhg6dckhu",
        "status": "succeeded",
        "created_at": "2024-07-22T20:33:28.123648Z",
        "input": {"prompt": "Hello", "max_tokens": 3},
        "output": ["Hi", " there", "!"],
        "error": None,
        "metrics": {"predict_time": 0.4, "input_token_count": 12, "output_token_count": 3},
    }
    # Only `done` and `error` carry JSON; `output` data is the text itself, whatever it holds.
    reply = (("output", b"Hi"), ("output", b" there"), ("done", {}))
    failed = (("output", b"Once"), ("error", {"detail": "CUDA out of memory"}), ("done", {"reason": "error"}))
    return Kind(
        "replicate",
        ReplicateAdapter(),
        _target("replicate"),
        (prediction, {**prediction, "output": "Hi there!"}),
        (reply, failed, (("done", {"reason": "canceled"}),)),
        wire=_replicate_event,
        breaks=_replicate_mutants,
    )


def _openai_wire(event: Any) -> bytes:
    return event if isinstance(event, bytes) else orjson.dumps(event)  # bytes: `[DONE]`, sent as it is


def _openai_mutants(event: Any) -> Iterator[tuple[str, Any]]:
    if not isinstance(event, bytes):
        yield from mutants(event)


def _openai_answers() -> tuple[dict[str, Any], ...]:
    text = openai_upstream.completion("upstream-model", openai_upstream.Reply("Hi there"), 1)
    text["usage"]["prompt_tokens_details"] = {"cached_tokens": 2}
    text["usage"]["completion_tokens_details"] = {"reasoning_tokens": 0}
    tools = openai_upstream.completion("upstream-model", openai_upstream.Reply(""), 1)
    call = {"id": "call_1", "type": "function", "function": {"name": "get_weather", "arguments": '{"city":"Paris"}'}}
    message = {"role": "assistant", "content": None, "tool_calls": [call]}
    tools["choices"][0].update(finish_reason="tool_calls", message=message)
    return text, tools


def _openai_streams() -> tuple[tuple[Any, ...], ...]:
    events = openai_upstream.stream_events("upstream-model", "Hi there", prompt_tokens=5, include_usage=True)
    text = (*(orjson.loads(event) for event in events), b"[DONE]")
    base = {"id": "chatcmpl-tools", "object": "chat.completion.chunk", "created": 1_700_000_000, "model": "m"}
    call = {"index": 0, "id": "call_1", "type": "function", "function": {"name": "get_weather", "arguments": ""}}
    opening = {"index": 0, "delta": {"role": "assistant", "tool_calls": [call]}, "finish_reason": None}
    tools = (
        {**base, "choices": [opening]},
        {**base, "choices": [{"index": 0, "delta": {"tool_calls": [{"index": 0, "function": {"arguments": "{}"}}]}}]},
        # Usage on the last choice chunk, as some servers send it.
        {**base, "choices": [{"index": 0, "delta": {}, "finish_reason": "tool_calls"}], "usage": text[-2]["usage"]},
        b"[DONE]",
    )
    failed = (text[0], {"error": {"message": "overloaded", "type": "server_error", "param": None, "code": None}})
    return text, tools, failed


def _azure_kind() -> Kind:
    answers = tuple(
        {
            **answer,
            "prompt_filter_results": PROMPT_FILTER_RESULTS,
            "choices": [{**choice, "content_filter_results": CONTENT_FILTER_RESULTS} for choice in answer["choices"]],
        }
        for answer in _openai_answers()
    )
    text, tools, failed = _openai_streams()
    opening = orjson.loads(prompt_filter_chunk())
    streams = ((opening, *text), (opening, *tools), failed)
    return Kind(
        "azure", AzureOpenAIAdapter(), _target("azure"), answers, streams, wire=_openai_wire, breaks=_openai_mutants
    )


def _kinds() -> list[Kind]:
    gemini_reply = gemini_upstream.Reply(thoughts_tokens=5, cached_tokens=2)
    gemini_tools = gemini_upstream.CallTools(text="Let me look.", signature="c2lnbmF0dXJl")
    gemini_failure = {"error": {"code": 503, "message": "overloaded", "status": "UNAVAILABLE"}}
    blocked = gemini_upstream.blocked_answer(gemini_upstream.Blocked())
    return [
        Kind(
            "anthropic",
            AnthropicAdapter(clock=_clock),
            _target("anthropic"),
            (replayed_message("parallel_tool_calls"), replayed_message("thinking"), replayed_message("text_answer")),
            tuple(_anthropic_data(name) for name in ("parallel_tool_calls", "thinking", "overloaded_midstream")),
        ),
        Kind(
            "gemini",
            GeminiAdapter(clock=_clock),
            _target("gemini"),
            (gemini_upstream.whole_reply(gemini_reply, 2), gemini_upstream.whole_tools(gemini_tools), blocked),
            (
                tuple(gemini_upstream.reply_events(gemini_reply, 2)),
                tuple(gemini_upstream.tool_events(gemini_tools)),
                (blocked, gemini_failure),
            ),
        ),
        _cohere_kind(),
        _ollama_kind(),
        _replicate_kind(),
        Kind(
            "openai",
            OpenAIAdapter(),
            _target("openai"),
            _openai_answers(),
            _openai_streams(),
            wire=_openai_wire,
            breaks=_openai_mutants,
        ),
        _azure_kind(),
    ]


KINDS = {kind.name: kind for kind in _kinds()}


def _check_usage(usage: Any) -> None:
    """Usage Portico bills from: counts that are integers, as the ledger needs them."""
    if usage is None:
        return
    assert isinstance(usage, dict), f"usage is {usage!r}"
    for name in USAGE_COUNTS:
        count = usage.get(name)
        if count is not None or name != "completion_tokens":  # an embeddings answer counts no completion
            assert type(count) is int, f"usage {name} is {count!r}"
            assert 0 <= count < 2**63, f"usage {name} is {count!r}"


def _check_answer(kind: Kind, payload: bytes) -> None:
    try:
        wire.upstream_id(kind.adapter, payload)  # read by the relay before the answer is
        out = kind.adapter.response(kind.operation, kind.target, payload)
    except CLEAN:
        return
    body = orjson.loads(out)
    assert_valid("CreateChatCompletionResponse", body)
    _check_usage(body.get("usage"))


def _check_stream(kind: Kind, events: list[Any], broken: int) -> None:
    """Feeds the stream; the chunks of the broken event and of the last one must be OpenAI's (the others are
    those of the valid stream, and validating every chunk of every mutant would take minutes)."""
    translator = kind.adapter.stream_translator(
        kind.operation, kind.target, include_usage=True, redactor=Redactor([UPSTREAM_CREDENTIAL])
    )
    try:
        for position, event in enumerate(events):
            for chunk in translator.feed(kind.wire(event)):
                data = orjson.loads(chunk)
                assert isinstance(data, dict)
                if position in (broken, len(events) - 1) and "error" not in data:
                    assert_valid("CreateChatCompletionStreamResponse", data)
    except CLEAN:
        return
    if translator.done and not translator.failed:
        _check_usage(translator.usage)


def _crashes(check: Callable[..., None], *args: Any) -> str:
    try:
        check(*args)
    except Exception as exc:  # noqa: BLE001 - what escapes is exactly what this test looks for
        return f"{type(exc).__name__}: {exc}"
    return ""


def _sample_answers(kind: Kind) -> tuple[dict[str, Any], ...]:
    # A sample that already fails would hide what its mutants do.
    for answer in kind.answers:
        kind.adapter.response(kind.operation, kind.target, orjson.dumps(answer))
    return kind.answers


def _sample_streams(kind: Kind) -> tuple[tuple[Any, ...], ...]:
    for stream in kind.streams:
        translator = kind.adapter.stream_translator(kind.operation, kind.target, include_usage=True)
        for event in stream:
            list(translator.feed(kind.wire(event)))
        assert translator.done or translator.failed, f"a {kind.name} sample stream does not end"
    return kind.streams


@pytest.mark.parametrize("name", KINDS)
def test_a_broken_whole_answer_fails_cleanly(name: str) -> None:
    kind = KINDS[name]
    found = [
        f"answer {number}{path}: {crash}"
        for number, answer in enumerate(_sample_answers(kind))
        for path, mutant in mutants(answer)
        if (crash := _crashes(_check_answer, kind, orjson.dumps(mutant)))
    ]
    assert not found, "\n".join(sorted(set(found))[:40])


@pytest.mark.parametrize("name", KINDS)
def test_a_broken_stream_event_fails_cleanly(name: str) -> None:
    kind = KINDS[name]
    found = []
    for number, stream in enumerate(_sample_streams(kind)):
        for position, event in enumerate(stream):
            for path, mutant in kind.breaks(event):
                events = [*stream[:position], mutant, *stream[position + 1 :]]
                if crash := _crashes(_check_stream, kind, events, position):
                    found.append(f"stream {number} event {position}{path}: {crash}")
    assert not found, "\n".join(sorted(set(found))[:40])


@pytest.mark.parametrize("name", ["cohere", "gemini", "ollama"])
def test_a_broken_embeddings_answer_fails_cleanly(name: str) -> None:
    kind = KINDS[name]
    answers = {
        "cohere": {"id": "e1", "embeddings": {"float": [[0.5, 0.25]]}, "meta": {"billed_units": {"input_tokens": 3}}},
        "gemini": {"embeddings": [{"values": [0.5, 0.25]}], "usageMetadata": {"promptTokenCount": 3}},
        "ollama": {"model": "nomic", "embeddings": [[0.5, 0.25]], "prompt_eval_count": 3},
    }
    found = []
    for path, mutant in mutants(answers[name]):
        payload = orjson.dumps(mutant)
        if crash := _crashes(_embeddings, kind, payload):
            found.append(f"embeddings{path}: {crash}")
    assert not found, "\n".join(sorted(set(found))[:40])


def _embeddings(kind: Kind, payload: bytes) -> None:
    try:
        out = kind.adapter.response("embeddings", kind.target, payload)
    except CLEAN:
        return
    usage = orjson.loads(out).get("usage")  # Gemini leaves it out when it was given no count
    if usage is not None:
        _check_usage({**usage, "completion_tokens": None})
