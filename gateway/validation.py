"""Checks OpenAI makes on a chat request before any model sees it, with OpenAI's wording.

Only what OpenAI itself rejects is rejected; every other field passes through
untouched, unknown ones included, so new upstream parameters work on day one.
Portico's own routing fields (`provider`, `models`, ...) are read, checked and
removed before these checks, by gateway.extensions.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from gateway.errors import InvalidRequest

if TYPE_CHECKING:
    from providers.adapters.base import Operation
    from providers.facade import ModelInfo

ROLES = ("system", "developer", "user", "assistant", "tool", "function")
_TYPE_NAMES = {str: "a string", bool: "a boolean", dict: "an object", list: "an array"}
_PART_TYPES = {
    "user": ("text", "image_url", "input_audio", "file"),
    "system": ("text",),
    "developer": ("text",),
    "assistant": ("text", "refusal"),
    "tool": ("text",),
}


def _kind(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int):
        return "an integer"
    if isinstance(value, float):
        return "a decimal"
    return _TYPE_NAMES.get(type(value), "an unsupported value")


def _type_error(param: str, expected: str, value: Any) -> InvalidRequest:
    return InvalidRequest(
        f"Invalid type for '{param}': expected {expected}, but got {_kind(value)} instead.",
        param=param,
        code="invalid_type",
    )


# Where OpenAI gives an integer no upper bound it still reads a signed 64-bit one: anything past it is refused.
INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1
# The most output a request may ask of a route that declares no max output tokens (or declares more): a
# sane cap, far above any model's, that keeps what a request reserves against its limits finite.
MAX_OUTPUT_TOKENS = 1_048_576
_OUTPUT_CAPS = ("max_completion_tokens", "max_tokens")


def _number(body: dict[str, Any], param: str, low: float, high: float) -> None:
    _bounded(body.get(param), param, low, high, integer=False)


def _integer(body: dict[str, Any], param: str, low: int, high: int = INT64_MAX) -> None:
    _bounded(body.get(param), param, low, high, integer=True)


def _shown(value: float) -> str:
    # Integers in full, as OpenAI writes them (an int64 bound in %g would read 9.22337e+18).
    return str(value) if isinstance(value, int) else f"{value:g}"


def _bounded(value: Any, param: str, low: float, high: float, *, integer: bool) -> None:
    if value is None:
        return
    kind = "integer" if integer else "decimal"
    wrong_type = isinstance(value, bool) or not isinstance(value, int if integer else int | float)
    if wrong_type:
        raise _type_error(param, f"an {kind}" if integer else f"a {kind}", value)
    if value < low:
        raise InvalidRequest(
            f"Invalid '{param}': {kind} below minimum value. "
            f"Expected a value >= {_shown(low)}, but got {_shown(value)} instead.",
            param=param,
            code=f"{kind}_below_min_value",
        )
    if value > high:
        raise InvalidRequest(
            f"Invalid '{param}': {kind} above maximum value. "
            f"Expected a value <= {_shown(high)}, but got {_shown(value)} instead.",
            param=param,
            code=f"{kind}_above_max_value",
        )


def _logit_bias(body: dict[str, Any]) -> None:
    _typed(body, "logit_bias", dict)
    for token, bias in (body.get("logit_bias") or {}).items():
        if not token.isascii() or not token.isdigit():
            raise InvalidRequest(
                f"Invalid key in 'logit_bias': {token}. You should only be submitting non-negative integers.",
                param="logit_bias",
                code="invalid_value",
            )
        if bias is None:
            raise _type_error("logit_bias", "an integer", bias)
        _bounded(bias, "logit_bias", -100, 100, integer=True)


def validate_output_cap(body: dict[str, Any], most: int | None) -> None:
    """Refuse an output cap above what the route's model can produce, as OpenAI does; `most` None is unknown."""
    limit = min(most or MAX_OUTPUT_TOKENS, MAX_OUTPUT_TOKENS)
    for param in _OUTPUT_CAPS:
        value = body.get(param)
        if isinstance(value, int) and value > limit:
            raise InvalidRequest(
                f"{param} is too large: {value}. This model supports at most {limit} completion tokens, "
                f"whereas you provided {value}.",
                param=param,
            )


def _typed(body: dict[str, Any], param: str, kind: type) -> None:
    value = body.get(param)
    if value is not None and not isinstance(value, kind):
        raise _type_error(param, _TYPE_NAMES[kind], value)


def _missing(param: str) -> InvalidRequest:
    return InvalidRequest(f"Missing required parameter: '{param}'.", param=param, code="missing_required_parameter")


def _invalid_value(param: str, value: Any, allowed: tuple[str, ...]) -> InvalidRequest:
    choices = ", ".join(f"'{item}'" for item in allowed[:-1]) + f", and '{allowed[-1]}'"
    return InvalidRequest(
        f"Invalid value: '{value}'. Supported values are: {choices}.", param=param, code="invalid_value"
    )


def _content(message: dict[str, Any], role: str, where: str) -> None:
    content = message.get("content")
    param = f"{where}.content"
    if content is None:
        needs_content = role in ("user", "system", "developer", "tool") or (
            role == "assistant" and not message.get("tool_calls") and not message.get("function_call")
        )
        if needs_content and "content" not in message:
            raise _missing(param)
        if needs_content and role != "assistant":
            raise _type_error(param, "one of a string or array of objects", content)
        return
    if isinstance(content, str):
        return
    if not isinstance(content, list):
        raise _type_error(param, "one of a string or array of objects", content)
    allowed = _PART_TYPES.get(role, ("text",))
    for index, part in enumerate(content):
        _part(part, allowed, f"{param}[{index}]")


def _part(part: Any, allowed: tuple[str, ...], param: str) -> None:
    if not isinstance(part, dict):
        raise _type_error(param, "an object", part)
    kind = part.get("type")
    if kind is None:
        raise _missing(f"{param}.type")
    if kind not in allowed:
        raise (
            _invalid_value(f"{param}.type", kind, allowed)
            if len(allowed) > 1
            else InvalidRequest(
                f"Invalid value: '{kind}'. Supported values are: '{allowed[0]}'.",
                param=f"{param}.type",
                code="invalid_value",
            )
        )
    if kind == "text" and not isinstance(part.get("text"), str):
        raise (
            _missing(f"{param}.text") if "text" not in part else _type_error(f"{param}.text", "a string", part["text"])
        )
    if kind == "image_url":
        image = part.get("image_url")
        if not isinstance(image, dict) or not isinstance(image.get("url"), str):
            raise _missing(f"{param}.image_url.url")


def _message(message: Any, index: int) -> None:
    where = f"messages[{index}]"
    if not isinstance(message, dict):
        raise _type_error(where, "an object", message)
    role = message.get("role")
    if role is None:
        raise _missing(f"{where}.role")
    if role not in ROLES:
        raise _invalid_value(f"{where}.role", role, ROLES)
    _content(message, role, where)
    if role == "tool" and not isinstance(message.get("tool_call_id"), str):
        raise _missing(f"{where}.tool_call_id")
    if role == "function" and not isinstance(message.get("name"), str):
        raise _missing(f"{where}.name")
    tool_calls = message.get("tool_calls")
    if tool_calls is not None:
        _tool_calls(tool_calls, f"{where}.tool_calls")


_TOOL_CALL_FIELDS = {"function": ("name", "arguments"), "custom": ("name", "input")}


def _string_field(container: dict[str, Any], param: str, field: str) -> None:
    """`container[field]` must be given, and a string."""
    if field not in container:
        raise _missing(f"{param}.{field}")
    if not isinstance(container[field], str):
        raise _type_error(f"{param}.{field}", "a string", container[field])


def _object_field(container: dict[str, Any], param: str, field: str) -> dict[str, Any]:
    """`container[field]`, which must be given, and an object."""
    value = container.get(field)
    if not isinstance(value, dict):
        raise _missing(f"{param}.{field}") if value is None else _type_error(f"{param}.{field}", "an object", value)
    return value


def _items(value: Any, param: str, kind: type, expected: str) -> None:
    """`value` must be an array of `kind`: a wrong item is named by its index."""
    if not isinstance(value, list):
        raise _type_error(param, "an array", value)
    for index, item in enumerate(value):
        if not isinstance(item, kind):
            raise _type_error(f"{param}[{index}]", expected, item)


def _tool_calls(tool_calls: Any, param: str) -> None:
    """An assistant's earlier calls, each as OpenAI requires it: the adapters that translate them read every field."""
    _items(tool_calls, param, dict, "an object")
    for index, call in enumerate(tool_calls):
        where = f"{param}[{index}]"
        for name in ("id", "type"):
            _string_field(call, where, name)
        kind = call["type"]
        if kind not in _TOOL_CALL_FIELDS:
            raise _invalid_value(f"{where}.type", kind, tuple(_TOOL_CALL_FIELDS))
        detail = _object_field(call, where, kind)
        for name in _TOOL_CALL_FIELDS[kind]:
            _string_field(detail, f"{where}.{kind}", name)


def _stop(body: dict[str, Any]) -> None:
    stop = body.get("stop")
    if stop is None or isinstance(stop, str):
        return
    if not isinstance(stop, list) or not all(isinstance(item, str) for item in stop):
        raise _type_error("stop", "one of a string or array of strings", stop)
    if len(stop) > 4:
        raise InvalidRequest(
            f"Invalid 'stop': array too long. Expected an array with maximum length 4, but got an array with length {len(stop)} instead.",  # noqa: E501
            param="stop",
            code="array_above_max_length",
        )


def _modalities(body: dict[str, Any]) -> None:
    if body.get("modalities") is not None:
        _items(body["modalities"], "modalities", str, "a string")


def _tools(body: dict[str, Any]) -> None:
    tools = body.get("tools")
    if tools is None:
        return
    if not isinstance(tools, list):
        raise _type_error("tools", "an array", tools)
    for index, tool in enumerate(tools):
        if not isinstance(tool, dict):
            raise _type_error(f"tools[{index}]", "an object", tool)
        if tool.get("type", "function") == "function":
            function = tool.get("function")
            if not isinstance(function, dict) or not isinstance(function.get("name"), str):
                raise _missing(
                    f"tools[{index}].function.name" if isinstance(function, dict) else f"tools[{index}].function"
                )


def _functions(body: dict[str, Any]) -> None:
    """The deprecated `functions` and `function_call`, which the token count and some adapters still read."""
    functions = body.get("functions")
    if functions is not None:
        _items(functions, "functions", dict, "an object")
        for index, function in enumerate(functions):
            _string_field(function, f"functions[{index}]", "name")
    call = body.get("function_call")
    if call is None:
        return
    if isinstance(call, str):
        if call not in ("none", "auto"):
            raise _invalid_value("function_call", call, ("none", "auto"))
        return
    if not isinstance(call, dict):
        raise _type_error("function_call", "one of a string or an object", call)
    _string_field(call, "function_call", "name")


def _chosen(container: dict[str, Any], param: str, field: str, allowed: tuple[str, ...]) -> str:
    """`container[field]`, which must be one of `allowed`: missing, or an invalid value, is refused naming it."""
    value = container.get(field)
    if value is None:
        raise _missing(f"{param}.{field}")
    if value not in allowed:
        raise _invalid_value(f"{param}.{field}", value, allowed)
    return str(value)


_TOOL_CHOICE_MODES = ("none", "auto", "required")
_NAMED_CHOICES = ("function", "custom", "allowed_tools")


def _tool_choice(choice: Any) -> None:
    """A mode, or the object naming what to call: the adapters that translate it read its fields."""
    if choice is None:
        return
    if isinstance(choice, str):
        if choice not in _TOOL_CHOICE_MODES:
            raise _invalid_value("tool_choice", choice, _TOOL_CHOICE_MODES)
        return
    if not isinstance(choice, dict):
        raise _type_error("tool_choice", "one of a string or an object", choice)
    kind = _chosen(choice, "tool_choice", "type", _NAMED_CHOICES)
    named = _object_field(choice, "tool_choice", kind)
    if kind == "allowed_tools":
        _chosen(named, "tool_choice.allowed_tools", "mode", ("auto", "required"))
        if "tools" not in named:
            raise _missing("tool_choice.allowed_tools.tools")
        _items(named["tools"], "tool_choice.allowed_tools.tools", dict, "an object")
    else:
        _string_field(named, f"tool_choice.{kind}", "name")


def _response_format(body: dict[str, Any]) -> None:
    response_format = body.get("response_format")
    if response_format is None:
        return
    if not isinstance(response_format, dict):
        raise _type_error("response_format", "an object", response_format)
    kind = _chosen(response_format, "response_format", "type", ("text", "json_object", "json_schema"))
    if kind == "json_schema" and not isinstance(response_format.get("json_schema"), dict):
        raise _missing("response_format.json_schema")


def validate_chat_request(body: dict[str, Any]) -> None:
    """Raise InvalidRequest, naming the parameter, for anything OpenAI would refuse."""
    model = body.get("model")
    if model is None:
        raise _missing("model")
    if not isinstance(model, str):
        raise _type_error("model", "a string", model)
    messages = body.get("messages")
    if messages is None:
        raise _missing("messages")
    if not isinstance(messages, list):
        raise _type_error("messages", "an array", messages)
    if not messages:
        raise InvalidRequest(
            "Invalid 'messages': empty array. Expected an array with minimum length 1, but got an empty array instead.",
            param="messages",
            code="empty_array",
        )
    for index, message in enumerate(messages):
        _message(message, index)
    _number(body, "temperature", 0, 2)
    _number(body, "top_p", 0, 1)
    _number(body, "presence_penalty", -2, 2)
    _number(body, "frequency_penalty", -2, 2)
    _integer(body, "n", 1, 128)
    _integer(body, "max_tokens", 1)
    _integer(body, "max_completion_tokens", 1)
    _integer(body, "top_logprobs", 0, 20)
    _integer(body, "seed", INT64_MIN)
    _typed(body, "logprobs", bool)
    _typed(body, "user", str)
    _logit_bias(body)
    _typed(body, "metadata", dict)
    _stop(body)
    _modalities(body)
    _tools(body)
    _tool_choice(body.get("tool_choice"))
    _functions(body)
    _response_format(body)
    _streaming(body)
    if body.get("top_logprobs") is not None and not body.get("logprobs"):
        raise InvalidRequest(
            "Invalid value for 'top_logprobs': 'logprobs' must be set to true when 'top_logprobs' is used.",
            param="top_logprobs",
            code="invalid_value",
        )


def _model(body: dict[str, Any], *, required: bool = True) -> None:
    model = body.get("model")
    if model is None:
        if required:
            raise _missing("model")
        return
    if not isinstance(model, str):
        raise _type_error("model", "a string", model)


def _is_tokens(value: Any) -> bool:
    return isinstance(value, list) and all(isinstance(item, int) and not isinstance(item, bool) for item in value)


def _text_or_tokens(body: dict[str, Any], param: str) -> None:
    """OpenAI's prompt/input union: a string, strings, a token array, or token arrays."""
    value = body.get(param)
    if value is None:
        raise _missing(param)
    if isinstance(value, str):
        return
    valid = isinstance(value, list) and (
        all(isinstance(item, str) for item in value) or _is_tokens(value) or all(_is_tokens(item) for item in value)
    )
    if not valid:
        raise _type_error(param, "one of a string, array of strings, array of integers, or array of arrays", value)
    if not value:
        raise InvalidRequest(
            f"Invalid '{param}': empty array. Expected an array with minimum length 1, but got an empty array instead.",
            param=param,
            code="empty_array",
        )


def _streaming(body: dict[str, Any]) -> None:
    _typed(body, "stream", bool)
    stream_options = body.get("stream_options")
    if stream_options is not None:
        if not isinstance(stream_options, dict):
            raise _type_error("stream_options", "an object", stream_options)
        if not body.get("stream"):
            raise InvalidRequest(
                "The 'stream_options' parameter is only allowed when 'stream' is enabled.",
                param="stream_options",
                code="invalid_value",
            )


def validate_completion_request(body: dict[str, Any]) -> None:
    """The legacy completions endpoint's checks."""
    _model(body)
    if "prompt" not in body:
        raise _missing("prompt")
    if body["prompt"] is not None:  # null is OpenAI's default prompt, <|endoftext|>
        _text_or_tokens(body, "prompt")
    _number(body, "temperature", 0, 2)
    _number(body, "top_p", 0, 1)
    _number(body, "presence_penalty", -2, 2)
    _number(body, "frequency_penalty", -2, 2)
    _integer(body, "n", 1, 128)
    _integer(body, "best_of", 0, 20)
    _integer(body, "max_tokens", 0)
    _integer(body, "logprobs", 0, 5)
    _integer(body, "seed", INT64_MIN)
    _logit_bias(body)
    _typed(body, "echo", bool)
    _typed(body, "suffix", str)
    _typed(body, "user", str)
    _stop(body)
    _streaming(body)


def _no_stream(body: dict[str, Any]) -> None:
    refuse_stream(bool(body.get("stream")))


def refuse_stream(stream: bool) -> None:
    """Endpoints Portico answers whole: `stream: true` is refused, never ignored."""
    if stream:
        raise InvalidRequest("This endpoint does not stream; leave 'stream' out.", param="stream", code="invalid_value")


def refuse_unstreamed(model: ModelInfo, operation: Operation, stream: bool) -> None:
    """Images and transcriptions stream only where every deployment's provider kind streams them (OpenAI's own
    typed events); elsewhere `stream: true` gets the same 400 as an endpoint that never streams. Every one, not
    any one: a stream opened on a kind without the events could not be relayed as they are."""
    if stream:
        serving = [route.provider.adapter for route in model.routes if operation in route.provider.adapter.operations]
        refuse_stream(not all(operation in adapter.streamed for adapter in serving))


def validate_embedding_request(body: dict[str, Any]) -> None:
    _no_stream(body)
    _model(body)
    _text_or_tokens(body, "input")
    _integer(body, "dimensions", 1)
    _typed(body, "user", str)
    encoding = body.get("encoding_format")
    if encoding is not None and encoding not in ("float", "base64"):
        raise _invalid_value("encoding_format", encoding, ("float", "base64"))


def validate_moderation_request(body: dict[str, Any]) -> None:
    _no_stream(body)
    _model(body, required=False)
    value = body.get("input")
    if value is None:
        raise _missing("input")
    if not isinstance(value, str | list):
        raise _type_error("input", "one of a string, array of strings, or array of objects", value)


def validate_image_request(body: dict[str, Any]) -> None:
    """An image request answered whole (a queued job's): `stream` is refused."""
    _typed(body, "stream", bool)
    _no_stream(body)
    validate_image_fields(body)


def validate_image_fields(body: dict[str, Any]) -> None:
    """An image request's checks but `stream`'s, which waits for its model (`refuse_unstreamed`)."""
    _typed(body, "stream", bool)
    _model(body, required=False)
    prompt = body.get("prompt")
    if prompt is None:
        raise _missing("prompt")
    if not isinstance(prompt, str):
        raise _type_error("prompt", "a string", prompt)
    _integer(body, "n", 1, 10)
    _integer(body, "output_compression", 0, 100)
    _integer(body, "partial_images", 0, 3)
    _typed(body, "user", str)
