"""Cohere's API v2 (`/v2/chat`, `/v2/embed`, `/v1/models`), spoken to in OpenAI's terms: pure translation.

The provider's `base_url` is the API root (`https://api.cohere.com`, no version). The credential
goes out as a bearer token. Requests are translated in `requests`, whole answers in `answers`,
streams (SSE, typed events) in `stream`, errors in `errors`. Chat and embeddings are native; the
gateway bridges legacy completions onto chat. Embeddings come back as floats: a client's
`encoding_format: "base64"` is honoured by the gateway (`providers.adapters.embeddings`).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from typing import Any

import orjson

from providers.adapters.base import (
    BaseAdapter,
    Operation,
    Target,
    UnsupportedOperation,
    UnsupportedParameter,
    UpstreamFailure,
    UpstreamRequest,
)
from providers.adapters.cohere.answers import answer_id, chat_completion, embedding_list, model_names
from providers.adapters.cohere.errors import cohere_failure
from providers.adapters.cohere.options import OPTIONS, clean_cohere_options
from providers.adapters.cohere.requests import chat_body, embed_body
from providers.adapters.cohere.stream import CohereStream
from providers.adapters.kind_options import OptionField
from providers.adapters.openai import headers_for
from providers.redaction import NO_SECRETS, Redactor
from providers.values import ProviderInfo

__all__ = ["CohereAdapter", "CohereStream", "UnsupportedParameter"]

_PATHS: dict[Operation, str] = {"chat": "/v2/chat", "embeddings": "/v2/embed"}
# Cohere pages its model list, 20 by default; one page of the maximum holds every model it serves.
_MODELS_PAGE = 1000


class CohereAdapter(BaseAdapter):
    kind = "cohere"
    label = "Cohere (API v2)"
    operations: frozenset[Operation] = frozenset(_PATHS)
    option_fields: Mapping[str, OptionField] = OPTIONS

    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        # OpenAI's `created` is the time of the answer; Cohere's answers carry none.
        self.clock = clock

    def clean_options(self, options: Any) -> dict[str, Any]:
        return clean_cohere_options(options, label=self.label)

    def request(self, operation: Operation, target: Target, body: dict[str, Any]) -> UpstreamRequest:
        """The upstream request; raises `UnsupportedParameter` for what Cohere cannot do as asked."""
        if operation == "chat":
            upstream_body = chat_body(body, target.upstream_model)
        elif operation == "embeddings":
            input_type = str(target.provider.options.get("embed_input_type") or OPTIONS["embed_input_type"].default)
            upstream_body = embed_body(body, target.upstream_model, input_type=input_type)
        else:
            raise UnsupportedOperation(f"Cohere does not offer {operation}")
        url = f"{target.provider.base_url}{_PATHS[operation]}"
        return UpstreamRequest("POST", url, headers_for(target.provider), orjson.dumps(upstream_body))

    def response(self, operation: Operation, target: Target, payload: bytes) -> bytes:
        if operation == "chat":
            return orjson.dumps(chat_completion(payload, target.public_model, created=int(self.clock())))
        if operation == "embeddings":
            return orjson.dumps(embedding_list(payload, target.public_model))
        raise UnsupportedOperation(f"Cohere does not offer {operation}")

    def upstream_id(self, payload: bytes) -> str:
        """Cohere's id for a whole answer, kept for the ledger: the client sees an OpenAI-style one instead."""
        return answer_id(payload)

    def stream_translator(
        self, operation: Operation, target: Target, *, include_usage: bool, redactor: Redactor = NO_SECRETS
    ) -> CohereStream:
        if operation != "chat":
            raise UnsupportedOperation(f"Cohere streams chat only, not {operation}")
        created = int(self.clock())
        return CohereStream(target.public_model, created=created, include_usage=include_usage, redactor=redactor)

    def models_request(self, provider: ProviderInfo) -> UpstreamRequest:
        url = f"{provider.base_url}/v1/models?endpoint=chat&page_size={_MODELS_PAGE}"
        return UpstreamRequest("GET", url, headers_for(provider, content_type=None))

    def model_ids(self, payload: bytes) -> list[str]:
        return model_names(payload)

    def failure(
        self, status: int, payload: bytes, headers: Mapping[str, str], *, redactor: Redactor = NO_SECRETS
    ) -> UpstreamFailure:
        return cohere_failure(status, payload, headers, redactor=redactor)
