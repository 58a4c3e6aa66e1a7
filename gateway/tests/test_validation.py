"""validate_chat_request: what OpenAI refuses, with OpenAI's message, `param` and `code`; nothing else."""

from __future__ import annotations

from typing import Any

import pytest

from gateway.errors import InvalidRequest
from gateway.validation import validate_chat_request

USER = {"role": "user", "content": "Hello"}
FUNCTION = {"name": "f", "arguments": "{}"}


def chat(**fields: Any) -> dict[str, Any]:
    body: dict[str, Any] = {"model": "gpt-4o", "messages": [USER]}
    body.update(fields)
    return body


def without(name: str) -> dict[str, Any]:
    body = chat()
    del body[name]
    return body


def refusal(body: dict[str, Any]) -> InvalidRequest:
    with pytest.raises(InvalidRequest) as caught:
        validate_chat_request(body)
    return caught.value


# (case id, body, param, code, message)
REFUSED = [
    # --- model and messages -------------------------------------------------
    ("model missing", without("model"), "model", "missing_required_parameter", "Missing required parameter: 'model'."),
    (
        "model not a string",
        chat(model=4),
        "model",
        "invalid_type",
        "Invalid type for 'model': expected a string, but got an integer instead.",
    ),
    (
        "messages missing",
        without("messages"),
        "messages",
        "missing_required_parameter",
        "Missing required parameter: 'messages'.",
    ),
    (
        "messages not a list",
        chat(messages="Hello"),
        "messages",
        "invalid_type",
        "Invalid type for 'messages': expected an array, but got a string instead.",
    ),
    (
        "messages an object",
        chat(messages=USER),
        "messages",
        "invalid_type",
        "Invalid type for 'messages': expected an array, but got an object instead.",
    ),
    (
        "messages empty",
        chat(messages=[]),
        "messages",
        "empty_array",
        "Invalid 'messages': empty array. Expected an array with minimum length 1, but got an empty array instead.",
    ),
    (
        "message not an object",
        chat(messages=["Hello"]),
        "messages[0]",
        "invalid_type",
        "Invalid type for 'messages[0]': expected an object, but got a string instead.",
    ),
    (
        "role missing",
        chat(messages=[{"content": "Hello"}]),
        "messages[0].role",
        "missing_required_parameter",
        "Missing required parameter: 'messages[0].role'.",
    ),
    (
        "role unknown",
        chat(messages=[{"role": "robot", "content": "Hello"}]),
        "messages[0].role",
        "invalid_value",
        "Invalid value: 'robot'. Supported values are: 'system', 'developer', 'user', 'assistant', 'tool', "
        "and 'function'.",
    ),
    (
        "the index names the offending message",
        chat(messages=[USER, USER, {"role": "wizard", "content": "x"}]),
        "messages[2].role",
        "invalid_value",
        None,
    ),
    (
        "user message without content",
        chat(messages=[{"role": "user"}]),
        "messages[0].content",
        "missing_required_parameter",
        "Missing required parameter: 'messages[0].content'.",
    ),
    (
        "user message with null content",
        chat(messages=[{"role": "user", "content": None}]),
        "messages[0].content",
        "invalid_type",
        "Invalid type for 'messages[0].content': expected one of a string or array of objects, but got null instead.",
    ),
    (
        "user message with a number as content",
        chat(messages=[{"role": "user", "content": 42}]),
        "messages[0].content",
        "invalid_type",
        "Invalid type for 'messages[0].content': expected one of a string or array of objects, "
        "but got an integer instead.",
    ),
    (
        "system message without content",
        chat(messages=[{"role": "system"}, USER]),
        "messages[0].content",
        "missing_required_parameter",
        None,
    ),
    (
        "assistant message with neither content nor tool calls",
        chat(messages=[USER, {"role": "assistant"}]),
        "messages[1].content",
        "missing_required_parameter",
        None,
    ),
    (
        "tool message without tool_call_id",
        chat(messages=[USER, {"role": "tool", "content": "42"}]),
        "messages[1].tool_call_id",
        "missing_required_parameter",
        "Missing required parameter: 'messages[1].tool_call_id'.",
    ),
    (
        "function message without name",
        chat(messages=[{"role": "function", "content": "42"}]),
        "messages[0].name",
        "missing_required_parameter",
        None,
    ),
    (
        "tool_calls not a list",
        chat(messages=[USER, {"role": "assistant", "content": "x", "tool_calls": {"id": "1"}}]),
        "messages[1].tool_calls",
        "invalid_type",
        "Invalid type for 'messages[1].tool_calls': expected an array, but got an object instead.",
    ),
    (
        "tool call that is not an object",
        chat(messages=[USER, {"role": "assistant", "tool_calls": ["call_1"]}]),
        "messages[1].tool_calls[0]",
        "invalid_type",
        "Invalid type for 'messages[1].tool_calls[0]': expected an object, but got a string instead.",
    ),
    (
        "tool call without an id",
        chat(messages=[USER, {"role": "assistant", "tool_calls": [{"type": "function", "function": FUNCTION}]}]),
        "messages[1].tool_calls[0].id",
        "missing_required_parameter",
        "Missing required parameter: 'messages[1].tool_calls[0].id'.",
    ),
    (
        "tool call of an unknown type",
        chat(
            messages=[USER, {"role": "assistant", "tool_calls": [{"id": "c", "type": "search", "function": FUNCTION}]}]
        ),
        "messages[1].tool_calls[0].type",
        "invalid_value",
        None,
    ),
    (
        "function tool call whose function is a string",
        chat(messages=[USER, {"role": "assistant", "tool_calls": [{"id": "c", "type": "function", "function": "f"}]}]),
        "messages[1].tool_calls[0].function",
        "invalid_type",
        "Invalid type for 'messages[1].tool_calls[0].function': expected an object, but got a string instead.",
    ),
    (
        "function tool call without arguments",
        chat(
            messages=[
                USER,
                {"role": "assistant", "tool_calls": [{"id": "c", "type": "function", "function": {"name": "f"}}]},
            ]
        ),
        "messages[1].tool_calls[0].function.arguments",
        "missing_required_parameter",
        None,
    ),
    (
        "function tool call whose arguments are an object",
        chat(
            messages=[
                USER,
                {
                    "role": "assistant",
                    "tool_calls": [{"id": "c", "type": "function", "function": {"name": "f", "arguments": {}}}],
                },
            ]
        ),
        "messages[1].tool_calls[0].function.arguments",
        "invalid_type",
        "Invalid type for 'messages[1].tool_calls[0].function.arguments': expected a string, "
        "but got an object instead.",
    ),
    (
        "modalities that are a number",
        chat(modalities=2),
        "modalities",
        "invalid_type",
        "Invalid type for 'modalities': expected an array, but got an integer instead.",
    ),
    (
        "a modality that is not a string",
        chat(modalities=["text", 1]),
        "modalities[1]",
        "invalid_type",
        "Invalid type for 'modalities[1]': expected a string, but got an integer instead.",
    ),
    (
        "a function whose name is a number",
        chat(functions=[{"name": 5}]),
        "functions[0].name",
        "invalid_type",
        None,
    ),
    (
        "tool_choice naming a function by a number",
        chat(tool_choice={"type": "function", "function": {"name": 5}}),
        "tool_choice.function.name",
        "invalid_type",
        None,
    ),
    (
        "allowed tools that are not objects",
        chat(tool_choice={"type": "allowed_tools", "allowed_tools": {"mode": "auto", "tools": ["f"]}}),
        "tool_choice.allowed_tools.tools[0]",
        "invalid_type",
        None,
    ),
    (
        "functions that are a number",
        chat(functions=-3),
        "functions",
        "invalid_type",
        "Invalid type for 'functions': expected an array, but got an integer instead.",
    ),
    (
        "a function without a name",
        chat(functions=[{"parameters": {}}]),
        "functions[0].name",
        "missing_required_parameter",
        None,
    ),
    (
        "function_call of an unknown mode",
        chat(functions=[{"name": "f"}], function_call="always"),
        "function_call",
        "invalid_value",
        None,
    ),
    (
        "tool_choice of an unknown mode",
        chat(tool_choice="always"),
        "tool_choice",
        "invalid_value",
        "Invalid value: 'always'. Supported values are: 'none', 'auto', and 'required'.",
    ),
    (
        "tool_choice that is a list",
        chat(tool_choice=[]),
        "tool_choice",
        "invalid_type",
        "Invalid type for 'tool_choice': expected one of a string or an object, but got an array instead.",
    ),
    (
        "tool_choice without a type",
        chat(tool_choice={"function": {"name": "f"}}),
        "tool_choice.type",
        "missing_required_parameter",
        None,
    ),
    (
        "tool_choice naming a function that is a number",
        chat(tool_choice={"type": "function", "function": -3}),
        "tool_choice.function",
        "invalid_type",
        "Invalid type for 'tool_choice.function': expected an object, but got an integer instead.",
    ),
    (
        "tool_choice naming no function",
        chat(tool_choice={"type": "function", "function": {}}),
        "tool_choice.function.name",
        "missing_required_parameter",
        None,
    ),
    (
        "allowed tools without a mode",
        chat(tool_choice={"type": "allowed_tools", "allowed_tools": {"tools": []}}),
        "tool_choice.allowed_tools.mode",
        "missing_required_parameter",
        None,
    ),
    # --- content parts ------------------------------------------------------
    (
        "user part of an unknown type",
        chat(messages=[{"role": "user", "content": [{"type": "video", "video": "x"}]}]),
        "messages[0].content[0].type",
        "invalid_value",
        "Invalid value: 'video'. Supported values are: 'text', 'image_url', 'input_audio', and 'file'.",
    ),
    (
        "image part in a system message",
        chat(messages=[{"role": "system", "content": [{"type": "image_url", "image_url": {"url": "x"}}]}, USER]),
        "messages[0].content[0].type",
        "invalid_value",
        "Invalid value: 'image_url'. Supported values are: 'text'.",
    ),
    (
        "refusal part in a user message",
        chat(messages=[{"role": "user", "content": [{"type": "refusal", "refusal": "no"}]}]),
        "messages[0].content[0].type",
        "invalid_value",
        None,
    ),
    (
        "part without type",
        chat(messages=[{"role": "user", "content": [{"type": "text", "text": "a"}, {"text": "b"}]}]),
        "messages[0].content[1].type",
        "missing_required_parameter",
        "Missing required parameter: 'messages[0].content[1].type'.",
    ),
    (
        "part not an object",
        chat(messages=[{"role": "user", "content": ["Hello"]}]),
        "messages[0].content[0]",
        "invalid_type",
        "Invalid type for 'messages[0].content[0]': expected an object, but got a string instead.",
    ),
    (
        "text part without text",
        chat(messages=[{"role": "user", "content": [{"type": "text"}]}]),
        "messages[0].content[0].text",
        "missing_required_parameter",
        None,
    ),
    (
        "text part with a number as text",
        chat(messages=[{"role": "user", "content": [{"type": "text", "text": 7}]}]),
        "messages[0].content[0].text",
        "invalid_type",
        "Invalid type for 'messages[0].content[0].text': expected a string, but got an integer instead.",
    ),
    (
        "image part without url",
        chat(messages=[{"role": "user", "content": [{"type": "image_url", "image_url": {}}]}]),
        "messages[0].content[0].image_url.url",
        "missing_required_parameter",
        None,
    ),
    (
        "image part with a string instead of an object",
        chat(messages=[{"role": "user", "content": [{"type": "image_url", "image_url": "https://x/y.png"}]}]),
        "messages[0].content[0].image_url.url",
        "missing_required_parameter",
        None,
    ),
    # --- numbers ------------------------------------------------------------
    (
        "temperature above 2",
        chat(temperature=5),
        "temperature",
        "decimal_above_max_value",
        "Invalid 'temperature': decimal above maximum value. Expected a value <= 2, but got 5 instead.",
    ),
    (
        "temperature below 0",
        chat(temperature=-0.5),
        "temperature",
        "decimal_below_min_value",
        "Invalid 'temperature': decimal below minimum value. Expected a value >= 0, but got -0.5 instead.",
    ),
    (
        "temperature as a string",
        chat(temperature="0.7"),
        "temperature",
        "invalid_type",
        "Invalid type for 'temperature': expected a decimal, but got a string instead.",
    ),
    (
        "temperature as a boolean",
        chat(temperature=True),
        "temperature",
        "invalid_type",
        "Invalid type for 'temperature': expected a decimal, but got a boolean instead.",
    ),
    ("top_p above 1", chat(top_p=1.5), "top_p", "decimal_above_max_value", None),
    ("top_p as a boolean", chat(top_p=False), "top_p", "invalid_type", None),
    ("presence_penalty below -2", chat(presence_penalty=-3), "presence_penalty", "decimal_below_min_value", None),
    ("frequency_penalty above 2", chat(frequency_penalty=2.5), "frequency_penalty", "decimal_above_max_value", None),
    (
        "n of zero",
        chat(n=0),
        "n",
        "integer_below_min_value",
        "Invalid 'n': integer below minimum value. Expected a value >= 1, but got 0 instead.",
    ),
    (
        "n above 128",
        chat(n=129),
        "n",
        "integer_above_max_value",
        "Invalid 'n': integer above maximum value. Expected a value <= 128, but got 129 instead.",
    ),
    (
        "n as a decimal",
        chat(n=1.5),
        "n",
        "invalid_type",
        "Invalid type for 'n': expected an integer, but got a decimal instead.",
    ),
    ("n as a boolean", chat(n=True), "n", "invalid_type", None),
    (
        "max_tokens of zero",
        chat(max_tokens=0),
        "max_tokens",
        "integer_below_min_value",
        "Invalid 'max_tokens': integer below minimum value. Expected a value >= 1, but got 0 instead.",
    ),
    ("max_tokens as a string", chat(max_tokens="100"), "max_tokens", "invalid_type", None),
    (
        "max_completion_tokens of zero",
        chat(max_completion_tokens=0),
        "max_completion_tokens",
        "integer_below_min_value",
        None,
    ),
    ("top_logprobs above 20", chat(logprobs=True, top_logprobs=21), "top_logprobs", "integer_above_max_value", None),
    ("seed as a string", chat(seed="42"), "seed", "invalid_type", None),
    # --- other types --------------------------------------------------------
    (
        "stream as a string",
        chat(stream="true"),
        "stream",
        "invalid_type",
        "Invalid type for 'stream': expected a boolean, but got a string instead.",
    ),
    ("logprobs as a number", chat(logprobs=1), "logprobs", "invalid_type", None),
    ("user as a number", chat(user=7), "user", "invalid_type", None),
    (
        "logit_bias as a list",
        chat(logit_bias=[1, 2]),
        "logit_bias",
        "invalid_type",
        "Invalid type for 'logit_bias': expected an object, but got an array instead.",
    ),
    ("metadata as a string", chat(metadata="x"), "metadata", "invalid_type", None),
    # --- stop ---------------------------------------------------------------
    (
        "stop with five entries",
        chat(stop=["a", "b", "c", "d", "e"]),
        "stop",
        "array_above_max_length",
        "Invalid 'stop': array too long. Expected an array with maximum length 4, but got an array with length 5 "
        "instead.",
    ),
    (
        "stop as a number",
        chat(stop=5),
        "stop",
        "invalid_type",
        "Invalid type for 'stop': expected one of a string or array of strings, but got an integer instead.",
    ),
    ("stop with a non-string entry", chat(stop=["a", 1]), "stop", "invalid_type", None),
    # --- stream_options and top_logprobs ------------------------------------
    (
        "stream_options without stream",
        chat(stream_options={"include_usage": True}),
        "stream_options",
        "invalid_value",
        "The 'stream_options' parameter is only allowed when 'stream' is enabled.",
    ),
    (
        "stream_options with stream off",
        chat(stream=False, stream_options={"include_usage": True}),
        "stream_options",
        "invalid_value",
        None,
    ),
    ("stream_options not an object", chat(stream=True, stream_options=True), "stream_options", "invalid_type", None),
    (
        "top_logprobs without logprobs",
        chat(top_logprobs=3),
        "top_logprobs",
        "invalid_value",
        "Invalid value for 'top_logprobs': 'logprobs' must be set to true when 'top_logprobs' is used.",
    ),
    ("top_logprobs with logprobs off", chat(logprobs=False, top_logprobs=3), "top_logprobs", "invalid_value", None),
    # --- response_format ----------------------------------------------------
    (
        "response_format of an unknown type",
        chat(response_format={"type": "xml"}),
        "response_format.type",
        "invalid_value",
        "Invalid value: 'xml'. Supported values are: 'text', 'json_object', and 'json_schema'.",
    ),
    (
        "json_schema response_format without its schema",
        chat(response_format={"type": "json_schema"}),
        "response_format.json_schema",
        "missing_required_parameter",
        None,
    ),
    (
        "response_format as a string",
        chat(response_format="json"),
        "response_format",
        "invalid_type",
        "Invalid type for 'response_format': expected an object, but got a string instead.",
    ),
    # --- tools --------------------------------------------------------------
    ("tools as an object", chat(tools={"type": "function"}), "tools", "invalid_type", None),
    ("tool not an object", chat(tools=["get_weather"]), "tools[0]", "invalid_type", None),
    (
        "function tool without a function",
        chat(tools=[{"type": "function"}]),
        "tools[0].function",
        "missing_required_parameter",
        "Missing required parameter: 'tools[0].function'.",
    ),
    (
        "function tool without a name",
        chat(tools=[{"type": "function", "function": {"name": "a"}}, {"type": "function", "function": {}}]),
        "tools[1].function.name",
        "missing_required_parameter",
        "Missing required parameter: 'tools[1].function.name'.",
    ),
]


@pytest.mark.parametrize(
    ("body", "param", "code", "message"), [case[1:] for case in REFUSED], ids=[c[0] for c in REFUSED]
)
def test_it_refuses_what_openai_refuses_naming_the_param(
    body: dict[str, Any], param: str, code: str, message: str | None
) -> None:
    error = refusal(body)

    assert (error.param, error.code) == (param, code)
    assert error.status == 400
    assert error.type == "invalid_request_error"
    if message is not None:
        assert error.message == message


def test_the_refusal_body_has_openais_shape() -> None:
    body = refusal(chat(temperature=5)).body()

    assert body == {
        "error": {
            "message": "Invalid 'temperature': decimal above maximum value. Expected a value <= 2, but got 5 instead.",
            "type": "invalid_request_error",
            "param": "temperature",
            "code": "decimal_above_max_value",
        }
    }


def test_it_reports_a_missing_response_format_type_as_missing() -> None:
    # OpenAI's answer to `"response_format": {}`; "Invalid value: 'None'" would leak Python's spelling of null.
    error = refusal(chat(response_format={}))

    assert (error.param, error.code) == ("response_format.type", "missing_required_parameter")
    assert error.message == "Missing required parameter: 'response_format.type'."


ACCEPTED = [
    ("the minimal request", chat()),
    ("bounds included", chat(temperature=2, top_p=0, presence_penalty=-2, frequency_penalty=2, n=128, max_tokens=1)),
    ("integers where decimals are expected", chat(temperature=1, top_p=1)),
    ("decimals", chat(temperature=0.7, top_p=0.95, presence_penalty=0.5)),
    ("nulls for optional parameters", chat(temperature=None, n=None, stop=None, tools=None, response_format=None)),
    ("stop as a string", chat(stop="\n")),
    ("stop with four entries", chat(stop=["a", "b", "c", "d"])),
    ("stream with stream_options", chat(stream=True, stream_options={"include_usage": True})),
    ("top_logprobs with logprobs", chat(logprobs=True, top_logprobs=20)),
    ("top_logprobs of zero", chat(logprobs=True, top_logprobs=0)),
    ("every response_format type", chat(response_format={"type": "json_object"})),
    ("a json_schema response_format", chat(response_format={"type": "json_schema", "json_schema": {"name": "x"}})),
    ("a text response_format", chat(response_format={"type": "text"})),
    ("a function tool", chat(tools=[{"type": "function", "function": {"name": "get_weather", "parameters": {}}}])),
    ("a tool of another type", chat(tools=[{"type": "web_search"}])),
    (
        "unknown fields, passed through untouched",
        chat(reasoning_effort="low", modalities=["text"], portico_future_flag={"a": [1, 2]}, service_tier="auto"),
    ),
    (
        "a whole conversation",
        chat(
            messages=[
                {"role": "developer", "content": "Be brief."},
                {"role": "system", "content": [{"type": "text", "text": "Be kind."}]},
                {
                    "role": "user",
                    "content": [
                        {"type": "text", "text": "What is this?"},
                        {"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAA"}},
                        {"type": "input_audio", "input_audio": {"data": "AAAA", "format": "wav"}},
                    ],
                },
                {
                    "role": "assistant",
                    "content": None,
                    "tool_calls": [{"id": "call_1", "type": "function", "function": {"name": "f", "arguments": "{}"}}],
                },
                {"role": "tool", "tool_call_id": "call_1", "content": "42"},
                {"role": "assistant", "content": [{"type": "refusal", "refusal": "No."}]},
                {"role": "function", "name": "f", "content": "42"},
                {"role": "user", "content": "Thanks", "name": "ada"},
            ]
        ),
    ),
    ("the required tool_choice mode", chat(tool_choice="required")),
    ("a custom tool_choice", chat(tool_choice={"type": "custom", "custom": {"name": "sql"}})),
    ("text and audio modalities", chat(modalities=["text", "audio"])),
    ("deprecated functions", chat(functions=[{"name": "f", "parameters": {}}], function_call={"name": "f"})),
    ("a named tool_choice", chat(tool_choice={"type": "function", "function": {"name": "f"}})),
    (
        "an allowed_tools tool_choice",
        chat(tool_choice={"type": "allowed_tools", "allowed_tools": {"mode": "auto", "tools": [{"type": "function"}]}}),
    ),
    (
        "an assistant's custom tool call",
        chat(
            messages=[
                USER,
                {
                    "role": "assistant",
                    "tool_calls": [{"id": "c", "type": "custom", "custom": {"name": "sql", "input": "SELECT 1"}}],
                },
            ]
        ),
    ),
    (
        "an assistant message with only a function call",
        chat(messages=[{"role": "assistant", "function_call": {"name": "f", "arguments": "{}"}}]),
    ),
]


@pytest.mark.parametrize("body", [case[1] for case in ACCEPTED], ids=[case[0] for case in ACCEPTED])
def test_it_accepts_valid_requests(body: dict[str, Any]) -> None:
    validate_chat_request(body)


def test_it_leaves_the_body_unchanged() -> None:
    body = chat(temperature=0.5, portico_future_flag=True)
    before = repr(body)

    validate_chat_request(body)

    assert repr(body) == before
