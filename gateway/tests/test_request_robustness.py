"""Odd requests in, clean refusals out: every field of a request broken in turn, on every path it takes.

A chat request is counted (the prompt estimate a limited key reserves) and reaches an adapter once
`validate_chat_request` has accepted it. The relay turns an adapter's `UnsupportedParameter` into a 400
naming the parameter; anything else raised on the way would reach the client as a 500. So for requests
that use every part of the chat API, each field in turn is replaced by null, a number, a string, a list
or an object, or removed; every mutant the validator accepts must be counted, and translate for every
kind or be refused with `UnsupportedParameter`. What a kind refuses of the request itself is left out of
its mutants' base, so that they reach the rest of its translation.

The Responses API and Anthropic's Messages API are translated into chat requests first: their mutants
must be refused with an `InvalidRequest`, or become chat requests that pass the same way.
"""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from billing.tokens import count_chat_prompt
from gateway.errors import InvalidRequest
from gateway.messages.requests import chat_request
from gateway.messages.validation import validate_message_request
from gateway.responses.requests import chat_body, validate_responses_request
from gateway.validation import validate_chat_request
from providers.adapters import ADAPTERS
from providers.adapters.base import Target, UnsupportedParameter
from providers.tests.factories import make_provider_info
from tests.mutants import mutants

FUNCTION_CALL = {
    "id": "call_1",
    "type": "function",
    "function": {"name": "get_weather", "arguments": '{"city":"Paris"}'},
}
REQUEST: dict[str, Any] = {
    "model": "house-model",
    "messages": [
        {"role": "developer", "content": "Be brief."},
        {"role": "system", "content": [{"type": "text", "text": "Be kind."}]},
        {
            "role": "user",
            "content": [
                {"type": "text", "text": "What is the weather where this was taken?"},
                {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0KGgo=", "detail": "low"}},
            ],
            "name": "ada",
        },
        {"role": "assistant", "content": None, "tool_calls": [FUNCTION_CALL]},
        {"role": "tool", "tool_call_id": "call_1", "content": [{"type": "text", "text": "sunny"}]},
        {"role": "assistant", "content": "Sunny."},
        {"role": "user", "content": "Thanks"},
    ],
    "tools": [
        {
            "type": "function",
            "function": {
                "name": "get_weather",
                "description": "The weather in a city",
                "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
                "strict": True,
            },
        }
    ],
    "tool_choice": {"type": "function", "function": {"name": "get_weather"}},
    "response_format": {"type": "json_schema", "json_schema": {"name": "w", "schema": {"type": "object"}}},
    "max_tokens": 64,
    "temperature": 0.5,
    "top_p": 0.9,
    "stop": ["\n\n"],
    "seed": 7,
    "user": "u-1",
    "metadata": {"team": "a"},
}
STREAMED = {**REQUEST, "stream": True, "stream_options": {"include_usage": True}}
# The other parameters, on a request without tools (which some kinds refuse whole).
SAMPLING: dict[str, Any] = {
    "model": "house-model",
    "messages": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hello"}],
    "max_completion_tokens": 64,
    "n": 1,
    "presence_penalty": 0.5,
    "frequency_penalty": 0.5,
    "logit_bias": {"50256": -100},
    "logprobs": True,
    "top_logprobs": 2,
    "reasoning_effort": "low",
    "response_format": {"type": "json_object"},
    "stop": "END",
    "service_tier": "auto",
    "store": False,
    "modalities": ["text"],
    "functions": [{"name": "f", "parameters": {"type": "object"}}],
    "function_call": {"name": "f"},
}
# The other shapes of tools: a custom (free-form) tool, its call, and a choice among allowed tools.
CUSTOM: dict[str, Any] = {
    "model": "house-model",
    "messages": [
        {"role": "user", "content": "How many rows?"},
        {"role": "assistant", "tool_calls": [{"id": "c", "type": "custom", "custom": {"name": "sql", "input": "1"}}]},
        {"role": "tool", "tool_call_id": "c", "content": "3"},
        {"role": "user", "content": "And now?"},
    ],
    "tools": [{"type": "custom", "custom": {"name": "sql"}}, REQUEST["tools"][0]],
    "tool_choice": {"type": "allowed_tools", "allowed_tools": {"mode": "auto", "tools": [{"type": "custom"}]}},
}
RESPONSES_REQUEST: dict[str, Any] = {
    "model": "house-model",
    "instructions": "Be brief.",
    "input": [
        {
            "role": "user",
            "content": [
                {"type": "input_text", "text": "What is the weather here?"},
                {"type": "input_image", "image_url": "data:image/png;base64,iVBORw0KGgo=", "detail": "low"},
            ],
        },
        {"type": "function_call", "call_id": "call_1", "name": "get_weather", "arguments": '{"city":"P"}'},
        {"type": "function_call_output", "call_id": "call_1", "output": "sunny"},
        {"role": "assistant", "content": [{"type": "output_text", "text": "Sunny."}]},
    ],
    "tools": [{"type": "function", "name": "get_weather", "parameters": {"type": "object"}, "strict": True}],
    "tool_choice": {"type": "function", "name": "get_weather"},
    "text": {"format": {"type": "json_schema", "name": "w", "schema": {"type": "object"}}},
    "reasoning": {"effort": "low"},
    "max_output_tokens": 64,
    "temperature": 0.5,
    "metadata": {"team": "a"},
    "stream": True,
}
MESSAGES_REQUEST: dict[str, Any] = {
    "model": "house-model",
    "max_tokens": 64,
    "system": [{"type": "text", "text": "Be brief."}],
    "messages": [
        {
            "role": "user",
            "content": [
                {"type": "text", "text": "What is the weather here?"},
                {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": "iVBORw0KGgo="}},
            ],
        },
        {"role": "assistant", "content": [{"type": "tool_use", "id": "t1", "name": "get_weather", "input": {}}]},
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "t1", "content": "sunny"}]},
    ],
    "tools": [{"name": "get_weather", "description": "The weather", "input_schema": {"type": "object"}}],
    "tool_choice": {"type": "tool", "name": "get_weather"},
    "stop_sequences": ["END"],
    "temperature": 0.5,
    "metadata": {"user_id": "u-1"},
    "stream": True,
}


def _accepted(body: Any) -> bool:
    if not isinstance(body, dict):
        return False
    try:
        validate_chat_request(body)
    except InvalidRequest:
        return False
    return True


def _supported(adapter: Any, target: Target, body: dict[str, Any]) -> dict[str, Any]:
    """`body` without what the kind refuses (a parameter, or a message), so that its mutants reach the translation."""
    for _ in range(len(body) + len(body["messages"])):
        try:
            adapter.request("chat", target, dict(body))
        except UnsupportedParameter as exc:
            head, _, rest = (exc.param or "").partition("[")
            if head.startswith("messages") and rest:
                index = int(rest.partition("]")[0])
                body = {**body, "messages": [m for at, m in enumerate(body["messages"]) if at != index]}
            else:
                body = {name: value for name, value in body.items() if name != head.partition(".")[0]}
        else:
            return body
    raise AssertionError(f"{adapter.kind} translates no part of the request")


def _chat_kinds() -> list[str]:
    return sorted(kind for kind, adapter in ADAPTERS.items() if "chat" in adapter.operations)


def _target(kind: str) -> Target:
    return Target(make_provider_info(kind=kind, base_url="http://upstream.test"), "upstream-model", "house-model")


def _passes(chat: dict[str, Any], kind: str, where: str) -> None:
    """An accepted chat request is counted, and translated by `kind` or refused with UnsupportedParameter."""
    try:
        count_chat_prompt(chat, model="gpt-4o")
        upstream = ADAPTERS[kind].request("chat", _target(kind), dict(chat))
    except UnsupportedParameter:
        return
    except Exception as exc:  # noqa: BLE001 - the point: which mutant, and what it raised
        pytest.fail(f"{kind}: {where} raised {exc!r}")
    assert isinstance(upstream.content, bytes)
    orjson.loads(upstream.content)  # what goes upstream is JSON
    if b'"name":null' not in orjson.dumps(chat):  # a null the client sent is passed through by some kinds
        assert b'"name":null' not in upstream.content, f"{kind}: {where} sent a tool or call without its name"


@pytest.mark.parametrize("kind", _chat_kinds())
@pytest.mark.parametrize(
    "request_body", [REQUEST, STREAMED, SAMPLING, CUSTOM], ids=["whole", "streamed", "sampling", "custom"]
)
def test_every_accepted_mutant_of_a_chat_request_is_counted_and_translates_or_is_refused_cleanly(
    kind: str, request_body: dict[str, Any]
) -> None:
    tried = 0
    for path, mutant in mutants(_supported(ADAPTERS[kind], _target(kind), request_body)):
        if _accepted(mutant):
            tried += 1
            _passes(mutant, kind, path)
    assert tried >= 10  # enough of them reached the translation for the test to mean something


def _responses_chat(body: dict[str, Any]) -> dict[str, Any]:
    validate_responses_request(body)
    chat = chat_body(body)
    validate_chat_request(chat)
    return chat


def _messages_chat(body: dict[str, Any]) -> dict[str, Any]:
    validate_message_request(body)
    return chat_request(body).body


@pytest.mark.parametrize(
    ("request_body", "to_chat"),
    [(RESPONSES_REQUEST, _responses_chat), (MESSAGES_REQUEST, _messages_chat)],
    ids=["responses", "messages"],
)
def test_every_mutant_of_a_responses_or_messages_request_is_refused_or_becomes_a_chat_request_that_passes(
    request_body: dict[str, Any], to_chat: Any
) -> None:
    tried = 0
    for path, mutant in mutants(request_body):
        if not isinstance(mutant, dict):
            continue
        try:
            chat = to_chat(dict(mutant))
        except InvalidRequest:
            continue
        except Exception as exc:  # noqa: BLE001 - the point: which mutant, and what it raised
            pytest.fail(f"{path} raised {exc!r}")
        tried += 1
        for kind in _chat_kinds():
            _passes(chat, kind, path)
    assert tried >= 50
