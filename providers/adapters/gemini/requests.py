"""An OpenAI chat request, as a Gemini `generateContent` request.

Where the two APIs differ, Portico settles it here:

- System and developer messages become the one `systemInstruction`, wherever they stood.
- Assistant turns are Gemini's `model` turns; tool results go back as `functionResponse` parts of a
  `user` turn, named by the function of the call they answer (Gemini matches results by name, OpenAI
  by the call's id). Consecutive messages of one role are merged into one turn, so the results of
  parallel calls travel together, as Gemini expects.
- Images and files go inline (`inlineData`), so only base64 data URLs are taken: Gemini cannot fetch
  an http(s) URL itself, and Portico fetches nothing on a client's behalf.
- Gemini reads a subset of OpenAPI's schema. Keys it refuses (`$schema`, `additionalProperties`) are
  left out of tool parameters and response schemas, and a function without parameters declares none,
  since Gemini refuses an object schema with no properties.
- `reasoning_effort` becomes a thinking budget in tokens, as Google's own OpenAI-compatible endpoint
  sets it; `none` turns thinking off.

What has no Gemini equivalent and would change the answer (logprobs, audio output, the legacy
`functions`, a reasoning effort without a budget) is refused with `UnsupportedParameter`. Any other
OpenAI field is dropped.
"""

from __future__ import annotations

from typing import Any

import orjson

from providers.adapters.base import UnsupportedParameter

# OpenAI's tool_choice strings as Gemini's function-calling modes.
_MODES = {"auto": "AUTO", "none": "NONE", "required": "ANY"}
# Schema keys Gemini's OpenAPI subset refuses.
_REFUSED_SCHEMA_KEYS = frozenset({"$schema", "additionalProperties"})
# OpenAI's audio formats as the MIME types Gemini reads.
_AUDIO_TYPES = {"wav": "audio/wav", "mp3": "audio/mp3"}
THOUGHT_SIGNATURE = "thought_signature"
# OpenAI's reasoning efforts as Gemini thinking budgets (tokens), the ones Google's OpenAI-compatible
# endpoint uses. Google lists no budget for "minimal", which OpenAI takes on some models: it gets the
# smallest one rather than none, since OpenAI's "minimal" still reasons a little and a model that cannot
# stop thinking (2.5 Pro) refuses a budget of 0, so "off" would break requests that work as "low". Nor does
# it list "xhigh", OpenAI's effort above "high": that gets "high"'s budget, the most every Flash model takes,
# so a client written for OpenAI's newest models is served rather than refused.
_THINKING_BUDGETS = {"none": 0, "minimal": 1024, "low": 1024, "medium": 8192, "high": 24576, "xhigh": 24576}


def generate_body(body: dict[str, Any]) -> dict[str, Any]:
    """The `generateContent` body for an OpenAI chat body (already validated by the gateway)."""
    _refuse_unsupported(body)
    system, contents = _conversation(body.get("messages") or [])
    out: dict[str, Any] = {"contents": contents}
    if system:
        out["systemInstruction"] = {"parts": [{"text": "\n\n".join(system)}]}
    out.update(_tools(body))
    config = generation_config(body)
    if config:
        out["generationConfig"] = config
    return out


def _refuse_unsupported(body: dict[str, Any]) -> None:
    if body.get("logprobs") or body.get("top_logprobs"):
        param = "logprobs" if body.get("logprobs") else "top_logprobs"
        raise UnsupportedParameter("This model does not return log probabilities.", param)
    if body.get("audio") or "audio" in (body.get("modalities") or ()):
        param = "audio" if body.get("audio") else "modalities"
        raise UnsupportedParameter("This model does not produce audio output.", param)
    for legacy in ("functions", "function_call"):
        if body.get(legacy) is not None:
            raise UnsupportedParameter(f"'{legacy}' is deprecated and not supported here; use 'tools'.", legacy)


def generation_config(body: dict[str, Any]) -> dict[str, Any]:
    """Sampling, length, stop sequences, choices and output format, under Gemini's names."""
    config: dict[str, Any] = {}
    for openai_name, gemini_name in (
        ("temperature", "temperature"),
        ("top_p", "topP"),
        ("seed", "seed"),
        ("presence_penalty", "presencePenalty"),
        ("frequency_penalty", "frequencyPenalty"),
    ):
        if body.get(openai_name) is not None:
            config[gemini_name] = body[openai_name]
    cap = body.get("max_completion_tokens") or body.get("max_tokens")
    if cap is not None:
        config["maxOutputTokens"] = cap
    stop = body.get("stop")
    if stop:
        config["stopSequences"] = [stop] if isinstance(stop, str) else list(stop)
    if (body.get("n") or 1) > 1:
        config["candidateCount"] = body["n"]
    config.update(_response_format(body.get("response_format")))
    thinking = _thinking(body.get("reasoning_effort"))
    if thinking:
        # A thinkingConfig may carry other settings (includeThoughts): the budget joins them, never replaces them.
        config.setdefault("thinkingConfig", {}).update(thinking)
    return config


def _thinking(effort: Any) -> dict[str, Any]:
    """The `thinkingConfig` fields for OpenAI's `reasoning_effort`, an effort without a budget refused."""
    if effort is None:
        return {}
    if not isinstance(effort, str) or effort not in _THINKING_BUDGETS:
        # The gateway passes the field through unchecked; guessing a budget would change the answer.
        allowed = ", ".join(f"'{name}'" for name in _THINKING_BUDGETS)
        raise UnsupportedParameter(f"'reasoning_effort' must be one of {allowed} for this model.", "reasoning_effort")
    return {"thinkingBudget": _THINKING_BUDGETS[effort]}


def _response_format(response_format: Any) -> dict[str, Any]:
    if not isinstance(response_format, dict):
        return {}
    kind = response_format.get("type")
    if kind == "json_object":
        return {"responseMimeType": "application/json"}
    if kind == "json_schema":
        schema = (response_format.get("json_schema") or {}).get("schema")
        out: dict[str, Any] = {"responseMimeType": "application/json"}
        if isinstance(schema, dict):
            out["responseSchema"] = gemini_schema(schema)
        return out
    return {}


def gemini_schema(schema: Any) -> Any:
    """A JSON schema without the keys Gemini's subset refuses, at every depth."""
    if isinstance(schema, dict):
        return {key: gemini_schema(value) for key, value in schema.items() if key not in _REFUSED_SCHEMA_KEYS}
    if isinstance(schema, list):
        return [gemini_schema(item) for item in schema]
    return schema


def _tools(body: dict[str, Any]) -> dict[str, Any]:
    tools = body.get("tools")
    if not tools:
        return {}
    out: dict[str, Any] = {"tools": [{"functionDeclarations": [_declaration(tool) for tool in tools]}]}
    choice = body.get("tool_choice")
    if choice is not None:
        out["toolConfig"] = {"functionCallingConfig": _calling_config(choice)}
    return out


def _declaration(tool: dict[str, Any]) -> dict[str, Any]:
    if tool.get("type", "function") != "function":
        raise UnsupportedParameter(f"Only tools of type 'function' are supported, not '{tool['type']}'.", "tools")
    function = tool["function"]
    declaration: dict[str, Any] = {"name": function["name"]}
    if function.get("description"):
        declaration["description"] = function["description"]
    parameters = function.get("parameters")
    if isinstance(parameters, dict) and (parameters.get("properties") or parameters.get("type") != "object"):
        declaration["parameters"] = gemini_schema(parameters)
    return declaration


def _calling_config(choice: Any) -> dict[str, Any]:
    if isinstance(choice, str) and choice in _MODES:
        return {"mode": _MODES[choice]}
    name = (choice.get("function") or {}).get("name") if isinstance(choice, dict) else None
    if isinstance(name, str):
        return {"mode": "ANY", "allowedFunctionNames": [name]}
    raise UnsupportedParameter("'tool_choice' must be 'auto', 'none', 'required' or one named function.", "tool_choice")


def _conversation(messages: list[dict[str, Any]]) -> tuple[list[str], list[dict[str, Any]]]:
    """The system texts, and the turns as Gemini contents."""
    system: list[str] = []
    turns: list[dict[str, Any]] = []
    # Gemini names a function's result by the function, OpenAI by the call's id: remember which id named what.
    names: dict[str, str] = {}
    for index, message in enumerate(messages):
        where = f"messages[{index}]"
        role = message.get("role")
        if role in ("system", "developer"):
            system.extend(_system_texts(message.get("content"), f"{where}.content"))
            continue
        if role == "user":
            gemini_role, parts = "user", _parts(message.get("content"), f"{where}.content")
        elif role == "assistant":
            gemini_role = "model"
            parts = _parts(message.get("content"), f"{where}.content") + _function_calls(message, where, names)
        elif role == "tool":
            gemini_role, parts = "user", [_function_response(message, where, names)]
        else:
            raise UnsupportedParameter(f"Messages of role '{role}' are not supported here.", f"{where}.role")
        if not parts:
            continue  # Gemini refuses a turn without parts; an empty message says nothing anyway
        if turns and turns[-1]["role"] == gemini_role:
            turns[-1]["parts"].extend(parts)
        else:
            turns.append({"role": gemini_role, "parts": parts})
    return system, turns


def _system_texts(content: Any, param: str) -> list[str]:
    """A system message's texts: Gemini's system instruction is read as text, so other parts are refused."""
    if content is None or isinstance(content, str):
        return [part["text"] for part in _parts(content, param)]
    texts = []
    for index, item in enumerate(content):
        part = _part(item, f"{param}[{index}]")
        if part is None:
            continue
        if "text" not in part:
            raise UnsupportedParameter("System messages may hold only text parts.", f"{param}[{index}]")
        texts.append(part["text"])
    return texts


def _parts(content: Any, param: str) -> list[dict[str, Any]]:
    """Content as Gemini parts; empty text is left out, as Gemini refuses empty parts."""
    if content is None:
        return []
    if isinstance(content, str):
        return [{"text": content}] if content else []
    parts = []
    for index, item in enumerate(content):
        part = _part(item, f"{param}[{index}]")
        if part is not None:
            parts.append(part)
    return parts


def _part(item: dict[str, Any], param: str) -> dict[str, Any] | None:
    kind = item.get("type")
    if kind in ("text", "refusal"):
        text = item.get(kind) or ""
        return {"text": text} if text else None
    if kind == "image_url":
        image = item.get("image_url")
        url = image.get("url", "") if isinstance(image, dict) else str(image or "")
        return {"inlineData": _inline(url, f"{param}.image_url.url")}
    if kind == "input_audio":
        audio = item.get("input_audio") or {}
        mime = _AUDIO_TYPES.get(str(audio.get("format")))
        if mime is None or not audio.get("data"):
            raise UnsupportedParameter("Audio must be base64 'wav' or 'mp3' data.", f"{param}.input_audio")
        return {"inlineData": {"mimeType": mime, "data": audio["data"]}}
    if kind == "file":
        data = (item.get("file") or {}).get("file_data")
        if isinstance(data, str):
            return {"inlineData": _inline(data, f"{param}.file.file_data")}
        raise UnsupportedParameter("Files must be sent inline, as a base64 data URL in 'file_data'.", param)
    raise UnsupportedParameter(f"Content parts of type '{kind}' are not supported by this model.", param)


def _inline(url: str, param: str) -> dict[str, str]:
    header, comma, data = url.partition(",")
    if url.startswith("data:") and comma and header.endswith(";base64"):
        return {"mimeType": header[5:].removesuffix(";base64"), "data": data}
    if url.startswith(("https://", "http://")):
        raise UnsupportedParameter(
            "This model cannot fetch images or files from a URL; send them as base64 data URLs "
            "(data:image/png;base64,...).",
            param,
        )
    raise UnsupportedParameter("Images and files must be base64 data URLs (data:image/png;base64,...).", param)


def _function_calls(message: dict[str, Any], where: str, names: dict[str, str]) -> list[dict[str, Any]]:
    parts = []
    for index, call in enumerate(message.get("tool_calls") or ()):
        function = call.get("function") or {}
        param = f"{where}.tool_calls[{index}].function.arguments"
        try:
            arguments = orjson.loads(function.get("arguments") or "{}")
        except orjson.JSONDecodeError:
            arguments = None
        if not isinstance(arguments, dict):
            raise UnsupportedParameter("A tool call's arguments must be a JSON object.", param)
        name = function.get("name") or ""
        if call.get("id"):
            names[call["id"]] = name
        part: dict[str, Any] = {"functionCall": {"name": name, "args": arguments}}
        signature = ((call.get("extra_content") or {}).get("google") or {}).get(THOUGHT_SIGNATURE)
        if isinstance(signature, str) and signature:
            # Thinking models want their signature back on the call they made, or refuse the next turn.
            part["thoughtSignature"] = signature
        parts.append(part)
    return parts


def _function_response(message: dict[str, Any], where: str, names: dict[str, str]) -> dict[str, Any]:
    call_id = message.get("tool_call_id") or ""
    name = names.get(call_id) or message.get("name")
    if not name:
        raise UnsupportedParameter(
            "A tool result must answer a tool call made earlier in 'messages' (its 'tool_call_id').",
            f"{where}.tool_call_id",
        )
    return {"functionResponse": {"name": name, "response": _result(message.get("content"), f"{where}.content")}}


def _result(content: Any, param: str) -> dict[str, Any]:
    """A tool's result as the object Gemini takes: a JSON object as it is, anything else under `content`."""
    if not isinstance(content, str):
        content = "".join(part.get("text", "") for part in _parts(content, param))
    try:
        parsed = orjson.loads(content)
    except orjson.JSONDecodeError:
        parsed = None
    return parsed if isinstance(parsed, dict) else {"content": content}
