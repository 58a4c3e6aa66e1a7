"""Small pieces of OpenAI's wire format that several adapters share."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

import orjson

from providers.adapters.failures import UpstreamFailure
from providers.redaction import NO_SECRETS, Redactor

# Upstream status -> (status Portico answers with, OpenAI error type).
_STATUS_MAP: dict[int, tuple[int, str]] = {
    400: (400, "invalid_request_error"),
    404: (404, "invalid_request_error"),
    409: (409, "invalid_request_error"),
    413: (413, "invalid_request_error"),
    422: (400, "invalid_request_error"),
    429: (429, "rate_limit_error"),
    500: (502, "api_error"),
    502: (502, "api_error"),
    503: (503, "api_error"),
    504: (504, "api_error"),
    529: (503, "api_error"),
}
_PASSED_HEADERS = ("retry-after", "retry-after-ms")


# The first `"model": "…"` member of a body. Inside a JSON string every quote is escaped, so this can only
# match a key, and in OpenAI's bodies and chunks the first such key is the top-level one.
_MODEL_MEMBER = re.compile(rb'"model"(\s*):(\s*)"(?:[^"\\]|\\.)*"')


def model_rewriter(public_model: str) -> Callable[[bytes], bytes]:
    """A function giving a body or chunk the public model id, whatever name the upstream answered with.

    Upstreams often answer with a dated name (`gpt-4o` -> `gpt-4o-2024-08-06`), so the value is
    replaced whatever it is. Working on bytes saves a parse and a dump per stream chunk, and a
    chunk that already names the public id (the usual case) is passed on untouched.
    """
    public = orjson.dumps(public_model)
    already = (b'"model":' + public, b'"model": ' + public)

    def rewrite(payload: bytes) -> bytes:
        if already[0] in payload or already[1] in payload:
            return payload
        return _MODEL_MEMBER.sub(lambda match: b'"model"' + match[1] + b":" + match[2] + public, payload, count=1)

    return rewrite


def rewrite_model(payload: bytes, public_model: str) -> bytes:
    return model_rewriter(public_model)(payload)


def openai_failure(status: int, payload: bytes, headers: Any, *, redactor: Redactor = NO_SECRETS) -> UpstreamFailure:
    """An OpenAI-style upstream error answer, mapped to what Portico tells its client.

    Every field the upstream wrote (message, type, param, code) is redacted, not only the message:
    an upstream may quote the request's credential or headers in any of them.
    """
    passed = {name: redactor.text(headers[name]) for name in _PASSED_HEADERS if name in headers}
    if status in (401, 403):
        # The upstream refused *Portico's* credential: the client can do nothing about it,
        # and the upstream's message may quote part of that credential.
        return UpstreamFailure(
            status=502,
            message="The upstream provider refused the gateway's credentials; an operator must check the provider.",
            type="api_error",
            code="upstream_auth_error",
            headers=passed,
            reason="upstream_auth_error",
        )
    mapped_status, default_type = _STATUS_MAP.get(status, (502 if status >= 500 else 400, "api_error"))
    error = _error_object(payload)

    def field(name: str) -> str | None:
        value = error.get(name)
        return None if value is None else redactor.text(str(value))

    message = field("message") or f"The upstream provider answered with HTTP {status}."
    if status == 429:
        return rate_limit_failure(message, error.get("type"), headers, passed)
    if mapped_status >= 500:
        message = f"The upstream provider failed: {message}"
    return UpstreamFailure(
        status=mapped_status,
        message=message,
        type=(field("type") or default_type) if mapped_status < 500 else default_type,
        code=field("code"),
        param=field("param"),
        headers=passed,
    )


def rate_limit_failure(message: str, upstream_type: Any, headers: Any, passed: dict[str, str]) -> UpstreamFailure:
    """OpenAI's 429, whatever type the upstream gave: `requests` or `tokens` with `rate_limit_exceeded`.

    Clients branch on these two types (as they do on Portico's own limits), so an upstream's own word
    (`rate_limit_error`, `server_error`, `insufficient_quota`) is not passed on. It is `tokens` when the
    upstream says so, in its type or in rate-limit headers showing tokens, not requests, spent.
    """
    return UpstreamFailure(
        status=429,
        message=message,
        type="tokens" if upstream_type == "tokens" or _tokens_spent(headers) else "requests",
        code="rate_limit_exceeded",
        headers=passed,
    )


# (requests left, tokens left) as OpenAI and Anthropic name them.
_REMAINING = (
    ("x-ratelimit-remaining-requests", "x-ratelimit-remaining-tokens"),
    ("anthropic-ratelimit-requests-remaining", "anthropic-ratelimit-tokens-remaining"),
)


def _tokens_spent(headers: Any) -> bool:
    return any(headers.get(tokens) == "0" and headers.get(requests) != "0" for requests, tokens in _REMAINING)


def usage_is_plausible(usage: Any, *, wrote_output: bool) -> bool:
    """False for a usage report that cannot be right, which Portico then counts itself.

    A chat or completion prompt always costs tokens, so `prompt_tokens: 0` is a server that does not
    count (or left its prompt cache hits out, as Ollama does); so is `completion_tokens: 0` for an
    answer that has content.
    """
    if not isinstance(usage, dict):
        return False
    prompt, completion = usage.get("prompt_tokens"), usage.get("completion_tokens")
    if not isinstance(prompt, int) or prompt <= 0:
        return False
    return not wrote_output or (isinstance(completion, int) and completion > 0)


# The operations whose answers carry a usage report Portico checks (and counts itself when it cannot be right).
COUNTED_OPERATIONS = frozenset({"chat", "completions", "embeddings"})


def usage_object(operation: str, prompt_tokens: int, completion_tokens: int) -> dict[str, int]:
    """OpenAI's usage object for Portico's own count (embeddings have no completion)."""
    if operation == "embeddings":
        return {"prompt_tokens": prompt_tokens, "total_tokens": prompt_tokens}
    total = prompt_tokens + completion_tokens
    return {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens, "total_tokens": total}


def cache_creation(usage: Any) -> int | None:
    """Prompt tokens written to the upstream's cache, if its report (as the Anthropic kind gives it) says."""
    details = usage.get("prompt_tokens_details") if isinstance(usage, dict) else None
    value = details.get("cache_creation_tokens") if isinstance(details, dict) else None
    return value if isinstance(value, int) else None


def client_usage(usage: Any) -> Any:
    """A usage report with OpenAI's fields only: without `cache_creation_tokens`, which billing still reads
    from the report the call keeps (billing.money.Usage)."""
    details = usage.get("prompt_tokens_details") if isinstance(usage, dict) else None
    if not isinstance(details, dict) or "cache_creation_tokens" not in details:
        return usage
    kept = {name: value for name, value in details.items() if name != "cache_creation_tokens"}
    return {**usage, "prompt_tokens_details": kept}


def upstream_id(adapter: Any, payload: bytes) -> str:
    """The upstream's own id for a whole answer, for kinds that give the client another (see the Anthropic kind)."""
    own = getattr(adapter, "upstream_id", None)
    return own(payload) if own is not None else ""


_OUTPUT_MARKERS = (b'"content":"', b'"content": "', b'"text":"', b'"text": "')


def wrote_output(event: bytes) -> bool:
    """Whether a chunk carries answer text or a tool call: looked for until the first chunk that does."""
    for marker in _OUTPUT_MARKERS:
        at = event.find(marker)
        if at >= 0 and event[at + len(marker) : at + len(marker) + 1] != b'"':
            return True
    return b'"tool_calls":[{' in event or b'"tool_calls": [{' in event


def _error_object(payload: bytes) -> dict[str, Any]:
    try:
        body = orjson.loads(payload)
    except orjson.JSONDecodeError:
        return {}
    if isinstance(body, dict):
        error = body.get("error")
        if isinstance(error, dict):
            return error
        if isinstance(error, str):
            return {"message": error}
        if isinstance(body.get("message"), str):
            return {"message": body["message"]}
    return {}


def openai_model_ids(payload: bytes) -> list[str]:
    """The ids of an OpenAI model list; ValueError if the payload is not one."""
    try:
        body = orjson.loads(payload)
        return [str(item["id"]) for item in body["data"]]
    except (orjson.JSONDecodeError, KeyError, TypeError) as exc:
        raise ValueError("not an OpenAI model list") from exc
