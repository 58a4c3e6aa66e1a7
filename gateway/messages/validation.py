"""What Anthropic refuses in a Messages request before any model sees it, worded as Anthropic words it.

A refusal names the field by its path (`messages.0.content.1.source: ...`).
Only the shape is checked: what a field means is left to the upstream (an
Anthropic-kind deployment) or to the translation (gateway.messages.requests).
Unknown fields are let through, as new Anthropic parameters should be.
"""

from __future__ import annotations

from typing import Any

from gateway.errors import InvalidRequest

ROLES = ("user", "assistant")
TOOL_CHOICES = ("auto", "any", "tool", "none")
THINKING = ("enabled", "disabled", "adaptive")
_SOURCES = {"base64": ("media_type", "data"), "url": ("url",)}


def _refuse(path: str, problem: str) -> InvalidRequest:
    return InvalidRequest(f"{path}: {problem}", param=path)


def _required(body: dict[str, Any], name: str, path: str = "") -> Any:
    if body.get(name) is None:
        raise _refuse(f"{path}{name}", "Field required")
    return body[name]


def _string(value: Any, path: str) -> None:
    if not isinstance(value, str):
        raise _refuse(path, "Input should be a valid string")


def _number(body: dict[str, Any], name: str, low: float, high: float | None) -> None:
    value = body.get(name)
    if value is None:
        return
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise _refuse(name, "Input should be a valid number")
    if value < low:
        raise _refuse(name, f"Input should be greater than or equal to {low:g}")
    if high is not None and value > high:
        raise _refuse(name, f"Input should be less than or equal to {high:g}")


def _integer(value: Any, path: str, low: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int):
        raise _refuse(path, "Input should be a valid integer")
    if value < low:
        raise _refuse(path, f"Input should be greater than or equal to {low}")


def _choice(value: Any, path: str, choices: tuple[str, ...]) -> None:
    if value not in choices:
        listed = ", ".join(f"'{choice}'" for choice in choices)
        raise _refuse(path, f"Input should be one of {listed}")


def _block(block: Any, path: str) -> None:
    if not isinstance(block, dict):
        raise _refuse(path, "Input should be a valid dictionary")
    kind = block.get("type")
    _string(kind, f"{path}.type")
    if kind == "text":
        _string(block.get("text"), f"{path}.text")
    elif kind in ("image", "document"):
        source = block.get("source")
        if not isinstance(source, dict):
            raise _refuse(f"{path}.source", "Field required")
        _string(source.get("type"), f"{path}.source.type")
        for name in _SOURCES.get(source["type"], ()):
            _string(source.get(name), f"{path}.source.{name}")
    elif kind == "tool_use":
        _string(block.get("id"), f"{path}.id")
        _string(block.get("name"), f"{path}.name")
        if not isinstance(block.get("input"), dict):
            raise _refuse(f"{path}.input", "Input should be a valid dictionary")
    elif kind == "tool_result":
        _string(block.get("tool_use_id"), f"{path}.tool_use_id")
        content = block.get("content")
        if content is not None and not isinstance(content, str):
            _blocks(content, f"{path}.content")


def _blocks(content: Any, path: str) -> None:
    if not isinstance(content, list):
        raise _refuse(path, "Input should be a valid list")
    for index, block in enumerate(content):
        _block(block, f"{path}.{index}")


def _content(content: Any, path: str) -> None:
    if isinstance(content, str):
        return
    _blocks(content, path)


def _messages(messages: Any) -> None:
    if not isinstance(messages, list):
        raise _refuse("messages", "Input should be a valid list")
    if not messages:
        raise _refuse("messages", "at least one message is required")
    for index, message in enumerate(messages):
        path = f"messages.{index}"
        if not isinstance(message, dict):
            raise _refuse(path, "Input should be a valid dictionary")
        _choice(_required(message, "role", f"{path}."), f"{path}.role", ROLES)
        _content(_required(message, "content", f"{path}."), f"{path}.content")


def _system(body: dict[str, Any]) -> None:
    system = body.get("system")
    if system is None or isinstance(system, str):
        return
    _blocks(system, "system")
    for index, block in enumerate(system):
        if block["type"] != "text":
            raise _refuse(f"system.{index}.type", "Input should be 'text'")


def _tools(body: dict[str, Any]) -> None:
    tools = body.get("tools")
    if tools is None:
        return
    if not isinstance(tools, list):
        raise _refuse("tools", "Input should be a valid list")
    for index, tool in enumerate(tools):
        if not isinstance(tool, dict):
            raise _refuse(f"tools.{index}", "Input should be a valid dictionary")
        _string(tool.get("name"), f"tools.{index}.name")
        if tool.get("type") in (None, "custom") and not isinstance(tool.get("input_schema"), dict):
            raise _refuse(f"tools.{index}.input_schema", "Field required")


def _tool_choice(body: dict[str, Any]) -> None:
    choice = body.get("tool_choice")
    if choice is None:
        return
    if not isinstance(choice, dict):
        raise _refuse("tool_choice", "Input should be a valid dictionary")
    _choice(choice.get("type"), "tool_choice.type", TOOL_CHOICES)
    if choice["type"] == "tool":
        _string(choice.get("name"), "tool_choice.name")


def _options(body: dict[str, Any]) -> None:
    _number(body, "temperature", 0, 1)
    _number(body, "top_p", 0, 1)
    if body.get("top_k") is not None:
        _integer(body["top_k"], "top_k", 0)
    stops = body.get("stop_sequences")
    if stops is not None and (not isinstance(stops, list) or not all(isinstance(stop, str) for stop in stops)):
        raise _refuse("stop_sequences", "Input should be a valid list of strings")
    if body.get("stream") is not None and not isinstance(body["stream"], bool):
        raise _refuse("stream", "Input should be a valid boolean")
    metadata = body.get("metadata")
    if metadata is not None:
        if not isinstance(metadata, dict):
            raise _refuse("metadata", "Input should be a valid dictionary")
        if metadata.get("user_id") is not None:
            _string(metadata["user_id"], "metadata.user_id")
    thinking = body.get("thinking")
    if thinking is not None:
        if not isinstance(thinking, dict):
            raise _refuse("thinking", "Input should be a valid dictionary")
        _choice(thinking.get("type"), "thinking.type", THINKING)


def validate_count_request(body: dict[str, Any]) -> None:
    """Raise InvalidRequest, naming the field, for a count_tokens body Anthropic would refuse."""
    _string(_required(body, "model"), "model")
    _messages(_required(body, "messages"))
    _system(body)
    _tools(body)
    _tool_choice(body)


def validate_message_request(body: dict[str, Any]) -> None:
    """Raise InvalidRequest, naming the field, for a Messages body Anthropic would refuse."""
    validate_count_request(body)
    _integer(_required(body, "max_tokens"), "max_tokens", 1)
    _options(body)
