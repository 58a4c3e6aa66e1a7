"""OpenAI chat and embeddings requests, as Cohere API v2 bodies (`/v2/chat`, `/v2/embed`).

Where the two APIs differ, Portico settles it here:

- Messages keep their roles: system (and developer), user, assistant and tool all exist in v2.
  An assistant turn that calls tools sends its text as Cohere's `tool_plan`, the field Cohere
  fills with the text it writes before calling tools (and which Portico relays as content).
- `top_p` is Cohere's `p`, which must lie between 0.01 and 0.99: a `top_p` of 1 (OpenAI's default,
  no nucleus cut) is not sent, and other values are brought into that range.
- `tool_choice` "required" and "none" are Cohere's `REQUIRED` and `NONE`; "auto" is Cohere's default.
  Cohere cannot name one function, so a named choice sends only that tool, with `REQUIRED`.
- `response_format` json_schema is Cohere's json_object with its `json_schema`.

What has no Cohere equivalent and would change the answer (n > 1, logprobs, audio, negative
penalties, the legacy `functions`) is refused with `UnsupportedParameter`; any other field is
dropped, because Cohere refuses fields it does not know.
"""

from __future__ import annotations

from typing import Any

import orjson

from providers.adapters.base import UnsupportedParameter, function_call

# Cohere's bounds on `p`; OpenAI's `top_p` runs from 0 to 1.
MIN_P, MAX_P = 0.01, 0.99
# Cohere embeds at most this many texts in one call.
MAX_EMBED_TEXTS = 96
_TOOL_CHOICES = {"none": "NONE", "required": "REQUIRED"}


def chat_body(body: dict[str, Any], upstream_model: str) -> dict[str, Any]:
    """The `/v2/chat` body for an OpenAI chat body (already validated by the gateway)."""
    _refuse_unsupported(body)
    chat: dict[str, Any] = {
        "model": upstream_model,
        "messages": [_message(message, f"messages[{index}]") for index, message in enumerate(body["messages"])],
        # Cohere documents `stream` as required; it is always spelled out.
        "stream": bool(body.get("stream")),
    }
    chat.update(_sampling(body))
    chat.update(_tools(body))
    response_format = _response_format(body.get("response_format"))
    if response_format is not None:
        chat["response_format"] = response_format
    return chat


def embed_body(body: dict[str, Any], upstream_model: str, *, input_type: str) -> dict[str, Any]:
    """The `/v2/embed` body: Cohere needs to know what the texts are for (`input_type`), OpenAI does not say."""
    texts = body.get("input")
    if isinstance(texts, str):
        texts = [texts]
    if not isinstance(texts, list) or not all(isinstance(text, str) for text in texts):
        raise UnsupportedParameter(
            "This model embeds text only: `input` must be a string or a list of strings.", "input"
        )
    if len(texts) > MAX_EMBED_TEXTS:
        raise UnsupportedParameter(f"This model embeds at most {MAX_EMBED_TEXTS} texts per request.", "input")
    embed: dict[str, Any] = {
        "model": upstream_model,
        "texts": texts,
        "input_type": input_type,
        # Portico encodes base64 itself from the floats (providers.adapters.embeddings).
        "embedding_types": ["float"],
    }
    if body.get("dimensions"):
        embed["output_dimension"] = body["dimensions"]
    return embed


def _refuse_unsupported(body: dict[str, Any]) -> None:
    if body.get("n") not in (None, 1):
        raise UnsupportedParameter("This model gives one choice per request: 'n' must be 1.", "n")
    if body.get("logprobs") or body.get("top_logprobs"):
        param = "logprobs" if body.get("logprobs") else "top_logprobs"
        raise UnsupportedParameter("This model does not return log probabilities.", param)
    if body.get("audio") or "audio" in (body.get("modalities") or ()):
        param = "audio" if body.get("audio") else "modalities"
        raise UnsupportedParameter("This model does not produce audio output.", param)
    for legacy in ("functions", "function_call"):
        if body.get(legacy) is not None:
            raise UnsupportedParameter(f"'{legacy}' is deprecated and not supported here; use 'tools'.", legacy)
    for penalty in ("frequency_penalty", "presence_penalty"):
        value = body.get(penalty)
        if value is not None and not 0 <= value <= 1:
            raise UnsupportedParameter(f"This model takes '{penalty}' between 0 and 1 only.", penalty)


def _sampling(body: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    cap = body.get("max_completion_tokens") or body.get("max_tokens")
    if cap:
        out["max_tokens"] = cap
    for name in ("temperature", "seed", "frequency_penalty", "presence_penalty"):
        if body.get(name) is not None:
            out[name] = body[name]
    top_p = body.get("top_p")
    if top_p is not None and top_p < 1:
        out["p"] = min(max(float(top_p), MIN_P), MAX_P)
    stop = body.get("stop")
    if stop:
        out["stop_sequences"] = [stop] if isinstance(stop, str) else list(stop)
    return out


def _tools(body: dict[str, Any]) -> dict[str, Any]:
    tools = body.get("tools")
    if not tools:
        return {}
    functions = [_tool(tool) for tool in tools]
    choice = body.get("tool_choice")
    out: dict[str, Any] = {}
    if isinstance(choice, dict):
        name = (choice.get("function") or {}).get("name")
        functions = [tool for tool in functions if tool["function"]["name"] == name]
        if not functions:
            raise UnsupportedParameter(f"'tool_choice' names '{name}', which is not among the tools.", "tool_choice")
        out["tool_choice"] = "REQUIRED"
    elif choice in _TOOL_CHOICES:
        out["tool_choice"] = _TOOL_CHOICES[choice]
    out["tools"] = functions
    if any((tool.get("function") or {}).get("strict") for tool in tools):
        out["strict_tools"] = True
    return out


def _tool(tool: dict[str, Any]) -> dict[str, Any]:
    if tool.get("type", "function") != "function":
        raise UnsupportedParameter(f"Only tools of type 'function' are supported, not '{tool['type']}'.", "tools")
    function = tool["function"]
    out: dict[str, Any] = {
        "name": function["name"],
        "parameters": function.get("parameters") or {"type": "object", "properties": {}},
    }
    if function.get("description"):
        out["description"] = function["description"]
    return {"type": "function", "function": out}


def _response_format(response_format: Any) -> dict[str, Any] | None:
    if not isinstance(response_format, dict):
        return None
    if response_format.get("type") == "json_object":
        return {"type": "json_object"}
    if response_format.get("type") == "json_schema":
        schema = (response_format.get("json_schema") or {}).get("schema")
        return {"type": "json_object", "json_schema": schema} if isinstance(schema, dict) else {"type": "json_object"}
    return None


def _message(message: dict[str, Any], where: str) -> dict[str, Any]:
    role = message.get("role")
    content = message.get("content")
    if role in ("system", "developer"):
        return {"role": "system", "content": _text(content, f"{where}.content")}
    if role == "user":
        return {"role": "user", "content": _user_content(content, f"{where}.content")}
    if role == "assistant":
        return _assistant(message, where)
    if role == "tool":
        return {
            "role": "tool",
            "tool_call_id": message["tool_call_id"],
            "content": _text(content, f"{where}.content"),
        }
    raise UnsupportedParameter(f"Messages of role '{role}' are not supported here; use 'tool'.", f"{where}.role")


def _assistant(message: dict[str, Any], where: str) -> dict[str, Any]:
    text = _text(message.get("content"), f"{where}.content")
    out: dict[str, Any] = {"role": "assistant"}
    calls = message.get("tool_calls")
    if calls:
        out["tool_calls"] = [_tool_call(call, f"{where}.tool_calls[{index}]") for index, call in enumerate(calls)]
        if text:
            out["tool_plan"] = text
    else:
        out["content"] = text
    return out


def _tool_call(call: dict[str, Any], where: str) -> dict[str, Any]:
    function = function_call(call, f"{where}.type")
    arguments = function.get("arguments") or "{}"
    try:
        parsed = orjson.loads(arguments)
    except orjson.JSONDecodeError:
        parsed = None
    if not isinstance(parsed, dict):
        raise UnsupportedParameter("A tool call's arguments must be a JSON object.", f"{where}.function.arguments")
    return {
        "id": call.get("id"),
        "type": "function",
        "function": {"name": function.get("name"), "arguments": arguments},
    }


def _text(content: Any, param: str) -> str:
    """A message's text: a string, or its text (and refusal) parts joined; anything else is refused."""
    if content is None or isinstance(content, str):
        return content or ""
    texts = []
    for index, part in enumerate(content):
        kind = part.get("type")
        if kind not in ("text", "refusal"):
            raise UnsupportedParameter(f"Content parts of type '{kind}' are not supported here.", f"{param}[{index}]")
        texts.append(part.get(kind) or "")
    return "".join(texts)


def _user_content(content: Any, param: str) -> str | list[dict[str, Any]]:
    """A user message's content: a string, or v2 content parts (text and `image_url`)."""
    if content is None or isinstance(content, str):
        return content or ""
    parts: list[dict[str, Any]] = []
    for index, part in enumerate(content):
        kind = part.get("type")
        if kind == "text":
            parts.append({"type": "text", "text": part.get("text") or ""})
        elif kind == "image_url":
            image = part.get("image_url") or {}
            url = image.get("url") if isinstance(image, dict) else None
            if not isinstance(url, str) or not url.startswith(("https://", "http://", "data:image/")):
                raise UnsupportedParameter(
                    "Images must be an http(s) URL or a data URL.", f"{param}[{index}].image_url.url"
                )
            image_url = {"url": url}
            if image.get("detail"):
                image_url["detail"] = image["detail"]
            parts.append({"type": "image_url", "image_url": image_url})
        else:
            raise UnsupportedParameter(f"Content parts of type '{kind}' are not supported here.", f"{param}[{index}]")
    return parts
