"""What the OpenAI surface's OpenAPI document says of request bodies and errors.

The views read their bodies themselves (gateway.intake, gateway.uploads) so
that unknown fields pass through untouched and no model is built per request;
these JSON Schemas therefore only describe the requests, for the API docs and
for the schema-driven tests (tests/security/test_schemathesis.py). They name
the fields Portico checks and leave every object open, as OpenAI's are.
"""

from __future__ import annotations

from typing import Any

Schema = dict[str, Any]

_STRING: Schema = {"type": "string"}
_TOKENS: Schema = {"type": "array", "items": {"type": "integer"}}
# OpenAI's prompt and input union: a string, strings, a token array, or token arrays.
_TEXT_OR_TOKENS: Schema = {
    "anyOf": [_STRING, {"type": "array", "items": _STRING}, _TOKENS, {"type": "array", "items": _TOKENS}]
}
_STOP: Schema = {"anyOf": [_STRING, {"type": "array", "items": _STRING, "maxItems": 4}, {"type": "null"}]}
_STREAM_OPTIONS: Schema = {"type": "object", "properties": {"include_usage": {"type": "boolean"}}}


def _number(low: float, high: float) -> Schema:
    return {"type": "number", "minimum": low, "maximum": high}


def _integer(low: int, high: int | None = None) -> Schema:
    return {"type": "integer", "minimum": low} | ({"maximum": high} if high is not None else {})


_CONTENT_PART: Schema = {
    "type": "object",
    "required": ["type"],
    "properties": {
        "type": {"enum": ["text", "image_url", "input_audio", "file", "refusal"]},
        "text": _STRING,
        "image_url": {"type": "object", "required": ["url"], "properties": {"url": _STRING, "detail": _STRING}},
    },
}
_MESSAGE: Schema = {
    "type": "object",
    "required": ["role", "content"],
    "properties": {
        "role": {"enum": ["system", "developer", "user", "assistant", "tool", "function"]},
        # Null or absent only on an assistant message that calls tools; left out here, among the invalid inputs.
        "content": {"anyOf": [_STRING, {"type": "array", "items": _CONTENT_PART}]},
        "name": _STRING,
        "tool_call_id": _STRING,
        "tool_calls": {"type": "array", "items": {"type": "object"}},
    },
    # A tool's answer names the call it answers; a function's, the function.
    "allOf": [
        {"if": {"properties": {"role": {"const": "tool"}}}, "then": {"required": ["tool_call_id"]}},
        {"if": {"properties": {"role": {"const": "function"}}}, "then": {"required": ["name"]}},
    ],
}
_TOOL: Schema = {
    "type": "object",
    "required": ["type", "function"],
    "properties": {
        "type": {"const": "function"},
        "function": {
            "type": "object",
            "required": ["name"],
            "properties": {"name": _STRING, "description": _STRING, "parameters": {"type": "object"}},
        },
    },
}
_RESPONSE_FORMAT: Schema = {
    "type": "object",
    "required": ["type"],
    "properties": {"type": {"enum": ["text", "json_object", "json_schema"]}, "json_schema": {"type": "object"}},
}
_SAMPLING: Schema = {
    "temperature": _number(0, 2),
    "top_p": _number(0, 1),
    "presence_penalty": _number(-2, 2),
    "frequency_penalty": _number(-2, 2),
    "n": _integer(1, 128),
    "stop": _STOP,
    "seed": _integer(-(2**63), 2**63 - 1),
    "user": _STRING,
    "stream": {"type": "boolean"},
    "stream_options": _STREAM_OPTIONS,
}

# `stream_options` is only allowed on a streamed request.
_STREAM_OPTIONS_NEED_STREAM: Schema = {
    "stream_options": {"required": ["stream"], "properties": {"stream": {"const": True}}}
}

CHAT_REQUEST: Schema = {
    "type": "object",
    "required": ["model", "messages"],
    "dependentSchemas": _STREAM_OPTIONS_NEED_STREAM,
    "properties": {
        "model": _STRING,
        "messages": {"type": "array", "minItems": 1, "items": _MESSAGE},
        **_SAMPLING,
        "max_tokens": _integer(1),
        "max_completion_tokens": _integer(1),
        "logprobs": {"type": "boolean"},
        "top_logprobs": _integer(0, 20),
        "logit_bias": {"type": "object", "additionalProperties": {"type": "number"}},
        "metadata": {"type": "object", "additionalProperties": _STRING},
        "tools": {"type": "array", "items": _TOOL},
        "tool_choice": {"anyOf": [{"enum": ["none", "auto", "required"]}, {"type": "object"}]},
        "response_format": _RESPONSE_FORMAT,
    },
}
COMPLETION_REQUEST: Schema = {
    "type": "object",
    "required": ["model", "prompt"],
    "dependentSchemas": _STREAM_OPTIONS_NEED_STREAM,
    "properties": {
        "model": _STRING,
        "prompt": _TEXT_OR_TOKENS,
        **_SAMPLING,
        "max_tokens": _integer(0),
        "best_of": _integer(0, 20),
        "logprobs": _integer(0, 5),
        "echo": {"type": "boolean"},
        "suffix": _STRING,
    },
}
EMBEDDING_REQUEST: Schema = {
    "type": "object",
    "required": ["model", "input"],
    "properties": {
        "model": _STRING,
        "input": _TEXT_OR_TOKENS,
        "dimensions": _integer(1),
        "encoding_format": {"enum": ["float", "base64"]},
        "user": _STRING,
    },
}
MODERATION_REQUEST: Schema = {
    "type": "object",
    "required": ["input"],
    "properties": {
        "model": _STRING,
        "input": {"anyOf": [_STRING, {"type": "array", "items": {"anyOf": [_STRING, {"type": "object"}]}}]},
    },
}
IMAGE_REQUEST: Schema = {
    "type": "object",
    "required": ["prompt"],
    "properties": {
        "model": _STRING,
        "prompt": _STRING,
        "n": _integer(1, 10),
        "size": _STRING,
        "quality": _STRING,
        "response_format": {"enum": ["url", "b64_json"]},
        "user": _STRING,
    },
}
TRANSCRIPTION_REQUEST: Schema = {
    "type": "object",
    "required": ["file", "model"],
    "properties": {
        "file": {"type": "string", "format": "binary"},
        "model": _STRING,
        "language": _STRING,
        "prompt": _STRING,
        "response_format": {"enum": ["json", "text", "srt", "verbose_json", "vtt"]},
        "temperature": _number(0, 1),
    },
}

ERROR: Schema = {
    "type": "object",
    "required": ["error"],
    "properties": {
        "error": {
            "type": "object",
            "required": ["message", "type", "param", "code"],
            "properties": {
                "message": _STRING,
                "type": _STRING,
                "param": {"type": ["string", "null"]},
                "code": {"type": ["string", "null"]},
            },
        }
    },
}


def documented(body: Schema | None = None, *, media_type: str = "application/json") -> dict[str, Any]:
    """An operation's `openapi_extra`: its request body, if any, and OpenAI's error shape for every other answer."""
    extra: dict[str, Any] = {
        "responses": {"default": {"description": "An error", "content": {"application/json": {"schema": ERROR}}}}
    }
    if body is not None:
        extra["requestBody"] = {"required": True, "content": {media_type: {"schema": body}}}
    return extra
