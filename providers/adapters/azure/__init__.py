"""Azure OpenAI: OpenAI's wire format behind per-deployment URLs and an `api-key` header.

The provider's `base_url` is the resource endpoint (`https://<resource>.openai.azure.com`)
and a route's `upstream_model` is the *deployment* name, which Azure takes from the
URL; the body's `model` is ignored there but still set, so logs on both sides agree.
Every data-plane call carries an `api-version` query parameter: the provider's, or
`DEFAULT_API_VERSION`.

Azure has no moderations endpoint. Its answers are OpenAI's plus its content filter's
verdicts: `prompt_filter_results` on the body (or on an opening chunk with no choices)
and `content_filter_results` on each choice. OpenAI never sends them, so Portico drops
the opening chunk and removes both fields, and a tenant sees OpenAI's shapes; the rest
is shaped as for any OpenAI-compatible server (`providers.adapters.shapes`).
"""

from __future__ import annotations

from collections.abc import AsyncIterable, Iterable
from typing import Any
from urllib.parse import quote

import orjson

from providers.adapters.base import CHAT_STREAMED, OPENAI_PATHS, Operation, Target, UpstreamRequest
from providers.adapters.headers import with_credential
from providers.adapters.kind_options import NO_OPTIONS
from providers.adapters.openai import OpenAIAdapter, PassThrough, adjust_body, chunk_shaper
from providers.redaction import NO_SECRETS, Redactor
from providers.values import ProviderInfo

# The latest generally available data-plane version, used when a provider names none.
DEFAULT_API_VERSION = "2024-10-21"

AZURE_OPERATIONS: frozenset[Operation] = frozenset(OPENAI_PATHS) - {"moderations"}


def api_version(provider: ProviderInfo) -> str:
    return quote(provider.api_version or DEFAULT_API_VERSION, safe="")


def azure_headers(provider: ProviderInfo, *, content_type: str | None = "application/json") -> dict[str, str]:
    headers = {"accept-encoding": "identity"}
    if content_type:
        headers["content-type"] = content_type
    # Without a key the provider row may carry an Entra ID `Authorization` header among its extra headers.
    return with_credential(headers, provider, default_header="api-key")


_FILTER_MARK = b'_filter_results"'


def without_filter_results(payload: bytes) -> bytes | None:
    """The body or chunk without Azure's filter verdicts; None for a chunk that carried nothing else."""
    if _FILTER_MARK not in payload:
        return payload
    try:
        body = orjson.loads(payload)
    except orjson.JSONDecodeError:
        return payload
    if not isinstance(body, dict):
        return payload
    if body.pop("prompt_filter_results", None) is not None and not body.get("choices") and not body.get("usage"):
        return None
    choices = body.get("choices")
    for choice in choices if isinstance(choices, list) else ():
        if isinstance(choice, dict):
            choice.pop("content_filter_results", None)
    return orjson.dumps(body)


class AzureStream(PassThrough):
    """OpenAI's pass-through, minus Azure's content-filter verdicts."""

    __slots__ = ()

    def feed(self, event: bytes) -> Iterable[bytes]:
        cleaned = without_filter_results(event)
        if cleaned is None:
            return ()
        return super().feed(cleaned)


class AzureOpenAIAdapter(OpenAIAdapter):
    kind = "azure"
    label = "Azure OpenAI"
    option_fields = NO_OPTIONS  # Azure has no /v1/responses pass-through of its own here
    operations: frozenset[Operation] = AZURE_OPERATIONS
    # Azure's images and transcriptions streams are not relayed (the typed events are OpenAI's translator's).
    streamed: frozenset[Operation] = CHAT_STREAMED

    def url(self, operation: Operation, target: Target) -> str:
        if operation not in self.operations:
            raise ValueError(f"Azure OpenAI does not offer {operation}")
        provider = target.provider
        path = OPENAI_PATHS[operation].lstrip("/")
        deployment = quote(target.upstream_model, safe="")
        return f"{provider.base_url}/openai/deployments/{deployment}/{path}?api-version={api_version(provider)}"

    def request(self, operation: Operation, target: Target, body: dict[str, Any]) -> UpstreamRequest:
        body["model"] = target.upstream_model
        body = adjust_body(operation, target.provider, body)
        url = self.url(operation, target)
        return UpstreamRequest("POST", url, azure_headers(target.provider), orjson.dumps(body))

    def upload_request(
        self, operation: Operation, target: Target, content: AsyncIterable[bytes], content_type: str
    ) -> UpstreamRequest:
        headers = azure_headers(target.provider, content_type=content_type)
        return UpstreamRequest("POST", self.url(operation, target), headers, content)

    def answer(self, operation: Operation, target: Target, payload: bytes) -> tuple[bytes, dict[str, Any] | None]:
        return super().answer(operation, target, without_filter_results(payload) or payload)

    def stream_translator(
        self, operation: Operation, target: Target, *, include_usage: bool, redactor: Redactor = NO_SECRETS
    ) -> AzureStream:
        shaper = chunk_shaper(operation, target)
        return AzureStream(target.public_model, include_usage=include_usage, redactor=redactor, shaper=shaper)

    def models_request(self, provider: ProviderInfo) -> UpstreamRequest:
        url = f"{provider.base_url}/openai/models?api-version={api_version(provider)}"
        return UpstreamRequest("GET", url, azure_headers(provider, content_type=None))
