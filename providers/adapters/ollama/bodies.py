"""OpenAI request bodies as Ollama's native `/api/chat` and `/api/embed` bodies.

What Ollama has no equivalent for is dropped, unless dropping it would silently
change the answer (an image Ollama cannot fetch, several choices, token-id input):
that raises `UnsupportedParameter`, which Portico answers with a 400 naming the field.
"""

from __future__ import annotations

from typing import Any

import orjson

from providers.adapters.base import UnsupportedParameter, function_call

# OpenAI sampling fields that Ollama reads, under the same name, from `options`.
_SAME_NAME_OPTIONS = ("temperature", "top_p", "seed", "frequency_penalty", "presence_penalty")
_ROLES = {"system": "system", "developer": "system", "user": "user", "assistant": "assistant", "tool": "tool"}


def chat_body(body: dict[str, Any], upstream_model: str) -> dict[str, Any]:
    if (body.get("n") or 1) > 1:
        raise UnsupportedParameter("This model returns a single choice; `n` must be 1.", "n")
    chat: dict[str, Any] = {
        "model": upstream_model,
        "messages": _messages(body.get("messages") or []),
        # Ollama streams unless told otherwise, so the choice is always spelled out.
        "stream": bool(body.get("stream")),
    }
    options = _options(body)
    if options:
        chat["options"] = options
    tools = [tool for tool in body.get("tools") or () if tool.get("type") == "function"]
    if tools and body.get("tool_choice") != "none":
        chat["tools"] = tools
    response_format = _format(body.get("response_format"))
    if response_format is not None:
        chat["format"] = response_format
    return chat


def embed_body(body: dict[str, Any], upstream_model: str) -> dict[str, Any]:
    text = body.get("input")
    if not (isinstance(text, str) or (isinstance(text, list) and all(isinstance(item, str) for item in text))):
        raise UnsupportedParameter(
            "This model embeds text only: `input` must be a string or a list of strings.", "input"
        )
    embed: dict[str, Any] = {"model": upstream_model, "input": text, "truncate": True}
    if body.get("dimensions"):
        embed["dimensions"] = body["dimensions"]
    return embed


def _options(body: dict[str, Any]) -> dict[str, Any]:
    options = {name: body[name] for name in _SAME_NAME_OPTIONS if body.get(name) is not None}
    cap = body.get("max_completion_tokens") or body.get("max_tokens")
    if cap is not None:
        options["num_predict"] = cap
    stop = body.get("stop")
    if stop:
        options["stop"] = [stop] if isinstance(stop, str) else list(stop)
    return options


def _format(response_format: Any) -> str | dict[str, Any] | None:
    if not isinstance(response_format, dict):
        return None
    if response_format.get("type") == "json_object":
        return "json"
    if response_format.get("type") == "json_schema":
        schema = (response_format.get("json_schema") or {}).get("schema")
        return schema if isinstance(schema, dict) else "json"
    return None


def _messages(messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    # Ollama names a tool result by the tool's name, OpenAI by the call's id: remember which id named what.
    tool_names: dict[str, str] = {}
    translated = []
    for position, message in enumerate(messages):
        role = _ROLES.get(message.get("role", ""))
        if role is None:
            raise UnsupportedParameter(f"Unsupported role {message.get('role')!r}.", f"messages[{position}].role")
        text, images = _content(message.get("content"), f"messages[{position}].content")
        out: dict[str, Any] = {"role": role, "content": text}
        if images:
            out["images"] = images
        if role == "assistant" and message.get("tool_calls"):
            out["tool_calls"] = _tool_calls(message["tool_calls"], f"messages[{position}].tool_calls", tool_names)
        if role == "tool":
            name = tool_names.get(message.get("tool_call_id") or "") or message.get("name")
            if name:
                out["tool_name"] = name
        translated.append(out)
    return translated


def _content(content: Any, param: str) -> tuple[str, list[str]]:
    """The text of a message and the base64 data of its images."""
    if content is None:
        return "", []
    if isinstance(content, str):
        return content, []
    texts: list[str] = []
    images: list[str] = []
    for index, part in enumerate(content):
        kind = part.get("type")
        if kind == "text":
            texts.append(part.get("text") or "")
        elif kind == "refusal":
            texts.append(part.get("refusal") or "")
        elif kind == "image_url":
            images.append(_image_data(part.get("image_url"), f"{param}[{index}].image_url"))
        else:
            raise UnsupportedParameter(f"This model does not accept {kind!r} content.", f"{param}[{index}].type")
    return "\n".join(texts), images


def _image_data(image_url: Any, param: str) -> str:
    url = image_url.get("url", "") if isinstance(image_url, dict) else str(image_url or "")
    head, comma, data = url.partition(",")
    if url.startswith("data:") and comma and head.endswith(";base64"):
        return data
    raise UnsupportedParameter("This model takes images only as base64 data URLs (data:image/...;base64,...).", param)


def _tool_calls(calls: list[dict[str, Any]], param: str, tool_names: dict[str, str]) -> list[dict[str, Any]]:
    translated = []
    for index, call in enumerate(calls):
        function = function_call(call, f"{param}[{index}].type")
        name = function.get("name") or ""
        arguments = function.get("arguments") or "{}"
        if isinstance(arguments, str):
            try:
                arguments = orjson.loads(arguments)
            except orjson.JSONDecodeError:
                arguments = None
        if not isinstance(arguments, dict):
            raise UnsupportedParameter(
                "Tool call arguments must be a JSON object.", f"{param}[{index}].function.arguments"
            )
        if call.get("id"):
            tool_names[call["id"]] = name
        translated.append({"function": {"name": name, "arguments": arguments}})
    return translated
