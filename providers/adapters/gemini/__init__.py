"""Google's Gemini API (the Generative Language API, v1beta), spoken to in OpenAI's terms.

The provider's `base_url` is the API's root, `https://generativelanguage.googleapis.com` unless the
row names another; Portico adds `/v1beta/models/{model}:{method}` (the row's `api_version` may name
another version, `v1` say). The credential is an API key,
sent in `x-goog-api-key`. Chat goes to `generateContent`, or `streamGenerateContent?alt=sse` when
streamed; embeddings to `embedContent` or `batchEmbedContents`.

Requests are translated in `requests`, whole answers in `responses`, streams in `stream`, errors in
`errors`, embeddings in `embeddings`. Legacy completions are bridged onto chat by the gateway.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from typing import Any
from urllib.parse import quote

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
from providers.adapters.gemini.embeddings import embed_body, embedding_list
from providers.adapters.gemini.errors import gemini_failure
from providers.adapters.gemini.requests import generate_body
from providers.adapters.gemini.responses import chat_completion, response_id
from providers.adapters.gemini.stream import GeminiStream
from providers.adapters.headers import with_credential
from providers.redaction import NO_SECRETS, Redactor
from providers.values import ProviderInfo

__all__ = ["DEFAULT_BASE_URL", "GeminiAdapter", "GeminiStream", "UnsupportedParameter"]

DEFAULT_BASE_URL = "https://generativelanguage.googleapis.com"
# The API version in every path unless the provider row names another in `api_version`.
API_VERSION = "v1beta"
# Gemini pages its model list (50 by default); one page of the maximum holds every model it serves.
_MODELS_PAGE = 1000


def headers_for(provider: ProviderInfo, *, content_type: str | None = "application/json") -> dict[str, str]:
    headers = {"accept-encoding": "identity"}
    if content_type:
        headers["content-type"] = content_type
    return with_credential(headers, provider, default_header="x-goog-api-key")


def model_url(target: Target, method: str) -> str:
    """`{base}/v1beta/models/{model}:{method}`; a route may name its model `models/…`, as Gemini lists it."""
    model = quote(target.upstream_model.removeprefix("models/"), safe="-._~")
    return f"{models_url(target.provider)}/{model}:{method}"


def models_url(provider: ProviderInfo) -> str:
    return f"{provider.base_url}/{provider.api_version or API_VERSION}/models"


class GeminiAdapter(BaseAdapter):
    kind = "gemini"
    label = "Google Gemini (Gemini API)"
    default_base_url = DEFAULT_BASE_URL
    operations: frozenset[Operation] = frozenset({"chat", "embeddings"})

    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        # OpenAI's `created` is the time of the answer; Gemini's answers carry none.
        self.clock = clock

    def request(self, operation: Operation, target: Target, body: dict[str, Any]) -> UpstreamRequest:
        """The Gemini request; raises `UnsupportedParameter` for what Gemini cannot do as asked."""
        if operation == "chat":
            method = "streamGenerateContent?alt=sse" if body.get("stream") else "generateContent"
            content = orjson.dumps(generate_body(body))
        elif operation == "embeddings":
            method, embed = embed_body(body, target.upstream_model.removeprefix("models/"))
            content = orjson.dumps(embed)
        else:
            raise UnsupportedOperation(f"Gemini does not offer {operation}")
        return UpstreamRequest("POST", model_url(target, method), headers_for(target.provider), content)

    def response(self, operation: Operation, target: Target, payload: bytes) -> bytes:
        if operation == "chat":
            return orjson.dumps(chat_completion(payload, target.public_model, created=int(self.clock())))
        if operation == "embeddings":
            return orjson.dumps(embedding_list(payload, target.public_model))
        raise UnsupportedOperation(f"Gemini does not offer {operation}")

    def upstream_id(self, payload: bytes) -> str:
        """Gemini's id for a whole answer: the client sees an OpenAI-style one instead."""
        try:
            return response_id(orjson.loads(payload))
        except orjson.JSONDecodeError:
            return ""

    def stream_translator(
        self, operation: Operation, target: Target, *, include_usage: bool, redactor: Redactor = NO_SECRETS
    ) -> GeminiStream:
        if operation != "chat":
            raise UnsupportedOperation(f"Gemini streams chat only, not {operation}")
        created = int(self.clock())
        return GeminiStream(target.public_model, created=created, include_usage=include_usage, redactor=redactor)

    def models_request(self, provider: ProviderInfo) -> UpstreamRequest:
        url = f"{models_url(provider)}?pageSize={_MODELS_PAGE}"
        return UpstreamRequest("GET", url, headers_for(provider, content_type=None))

    def model_ids(self, payload: bytes) -> list[str]:
        """The models Gemini lists (`models/gemini-2.5-flash`), by the name a route gives them."""
        try:
            return [str(item["name"]).removeprefix("models/") for item in orjson.loads(payload)["models"]]
        except (orjson.JSONDecodeError, KeyError, TypeError) as exc:
            raise ValueError("not a Gemini model list") from exc

    def failure(
        self, status: int, payload: bytes, headers: Mapping[str, str], *, redactor: Redactor = NO_SECRETS
    ) -> UpstreamFailure:
        return gemini_failure(status, payload, headers, redactor=redactor)
