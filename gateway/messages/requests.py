"""A Messages request, as the OpenAI chat request Portico serves every other provider kind with.

Pure: dict in, dict out. The chat form is made for every request, whatever
deployment answers it: the limits, the budget and the ledger count the call as
the chat call it stands for, and a deployment of another kind than Anthropic is
sent it. Where the two APIs differ, Portico settles it here:

- `system` (a string or text blocks) becomes one system message at the head.
- A user turn's `tool_result` blocks become `tool` messages, placed first, as OpenAI
  wants the results right after the assistant message that called the tools; the
  turn's other blocks follow as one user message. Images in a tool result join it,
  as a tool message carries only text.
- An assistant turn's text becomes its content and its `tool_use` blocks its `tool_calls`.
  Thinking blocks are the model's own and are not sent back.
- Images (base64 or URL) become `image_url` parts; base64 PDF documents `file` parts;
  plain-text documents text.
- `max_tokens` becomes `max_completion_tokens`, `stop_sequences` `stop`, `metadata.user_id`
  `user`; `tool_choice` any/tool/none become required/a named function/none, and
  `disable_parallel_tool_use` `parallel_tool_calls: false`. A stream asks for its usage.
- `top_k`, `thinking` and `cache_control` have no OpenAI equivalent and are left out.

What cannot be said in chat terms at all (Anthropic's own server tools, a document
by URL, a file id) is left out of the chat form and noted as `refusal`: an
Anthropic-kind deployment, sent the request as it came, can still answer it, and
any other deployment refuses it with that 400.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import orjson

from gateway.errors import InvalidRequest

_TOOL_CHOICES = {"auto": "auto", "any": "required", "none": "none"}


@dataclass(slots=True)
class Translation:
    body: dict[str, Any]  # the chat request
    refusal: InvalidRequest | None = None  # the first thing the chat request had to leave out, if any

    def note(self, path: str, what: str) -> None:
        if self.refusal is None:
            self.refusal = InvalidRequest(
                f"{path}: {what} can only be served by an Anthropic deployment of this model.",
                param=path,
                code="unsupported_parameter",
            )


def chat_request(body: dict[str, Any]) -> Translation:
    """The chat form of a Messages body (already validated by gateway.messages.validation)."""
    out = Translation({"model": body["model"]})
    messages = _system(body.get("system"))
    for index, message in enumerate(body["messages"]):
        messages.extend(_turn(message, f"messages.{index}", out))
    chat = out.body
    chat["messages"] = messages
    if body.get("max_tokens") is not None:
        chat["max_completion_tokens"] = body["max_tokens"]
    for name in ("temperature", "top_p"):
        if body.get(name) is not None:
            chat[name] = body[name]
    if body.get("stop_sequences"):
        chat["stop"] = list(body["stop_sequences"])
    user = (body.get("metadata") or {}).get("user_id")
    if user:
        chat["user"] = user
    chat.update(_tools(body, out))
    if body.get("stream"):
        chat["stream"] = True
        chat["stream_options"] = {"include_usage": True}  # the stream's message_delta carries the usage
    return out


def _text(blocks: list[dict[str, Any]]) -> str:
    return "\n\n".join(block.get("text") or "" for block in blocks if block.get("type") == "text")


def _system(system: Any) -> list[dict[str, Any]]:
    text = system if isinstance(system, str) else _text(system or [])
    return [{"role": "system", "content": text}] if text else []


def _turn(message: dict[str, Any], path: str, out: Translation) -> list[dict[str, Any]]:
    content = message["content"]
    if isinstance(content, str):
        return [{"role": message["role"], "content": content}]
    if message["role"] == "assistant":
        return [_assistant(content, path, out)]
    results: list[dict[str, Any]] = []
    parts: list[dict[str, Any]] = []
    for index, block in enumerate(content):
        where = f"{path}.content.{index}"
        if block["type"] == "tool_result":
            tool, images = _tool_result(block, where, out)
            results.append(tool)
            parts.extend(images)
        else:
            part = _part(block, where, out)
            if part is not None:
                parts.append(part)
    if parts:
        results.append({"role": "user", "content": _collapsed(parts)})
    return results


def _collapsed(parts: list[dict[str, Any]]) -> str | list[dict[str, Any]]:
    # A lone text part goes as a string: the form every OpenAI-compatible server accepts.
    if len(parts) == 1 and parts[0]["type"] == "text":
        return str(parts[0]["text"])
    return parts


def _assistant(content: list[dict[str, Any]], path: str, out: Translation) -> dict[str, Any]:
    texts, calls = [], []
    for index, block in enumerate(content):
        kind = block["type"]
        if kind == "text":
            texts.append(block["text"])
        elif kind == "tool_use":
            function = {"name": block["name"], "arguments": orjson.dumps(block.get("input") or {}).decode()}
            calls.append({"id": block["id"], "type": "function", "function": function})
        elif kind not in ("thinking", "redacted_thinking"):
            out.note(f"{path}.content.{index}", f"a `{kind}` block")
    message: dict[str, Any] = {"role": "assistant", "content": "".join(texts) if texts or not calls else None}
    if calls:
        message["tool_calls"] = calls
    return message


def _tool_result(block: dict[str, Any], path: str, out: Translation) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    content = block.get("content")
    images: list[dict[str, Any]] = []
    if isinstance(content, list):
        for index, item in enumerate(content):
            if item.get("type") != "text":
                part = _part(item, f"{path}.content.{index}", out)
                if part is not None:
                    images.append(part)
        content = _text(content)
    return {"role": "tool", "tool_call_id": block["tool_use_id"], "content": content or ""}, images


def _part(block: dict[str, Any], path: str, out: Translation) -> dict[str, Any] | None:
    kind = block["type"]
    if kind == "text":
        return {"type": "text", "text": block["text"]}
    source = block.get("source") or {}
    if kind == "image" and source.get("type") == "base64":
        return {"type": "image_url", "image_url": {"url": f"data:{source['media_type']};base64,{source['data']}"}}
    if kind == "image" and source.get("type") == "url":
        return {"type": "image_url", "image_url": {"url": source["url"]}}
    if kind == "document" and source.get("type") == "base64" and source.get("media_type") == "application/pdf":
        data = f"data:application/pdf;base64,{source['data']}"
        return {"type": "file", "file": {"filename": block.get("title") or "document.pdf", "file_data": data}}
    if kind == "document" and source.get("type") == "text" and isinstance(source.get("data"), str):
        return {"type": "text", "text": source["data"]}
    what = f"a `{kind}` block" if kind not in ("image", "document") else f"a {kind} of source `{source.get('type')}`"
    out.note(path, what)
    return None


def _tools(body: dict[str, Any], out: Translation) -> dict[str, Any]:
    tools = []
    for index, tool in enumerate(body.get("tools") or ()):
        if tool.get("type") not in (None, "custom"):
            out.note(f"tools.{index}", f"Anthropic's `{tool['type']}` tool")
            continue
        function = {"name": tool["name"], "parameters": tool["input_schema"]}
        if tool.get("description"):
            function["description"] = tool["description"]
        tools.append({"type": "function", "function": function})
    if not tools:
        return {}  # OpenAI refuses a tool_choice without tools
    chat: dict[str, Any] = {"tools": tools}
    choice = body.get("tool_choice")
    if choice is not None:
        kind = choice["type"]
        chat["tool_choice"] = (
            {"type": "function", "function": {"name": choice["name"]}} if kind == "tool" else _TOOL_CHOICES[kind]
        )
        if choice.get("disable_parallel_tool_use") and kind != "none":
            chat["parallel_tool_calls"] = False
    return chat
