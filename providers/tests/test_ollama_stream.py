"""Ollama's NDJSON chat stream in, OpenAI chunks out: exact sequences."""

from __future__ import annotations

import re
from typing import Any

import orjson
import pytest

from providers.adapters.base import Target
from providers.adapters.ollama import OllamaAdapter, OllamaChatStream
from providers.redaction import Redactor
from providers.tests.factories import UPSTREAM_CREDENTIAL as CREDENTIAL
from providers.tests.factories import make_provider_info

CREATED_AT = "2024-07-22T20:33:28.123648Z"
CREATED = 1721680408
USAGE = {"prompt_tokens": 26, "completion_tokens": 3, "total_tokens": 29}


def line(content: str = "", *, done: bool = False, **extra: Any) -> bytes:
    message = {"role": "assistant", "content": content, **extra.pop("message", {})}
    return orjson.dumps({"model": "llama3.2", "created_at": CREATED_AT, "message": message, "done": done, **extra})


def final(done_reason: str = "stop", **extra: Any) -> bytes:
    return line(done=True, done_reason=done_reason, prompt_eval_count=26, eval_count=3, total_duration=1, **extra)


def chunk(delta: dict[str, Any], finish: str | None = None) -> dict[str, Any]:
    choice = {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}
    return {
        "id": "chatcmpl-test",
        "object": "chat.completion.chunk",
        "created": CREATED,
        "model": "house-model",
        "choices": [choice],
    }


def with_usage(*chunks: dict[str, Any]) -> list[dict[str, Any]]:
    """The chunks as sent once usage is asked for: `usage: null` on each, then the usage chunk."""
    usage_chunk = {**chunk({}), "choices": [], "usage": USAGE}
    return [{**each, "usage": None} for each in chunks] + [usage_chunk]


ROLE = chunk({"role": "assistant", "content": ""})
WEATHER_CALLS = [
    {"function": {"index": 0, "name": "get_weather", "arguments": {"city": "Paris"}}},
    {"function": {"index": 1, "name": "get_weather", "arguments": {"city": "Lyon", "days": 2}}},
]


def call_delta(index: int, name: str, arguments: str) -> dict[str, Any]:
    return chunk(
        {
            "tool_calls": [
                {"index": index, "id": "ID", "type": "function", "function": {"name": name, "arguments": arguments}}
            ]
        }
    )


def run(lines: list[bytes], *, include_usage: bool = False) -> tuple[list[dict[str, Any]], OllamaChatStream]:
    translator = OllamaChatStream(
        "house-model",
        include_usage=include_usage,
        redactor=Redactor([CREDENTIAL]),
        completion_id="chatcmpl-test",
        clock=lambda: 0,
    )
    out = [orjson.loads(event) for each in lines for event in translator.feed(each)]
    for event in out:
        for call in (event.get("choices") or [{}])[0].get("delta", {}).get("tool_calls", ()):
            assert re.fullmatch(r"call_[0-9a-f]{24}", call["id"])
            call["id"] = "ID"
    return out, translator


@pytest.mark.parametrize(
    ("lines", "include_usage", "expected"),
    [
        pytest.param(
            [line("The"), line(" sky"), line(" is"), final()],
            False,
            [ROLE, chunk({"content": "The"}), chunk({"content": " sky"}), chunk({"content": " is"}), chunk({}, "stop")],
            id="text",
        ),
        pytest.param(
            [line("Hi"), final()],
            True,
            with_usage(ROLE, chunk({"content": "Hi"}), chunk({}, "stop")),
            id="text with usage asked for",
        ),
        pytest.param(
            [line("Hi"), line(""), final("length")],
            False,
            [ROLE, chunk({"content": "Hi"}), chunk({}, "length")],
            id="an empty line of content and a length stop",
        ),
        pytest.param(
            [final()],
            False,
            [ROLE, chunk({}, "stop")],
            id="an empty answer",
        ),
        pytest.param(
            [line(message={"tool_calls": WEATHER_CALLS}), final()],
            False,
            [
                ROLE,
                call_delta(0, "get_weather", '{"city":"Paris"}'),
                call_delta(1, "get_weather", '{"city":"Lyon","days":2}'),
                chunk({}, "tool_calls"),
            ],
            id="two tool calls in one line",
        ),
        pytest.param(
            [
                line("Let me check."),
                line(message={"tool_calls": WEATHER_CALLS[:1]}),
                line(message={"tool_calls": WEATHER_CALLS[1:]}),
                final(),
            ],
            True,
            with_usage(
                ROLE,
                chunk({"content": "Let me check."}),
                call_delta(0, "get_weather", '{"city":"Paris"}'),
                call_delta(1, "get_weather", '{"city":"Lyon","days":2}'),
                chunk({}, "tool_calls"),
            ),
            id="text then tool calls across lines",
        ),
        pytest.param(
            [line("Hi", message={"thinking": "hmm"}), final()],
            False,
            [ROLE, chunk({"content": "Hi"}), chunk({}, "stop")],
            id="thinking is not relayed",
        ),
    ],
)
def test_ndjson_lines_become_openai_chunks(
    lines: list[bytes], include_usage: bool, expected: list[dict[str, Any]]
) -> None:
    out, translator = run(lines, include_usage=include_usage)

    assert out == expected
    assert translator.done
    assert translator.usage == USAGE


def test_a_stream_cut_before_its_last_line_is_not_done() -> None:
    out, translator = run([line("The"), line(" sky")])

    assert out == [ROLE, chunk({"content": "The"}), chunk({"content": " sky"})]
    assert not translator.done
    assert translator.usage is None


@pytest.mark.parametrize(
    ("lines", "message"),
    [
        (
            [orjson.dumps({"error": f"runner died, key {CREDENTIAL}"})],
            "The upstream provider failed: runner died, key [redacted]",
        ),
        ([b"{not json"], "The upstream provider sent a malformed stream line."),
        ([b"[1, 2]"], "The upstream provider sent a malformed stream line."),
    ],
)
def test_an_error_line_becomes_an_openai_error_payload(lines: list[bytes], message: str) -> None:
    out, translator = run(lines)

    assert out == [{"error": {"message": message, "type": "api_error", "param": None, "code": None}}]
    assert not translator.done


def test_an_error_after_some_content_follows_it() -> None:
    out, translator = run([line("Hi"), orjson.dumps({"error": "out of memory"})])

    assert out[:2] == [ROLE, chunk({"content": "Hi"})]
    assert out[2]["error"]["message"] == "The upstream provider failed: out of memory"
    assert not translator.done


def test_a_credential_quoted_in_content_is_redacted() -> None:
    out, _ = run([line(f"the key is {CREDENTIAL}"), final()])

    assert out[1] == chunk({"content": "the key is [redacted]"})


def test_blank_lines_are_skipped() -> None:
    out, _ = run([b"", b"  ", line("Hi"), final()])

    assert out == [ROLE, chunk({"content": "Hi"}), chunk({}, "stop")]


def test_a_line_without_a_timestamp_dates_the_stream_by_the_clock() -> None:
    translator = OllamaChatStream("m", include_usage=False, clock=lambda: 1_700_000_000.2)

    (role,) = translator.feed(b'{"message": {"role": "assistant", "content": ""}, "done": false}')

    assert orjson.loads(role)["created"] == 1_700_000_000


def test_the_adapter_gives_each_stream_its_own_completion_id() -> None:
    provider = make_provider_info(kind="ollama", base_url="http://ollama.test:11434")
    target = Target(provider=provider, upstream_model="llama3.2", public_model="house-model")
    adapter = OllamaAdapter()

    ids = {
        orjson.loads(next(iter(adapter.stream_translator("chat", target, include_usage=False).feed(line("x")))))["id"]
        for _ in range(2)
    }

    assert len(ids) == 2
    assert all(re.fullmatch(r"chatcmpl-[0-9a-f]{24}", each) for each in ids)
