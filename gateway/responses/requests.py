"""A Responses API request: checked in OpenAI's words, then turned into a chat completions body.

    input: "text"                          -> one user message
    input: [items]                         -> messages, in order:
        {role, content}                        a message (developer becomes system; input_text and
                                               output_text parts become text, input_image an image_url)
        {type: function_call, call_id, ...}    an assistant message's tool call (consecutive calls join)
        {type: function_call_output, ...}      a tool message answering `call_id`
    instructions                           -> a system message before the rest
    tools [{type: function, name, ...}]    -> tools [{type: function, function: {name, ...}}]
    tool_choice, parallel_tool_calls       -> the same, in chat's shape
    max_output_tokens                      -> max_completion_tokens
    text.format json_schema / json_object  -> response_format
    temperature, top_p, user, stream       -> the same (a stream always asks for its usage)

What chat cannot express (built-in tools, `previous_response_id`, background
runs, file inputs) is refused with a 400 that names the parameter.
"""

from __future__ import annotations

from typing import Any

from gateway.errors import InvalidRequest

_ROLES = {"user": "user", "assistant": "assistant", "system": "system", "developer": "system"}
_TEXT_PARTS = ("input_text", "output_text", "text")
_TOOL_CHOICES = ("auto", "none", "required")
_REFUSED = ("previous_response_id", "conversation", "prompt")


def unsupported(param: str, what: str) -> InvalidRequest:
    return InvalidRequest(f"{what} is not supported by this server.", param=param, code="unsupported_parameter")


def _invalid(param: str, message: str) -> InvalidRequest:
    return InvalidRequest(message, param=param, code="invalid_value")


def _text_of(parts: Any, param: str) -> str:
    """The text of a list of text parts (a tool's output, an assistant's earlier answer)."""
    if isinstance(parts, str):
        return parts
    if not isinstance(parts, list):
        raise _invalid(param, f"Invalid '{param}': expected a string or an array of text parts.")
    texts = []
    for index, part in enumerate(parts):
        if not isinstance(part, dict) or part.get("type") not in (*_TEXT_PARTS, "refusal"):
            raise _invalid(f"{param}[{index}]", f"Invalid '{param}[{index}]': expected a text part.")
        texts.append(str(part.get("text") or part.get("refusal") or ""))
    return "".join(texts)


def _image_part(part: dict[str, Any], param: str) -> dict[str, Any]:
    url = part.get("image_url")
    if not isinstance(url, str) or not url:
        if part.get("file_id"):
            raise unsupported(f"{param}.file_id", "An image given by `file_id`")
        raise InvalidRequest(f"Missing required parameter: '{param}.image_url'.", param=f"{param}.image_url")
    image: dict[str, Any] = {"url": url}
    if part.get("detail"):
        image["detail"] = part["detail"]
    return {"type": "image_url", "image_url": image}


def _user_content(content: Any, param: str) -> str | list[dict[str, Any]]:
    if isinstance(content, str):
        return content
    if not isinstance(content, list) or not content:
        raise _invalid(param, f"Invalid '{param}': expected a string or a non-empty array of content parts.")
    parts: list[dict[str, Any]] = []
    for index, part in enumerate(content):
        where = f"{param}[{index}]"
        kind = part.get("type") if isinstance(part, dict) else None
        if kind in _TEXT_PARTS:
            parts.append({"type": "text", "text": str(part.get("text") or "")})
        elif kind == "input_image":
            parts.append(_image_part(part, where))
        elif kind == "input_file":
            raise unsupported(where, "A file input")
        else:
            raise _invalid(f"{where}.type", f"Invalid value for '{where}.type': {kind!r}.")
    return parts


def _message(item: dict[str, Any], param: str) -> dict[str, Any]:
    named = item.get("role")
    role = _ROLES.get(named) if isinstance(named, str) else None  # a list or an object cannot be looked up
    if role is None:
        allowed = ", ".join(f"'{name}'" for name in _ROLES)
        raise _invalid(f"{param}.role", f"Invalid value for '{param}.role': expected one of {allowed}.")
    content = item.get("content")
    if role == "user":
        return {"role": role, "content": _user_content(content, f"{param}.content")}
    return {"role": role, "content": _text_of(content, f"{param}.content")}


def _tool_call(item: dict[str, Any], param: str) -> dict[str, Any]:
    for field in ("call_id", "name", "arguments"):
        if not isinstance(item.get(field), str):
            raise InvalidRequest(f"Missing required parameter: '{param}.{field}'.", param=f"{param}.{field}")
    return {
        "id": item["call_id"],
        "type": "function",
        "function": {"name": item["name"], "arguments": item["arguments"]},
    }


def _tool_output(item: dict[str, Any], param: str) -> dict[str, Any]:
    if not isinstance(item.get("call_id"), str):
        raise InvalidRequest(f"Missing required parameter: '{param}.call_id'.", param=f"{param}.call_id")
    return {"role": "tool", "tool_call_id": item["call_id"], "content": _text_of(item.get("output"), f"{param}.output")}


def input_messages(value: Any) -> list[dict[str, Any]]:
    """The chat messages an `input` stands for."""
    if isinstance(value, str):
        return [{"role": "user", "content": value}]
    if not isinstance(value, list) or not value:
        raise _invalid("input", "Invalid 'input': expected a string or a non-empty array of input items.")
    messages: list[dict[str, Any]] = []
    for index, item in enumerate(value):
        param = f"input[{index}]"
        if not isinstance(item, dict):
            raise _invalid(param, f"Invalid '{param}': expected an object.")
        kind = item.get("type", "message")
        if kind == "message":
            messages.append(_message(item, param))
        elif kind == "function_call":
            last = messages[-1] if messages else None
            if last is not None and last["role"] == "assistant" and "tool_calls" in last:
                last["tool_calls"].append(_tool_call(item, param))
            else:
                messages.append({"role": "assistant", "content": None, "tool_calls": [_tool_call(item, param)]})
        elif kind == "function_call_output":
            messages.append(_tool_output(item, param))
        else:
            raise unsupported(f"{param}.type", f"The input item type {kind!r}")
    return messages


def _tools(value: Any) -> list[dict[str, Any]]:
    if not isinstance(value, list):
        raise _invalid("tools", "Invalid 'tools': expected an array.")
    tools = []
    for index, tool in enumerate(value):
        param = f"tools[{index}]"
        if not isinstance(tool, dict) or tool.get("type") != "function":
            kind = tool.get("type") if isinstance(tool, dict) else None
            raise unsupported(f"{param}.type", f"The tool type {kind!r}")
        if not isinstance(tool.get("name"), str) or not tool["name"]:
            raise InvalidRequest(f"Missing required parameter: '{param}.name'.", param=f"{param}.name")
        function = {name: tool[name] for name in ("name", "description", "parameters", "strict") if name in tool}
        if function.get("strict") is None:
            function.pop("strict", None)
        tools.append({"type": "function", "function": function})
    return tools


def _tool_choice(value: Any) -> str | dict[str, Any]:
    if value in _TOOL_CHOICES:
        return str(value)
    if isinstance(value, dict) and value.get("type") == "function" and isinstance(value.get("name"), str):
        return {"type": "function", "function": {"name": value["name"]}}
    if isinstance(value, dict) and value.get("type") == "allowed_tools":
        raise unsupported("tool_choice", "`tool_choice` of type 'allowed_tools'")
    raise _invalid("tool_choice", "Invalid 'tool_choice': expected 'auto', 'none', 'required' or a function.")


def _response_format(text: Any) -> dict[str, Any] | None:
    if text is None:
        return None
    if not isinstance(text, dict):
        raise _invalid("text", "Invalid 'text': expected an object.")
    form = text.get("format")
    if form is None or (isinstance(form, dict) and form.get("type") == "text"):
        return None
    if not isinstance(form, dict):
        raise _invalid("text.format", "Invalid 'text.format': expected an object.")
    if form.get("type") == "json_object":
        return {"type": "json_object"}
    if form.get("type") == "json_schema":
        if not isinstance(form.get("name"), str) or not isinstance(form.get("schema"), dict):
            raise InvalidRequest(
                "Missing required parameter: 'text.format.name' and 'text.format.schema' are required.",
                param="text.format",
            )
        schema = {
            name: form[name] for name in ("name", "schema", "description", "strict") if form.get(name) is not None
        }
        return {"type": "json_schema", "json_schema": schema}
    raise _invalid("text.format.type", f"Invalid value for 'text.format.type': {form.get('type')!r}.")


def validate_responses_request(body: dict[str, Any]) -> None:
    """What the chat validator cannot name in a Responses request's own terms."""
    if body.get("model") is None:
        raise InvalidRequest("Missing required parameter: 'model'.", param="model")
    if body.get("input") is None:
        raise InvalidRequest("Missing required parameter: 'input'.", param="input")
    for name in _REFUSED:
        if body.get(name) is not None:
            raise unsupported(name, f"`{name}`")
    if body.get("background"):
        raise unsupported("background", "A background response")
    instructions = body.get("instructions")
    if instructions is not None and not isinstance(instructions, str):
        raise _invalid("instructions", "Invalid 'instructions': expected a string.")
    for name in ("metadata", "reasoning"):
        value = body.get(name)
        if value is not None and not isinstance(value, dict):
            raise _invalid(name, f"Invalid '{name}': expected an object.")
    if body.get("max_output_tokens") is not None:
        cap = body["max_output_tokens"]
        if not isinstance(cap, int) or isinstance(cap, bool) or cap < 16:
            raise _invalid("max_output_tokens", "Invalid 'max_output_tokens': expected an integer of at least 16.")


def chat_body(body: dict[str, Any]) -> dict[str, Any]:
    """The chat completions request a (validated) Responses request stands for."""
    messages = input_messages(body["input"])
    if body.get("instructions"):
        messages.insert(0, {"role": "system", "content": body["instructions"]})
    chat: dict[str, Any] = {"model": body["model"], "messages": messages}
    for name in ("temperature", "top_p", "user", "service_tier"):
        if body.get(name) is not None:
            chat[name] = body[name]
    if body.get("max_output_tokens") is not None:
        chat["max_completion_tokens"] = body["max_output_tokens"]
    if body.get("tools"):
        chat["tools"] = _tools(body["tools"])
        if body.get("parallel_tool_calls") is not None:
            chat["parallel_tool_calls"] = body["parallel_tool_calls"]
        if body.get("tool_choice") is not None:  # chat refuses a tool choice without tools
            chat["tool_choice"] = _tool_choice(body["tool_choice"])
    if (response_format := _response_format(body.get("text"))) is not None:
        chat["response_format"] = response_format
    effort = (body.get("reasoning") or {}).get("effort")
    if effort is not None:
        chat["reasoning_effort"] = effort
    if body.get("stream"):
        # The events end with the usage in `response.completed`: the stream must carry it.
        chat["stream"] = True
        chat["stream_options"] = {"include_usage": True}
    return chat
