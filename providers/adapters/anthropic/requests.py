"""An OpenAI chat request, as an Anthropic Messages request.

Where the two APIs differ, Portico settles it here:

- System and developer messages become the one top-level `system` string, wherever they stood.
- Anthropic requires user and assistant turns to alternate, so consecutive messages of one role are
  merged into one turn; tool results are the user's, so a run of them becomes one user turn.
- A last assistant message is prefill: Anthropic carries on from its text (Portico's mid-stream
  recovery sends the text relayed so far this way). Anthropic refuses prefill that ends in
  whitespace, so trailing whitespace is left off.
- `max_tokens` is required: the client's cap, else the route's, else `DEFAULT_MAX_TOKENS`.
- Temperature runs from 0 to 2 at OpenAI and from 0 to 1 at Anthropic. Values above 1 are clamped
  to 1 rather than scaled, so the common 0–1 range means the same on both sides. A `top_p` of 1
  (the default) is not sent: some Anthropic models refuse `temperature` and `top_p` together.
- JSON mode has no switch at Anthropic: `response_format` json_object adds `JSON_INSTRUCTION` to `system`.

What has no Anthropic equivalent and would change the answer (n > 1, logprobs, audio, json_schema,
the legacy `functions`) is refused with `UnsupportedParameter`. Any other field is dropped, because
Anthropic rejects fields it does not know.
"""

from __future__ import annotations

from typing import Any

import orjson

from providers.adapters.base import Target, UnsupportedParameter, function_call

DEFAULT_MAX_TOKENS = 4096
MAX_TEMPERATURE = 1.0
JSON_INSTRUCTION = "Answer with a single JSON object and nothing else: no prose before or after it, no code fences."
_TOOL_CHOICES = {"auto": {"type": "auto"}, "none": {"type": "none"}, "required": {"type": "any"}}


def messages_body(target: Target, body: dict[str, Any]) -> dict[str, Any]:
    """The Messages API body for an OpenAI chat body (already validated by the gateway)."""
    _refuse_unsupported(body)
    system, messages = _conversation(body.get("messages") or [])
    if (body.get("response_format") or {}).get("type") == "json_object":
        system.append(JSON_INSTRUCTION)
    cap = body.get("max_completion_tokens") or body.get("max_tokens") or target.max_output_tokens
    out: dict[str, Any] = {
        "model": target.upstream_model,
        "max_tokens": cap or DEFAULT_MAX_TOKENS,
        "messages": messages,
    }
    if system:
        out["system"] = "\n\n".join(system)
    out.update(_sampling(body))
    out.update(_tools(body))
    # `safety_identifier` is OpenAI's newer name for what `user` was used for.
    end_user = body.get("user") or body.get("safety_identifier")
    if end_user:
        out["metadata"] = {"user_id": str(end_user)}
    if body.get("stream"):
        out["stream"] = True
    return out


def _refuse_unsupported(body: dict[str, Any]) -> None:
    if body.get("n") not in (None, 1):
        raise UnsupportedParameter("This model gives one choice per request: 'n' must be 1.", "n")
    if body.get("logprobs") or body.get("top_logprobs"):
        param = "logprobs" if body.get("logprobs") else "top_logprobs"
        raise UnsupportedParameter("This model does not return log probabilities.", param)
    if body.get("audio") or "audio" in (body.get("modalities") or ()):
        param = "audio" if body.get("audio") else "modalities"
        raise UnsupportedParameter("This model does not produce audio output.", param)
    if (body.get("response_format") or {}).get("type") == "json_schema":
        raise UnsupportedParameter(
            "This model does not support 'json_schema' response formats; use 'json_object' or tools.",
            "response_format",
        )
    for legacy in ("functions", "function_call"):
        if body.get(legacy) is not None:
            raise UnsupportedParameter(f"'{legacy}' is deprecated and not supported here; use 'tools'.", legacy)


def _sampling(body: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    stop = body.get("stop")
    if stop:
        out["stop_sequences"] = [stop] if isinstance(stop, str) else list(stop)
    if body.get("temperature") is not None:
        out["temperature"] = min(float(body["temperature"]), MAX_TEMPERATURE)
    # top_p 1 is the default, so it is not sent: clients often send it beside a temperature,
    # and some Anthropic models refuse the two together.
    if body.get("top_p") is not None and body["top_p"] < 1:
        out["top_p"] = body["top_p"]
    if body.get("top_k") is not None:
        out["top_k"] = body["top_k"]
    return out


def _tools(body: dict[str, Any]) -> dict[str, Any]:
    tools = body.get("tools")
    if not tools:
        return {}
    out: dict[str, Any] = {"tools": [_tool(tool) for tool in tools]}
    choice = body.get("tool_choice")
    if choice is not None:
        out["tool_choice"] = _tool_choice(choice)
    if body.get("parallel_tool_calls") is False:
        # A choice of "none" takes no such flag: no tool is called at all.
        out.setdefault("tool_choice", {"type": "auto"})
        if out["tool_choice"]["type"] != "none":
            out["tool_choice"]["disable_parallel_tool_use"] = True
    return out


def _tool(tool: dict[str, Any]) -> dict[str, Any]:
    if tool.get("type", "function") != "function":
        raise UnsupportedParameter(f"Only tools of type 'function' are supported, not '{tool['type']}'.", "tools")
    function = tool["function"]
    out = {
        "name": function["name"],
        "input_schema": function.get("parameters") or {"type": "object", "properties": {}},
    }
    if function.get("description"):
        out["description"] = function["description"]
    return out


def _tool_choice(choice: Any) -> dict[str, Any]:
    if isinstance(choice, str) and choice in _TOOL_CHOICES:
        return dict(_TOOL_CHOICES[choice])
    if isinstance(choice, dict) and isinstance((choice.get("function") or {}).get("name"), str):
        return {"type": "tool", "name": choice["function"]["name"]}
    raise UnsupportedParameter("'tool_choice' must be 'auto', 'none', 'required' or one named function.", "tool_choice")


def _conversation(messages: list[dict[str, Any]]) -> tuple[list[str], list[dict[str, Any]]]:
    """The system texts, and the alternating turns with their content as Anthropic blocks."""
    system: list[str] = []
    turns: list[dict[str, Any]] = []
    for index, message in enumerate(messages):
        where = f"messages[{index}]"
        role = message.get("role")
        if role in ("system", "developer"):
            system.extend(block["text"] for block in _blocks(message.get("content"), f"{where}.content"))
            continue
        if role == "user":
            blocks = _blocks(message.get("content"), f"{where}.content")
        elif role == "assistant":
            blocks = _blocks(message.get("content"), f"{where}.content") + _tool_uses(message, where)
        elif role == "tool":
            role, blocks = "user", [_tool_result(message, where)]
        else:
            raise UnsupportedParameter(f"Messages of role '{role}' are not supported here; use 'tool'.", where)
        if not blocks:
            continue  # Anthropic refuses empty turns; an empty message says nothing anyway.
        if turns and turns[-1]["role"] == role:
            turns[-1]["content"].extend(blocks)
        else:
            turns.append({"role": role, "content": blocks})
    if turns and turns[-1]["role"] == "assistant":
        _trim_prefill(turns)
    return system, turns


def _trim_prefill(turns: list[dict[str, Any]]) -> None:
    """Anthropic refuses a final assistant turn ending in whitespace; an emptied one is left out."""
    blocks = turns[-1]["content"]
    if blocks[-1]["type"] != "text":
        return
    text = blocks[-1]["text"].rstrip()
    if text:
        blocks[-1] = {"type": "text", "text": text}
        return
    blocks.pop()
    if not blocks:
        turns.pop()


def _blocks(content: Any, param: str) -> list[dict[str, Any]]:
    """Content as Anthropic blocks; empty text is left out, as Anthropic refuses empty text blocks."""
    if content is None:
        return []
    if isinstance(content, str):
        return [{"type": "text", "text": content}] if content else []
    blocks = []
    for index, part in enumerate(content):
        block = _block(part, f"{param}[{index}]")
        if block is not None:
            blocks.append(block)
    return blocks


def _block(part: dict[str, Any], param: str) -> dict[str, Any] | None:
    kind = part.get("type")
    if kind in ("text", "refusal"):
        text = part.get(kind) or ""
        return {"type": "text", "text": text} if text else None
    if kind == "image_url":
        return {"type": "image", "source": _source(part["image_url"]["url"], f"{param}.image_url.url")}
    if kind == "file":
        data = (part.get("file") or {}).get("file_data")
        if isinstance(data, str) and data.startswith("data:application/pdf;"):
            return {"type": "document", "source": _source(data, f"{param}.file.file_data")}
        raise UnsupportedParameter("Only PDF files sent inline as a data URL are supported.", param)
    raise UnsupportedParameter(f"Content parts of type '{kind}' are not supported by this model.", param)


def _source(url: str, param: str) -> dict[str, str]:
    if url.startswith(("https://", "http://")):
        return {"type": "url", "url": url}
    header, comma, data = url.partition(",")
    if url.startswith("data:") and comma and header.endswith(";base64"):
        return {"type": "base64", "media_type": header[5:].removesuffix(";base64"), "data": data}
    raise UnsupportedParameter("Images and files must be an http(s) URL or a base64 data URL.", param)


def _tool_uses(message: dict[str, Any], where: str) -> list[dict[str, Any]]:
    blocks = []
    for index, call in enumerate(message.get("tool_calls") or ()):
        function = function_call(call, f"{where}.tool_calls[{index}].type")
        param = f"{where}.tool_calls[{index}].function.arguments"
        arguments = function.get("arguments") or "{}"
        try:
            parsed = orjson.loads(arguments)
        except orjson.JSONDecodeError:
            parsed = None
        if not isinstance(parsed, dict):
            raise UnsupportedParameter("A tool call's arguments must be a JSON object.", param)
        blocks.append({"type": "tool_use", "id": call.get("id"), "name": function.get("name"), "input": parsed})
    return blocks


def _tool_result(message: dict[str, Any], where: str) -> dict[str, Any]:
    content = message.get("content")
    result: dict[str, Any] = {"type": "tool_result", "tool_use_id": message["tool_call_id"]}
    if isinstance(content, str):
        if content:
            result["content"] = content
    else:
        blocks = _blocks(content, f"{where}.content")
        if blocks:
            result["content"] = blocks
    return result
