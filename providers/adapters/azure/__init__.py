"""Azure OpenAI: OpenAI's wire format behind per-deployment URLs and an `api-key` header.

The provider's `base_url` is the resource endpoint (`https://<resource>.openai.azure.com`)
and a route's `upstream_model` is the *deployment* name, which Azure takes from the
URL; the body's `model` is ignored there but still set, so logs on both sides agree.
Every data-plane call carries an `api-version` query parameter: the provider's, or
`DEFAULT_API_VERSION`.

Azure has no moderations endpoint. Its streams are OpenAI's, except that they may open
with a chunk carrying only `prompt_filter_results` (its content filter's verdict on the
prompt) and no choices; OpenAI never sends one, so Portico drops it.
"""

from __future__ import annotations

from collections.abc import AsyncIterable, Iterable
from typing import Any, Literal
from urllib.parse import quote

import orjson

from providers.adapters.base import OPENAI_PATHS, Operation, Target, UpstreamRequest
from providers.adapters.openai import OpenAIAdapter, PassThrough, adjust_body

# The latest generally available data-plane version, used when a provider names none.
DEFAULT_API_VERSION = "2024-10-21"

AZURE_OPERATIONS: frozenset[Operation] = frozenset(OPENAI_PATHS) - {"moderations"}


def api_version(provider: Any) -> str:
    return quote(provider.api_version or DEFAULT_API_VERSION, safe="")


def azure_headers(provider: Any, *, content_type: str | None = "application/json") -> dict[str, str]:
    headers = {"accept-encoding": "identity"}
    if content_type:
        headers["content-type"] = content_type
    headers.update(provider.extra_headers)
    # Without a key the provider row may carry an Entra ID `Authorization` header among its extra headers.
    if provider.credential:
        headers["api-key"] = provider.credential
    return headers


class AzureStream(PassThrough):
    """OpenAI's pass-through, minus the prompt-filter chunks OpenAI clients have never seen."""

    __slots__ = ()

    def feed(self, event: bytes) -> Iterable[bytes]:
        if b'"prompt_filter_results"' in event and _is_prompt_filter_only(event):
            return ()
        return super().feed(event)


def _is_prompt_filter_only(event: bytes) -> bool:
    try:
        chunk = orjson.loads(event)
    except orjson.JSONDecodeError:
        return False
    return isinstance(chunk, dict) and not chunk.get("choices") and not chunk.get("usage")


class AzureOpenAIAdapter(OpenAIAdapter):
    kind = "azure"
    label = "Azure OpenAI"
    stream_format: Literal["sse", "ndjson"] = "sse"
    operations: frozenset[Operation] = AZURE_OPERATIONS

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

    def stream_translator(
        self, operation: Operation, target: Target, *, include_usage: bool, secret: str = ""
    ) -> AzureStream:
        return AzureStream(target.public_model, include_usage=include_usage, secret=secret)

    def models_request(self, provider: Any) -> UpstreamRequest:
        url = f"{provider.base_url}/openai/models?api-version={api_version(provider)}"
        return UpstreamRequest("GET", url, azure_headers(provider, content_type=None))
