"""Ollama's native API (`/api/chat`, `/api/embed`, `/api/tags`), spoken as OpenAI's.

The provider's `base_url` is the server root (`http://localhost:11434`, no `/v1`).
A credential, if any, goes out as a bearer token, for servers behind an
authenticating proxy. Streams are NDJSON, one JSON object per line.

Embeddings come back as floats only: a client's `encoding_format: "base64"` is
honoured by the gateway with `providers.adapters.embeddings.encode_embeddings`.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
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
from providers.adapters.framing import LineSplitter
from providers.adapters.ollama.answers import chat_completion, embedding_list, model_names
from providers.adapters.ollama.bodies import chat_body, embed_body
from providers.adapters.ollama.stream import OllamaChatStream
from providers.adapters.openai import headers_for
from providers.adapters.wire import openai_failure
from providers.redaction import NO_SECRETS, Redactor
from providers.values import ProviderInfo

__all__ = ["OllamaAdapter", "OllamaChatStream", "UnsupportedParameter"]

_PATHS: dict[Operation, str] = {"chat": "/api/chat", "embeddings": "/api/embed"}


class OllamaAdapter(BaseAdapter):
    kind = "ollama"
    label = "Ollama"
    operations: frozenset[Operation] = frozenset(_PATHS)

    def request(self, operation: Operation, target: Target, body: dict[str, Any]) -> UpstreamRequest:
        if operation == "chat":
            upstream_body = chat_body(body, target.upstream_model)
        elif operation == "embeddings":
            upstream_body = embed_body(body, target.upstream_model)
        else:
            raise UnsupportedOperation(f"Ollama does not offer {operation}")
        url = f"{target.provider.base_url}{_PATHS[operation]}"
        return UpstreamRequest("POST", url, headers_for(target.provider), orjson.dumps(upstream_body))

    def response(self, operation: Operation, target: Target, payload: bytes) -> bytes:
        if operation == "chat":
            return orjson.dumps(chat_completion(payload, target.public_model))
        if operation == "embeddings":
            return orjson.dumps(embedding_list(payload, target.public_model))
        raise UnsupportedOperation(f"Ollama does not offer {operation}")

    def stream_translator(
        self, operation: Operation, target: Target, *, include_usage: bool, redactor: Redactor = NO_SECRETS
    ) -> OllamaChatStream:
        if operation != "chat":
            raise UnsupportedOperation(f"Ollama streams chat only, not {operation}")
        return OllamaChatStream(target.public_model, include_usage=include_usage, redactor=redactor)

    def splitter(self) -> LineSplitter:
        return LineSplitter()  # Ollama streams newline-delimited JSON, not SSE

    def models_request(self, provider: ProviderInfo) -> UpstreamRequest:
        return UpstreamRequest("GET", f"{provider.base_url}/api/tags", headers_for(provider, content_type=None))

    def model_ids(self, payload: bytes) -> list[str]:
        return model_names(payload)

    def failure(
        self, status: int, payload: bytes, headers: Mapping[str, str], *, redactor: Redactor = NO_SECRETS
    ) -> UpstreamFailure:
        # Ollama's errors are `{"error": "message"}`, which the OpenAI mapping already reads.
        failure = openai_failure(status, payload, headers, redactor=redactor)
        if status == 404 and failure.code is None:
            # Ollama's 404 is a model the server has not pulled.
            return dataclasses.replace(failure, code="model_not_found")
        if failure.status > 500:
            # Ollama is one server, not a fleet: any failure of it is a bad gateway.
            return dataclasses.replace(failure, status=502)
        return failure
