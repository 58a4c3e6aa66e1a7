"""Anthropic's Messages API, spoken to in OpenAI's chat terms: pure translation both ways.

Requests are translated in `requests`, whole answers in `responses`, streams in `stream`, errors
in `errors`. Only chat is native; the gateway bridges legacy completions onto it.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from typing import Any

import orjson

from providers.adapters.anthropic.errors import anthropic_failure
from providers.adapters.anthropic.requests import DEFAULT_MAX_TOKENS, messages_body
from providers.adapters.anthropic.responses import answer_id, chat_completion
from providers.adapters.anthropic.stream import AnthropicStream
from providers.adapters.base import (
    BaseAdapter,
    Operation,
    Target,
    UnsupportedOperation,
    UnsupportedParameter,
    UpstreamFailure,
    UpstreamRequest,
)
from providers.adapters.headers import with_credential
from providers.redaction import NO_SECRETS, Redactor
from providers.values import ProviderInfo

__all__ = ["API_VERSION", "DEFAULT_MAX_TOKENS", "AnthropicAdapter", "AnthropicStream", "UnsupportedParameter"]

# The `anthropic-version` sent unless the provider row names another in `api_version`.
API_VERSION = "2023-06-01"
# Anthropic pages its model list, 20 by default; one page of the maximum holds every model it serves.
_MODELS_PAGE = 1000


def headers_for(provider: ProviderInfo, *, content_type: str | None = "application/json") -> dict[str, str]:
    headers = {"accept-encoding": "identity", "anthropic-version": provider.api_version or API_VERSION}
    if content_type:
        headers["content-type"] = content_type
    # The extra headers carry `anthropic-beta` flags, for one.
    return with_credential(headers, provider, default_header="x-api-key")


class AnthropicAdapter(BaseAdapter):
    kind = "anthropic"
    label = "Anthropic (Messages API)"
    operations: frozenset[Operation] = frozenset({"chat"})

    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        # OpenAI's `created` is the time of the answer; Anthropic's messages carry none.
        self.clock = clock

    def request(self, operation: Operation, target: Target, body: dict[str, Any]) -> UpstreamRequest:
        """The Messages request; raises `UnsupportedParameter` for what Anthropic cannot do as asked."""
        self._chat_only(operation)
        content = orjson.dumps(messages_body(target, body))
        return UpstreamRequest("POST", f"{target.provider.base_url}/messages", headers_for(target.provider), content)

    def response(self, operation: Operation, target: Target, payload: bytes) -> bytes:
        self._chat_only(operation)
        return chat_completion(target, payload, created=int(self.clock()))

    def upstream_id(self, payload: bytes) -> str:
        """Anthropic's id for a whole answer: the client sees an OpenAI-style one instead."""
        return answer_id(payload)

    def stream_translator(
        self, operation: Operation, target: Target, *, include_usage: bool, redactor: Redactor = NO_SECRETS
    ) -> AnthropicStream:
        self._chat_only(operation)
        created = int(self.clock())
        return AnthropicStream(target.public_model, created=created, include_usage=include_usage, redactor=redactor)

    def models_request(self, provider: ProviderInfo) -> UpstreamRequest:
        url = f"{provider.base_url}/models?limit={_MODELS_PAGE}"
        return UpstreamRequest("GET", url, headers_for(provider, content_type=None))

    def model_ids(self, payload: bytes) -> list[str]:
        try:
            return [str(item["id"]) for item in orjson.loads(payload)["data"]]
        except (orjson.JSONDecodeError, KeyError, TypeError) as exc:
            raise ValueError("not an Anthropic model list") from exc

    def failure(
        self, status: int, payload: bytes, headers: Mapping[str, str], *, redactor: Redactor = NO_SECRETS
    ) -> UpstreamFailure:
        return anthropic_failure(status, payload, headers, redactor=redactor)

    def _chat_only(self, operation: Operation) -> None:
        if operation != "chat":
            raise UnsupportedOperation(f"Anthropic does not serve '{operation}'; the gateway bridges it onto chat")
