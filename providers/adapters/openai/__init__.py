"""OpenAI and every OpenAI-compatible server: pure pass-through but for the model name."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import httpx
import orjson

from providers.adapters.base import UpstreamFailure, UpstreamRequest
from providers.adapters.wire import model_rewriter, openai_failure, rewrite_model


def _headers(provider: Any) -> dict[str, str]:
    headers = {"content-type": "application/json", "accept-encoding": "identity"}
    headers.update(provider.extra_headers)
    if provider.credential:
        headers["authorization"] = f"Bearer {provider.credential}"
    return headers


class _ModelRewriter:
    def __init__(self, public_model: str, secret: str) -> None:
        self.rewrite = model_rewriter(public_model)
        self.secret = secret.encode()

    def feed(self, event: bytes) -> Iterable[bytes]:
        if self.secret and self.secret in event:
            # An error event mid-stream may quote the credential, as error answers can.
            event = event.replace(self.secret, b"[redacted]")
        return (self.rewrite(event),)


class OpenAIAdapter:
    kind = "openai"
    label = "OpenAI or OpenAI-compatible"

    def chat_request(self, provider: Any, upstream_model: str, body: dict[str, Any]) -> UpstreamRequest:
        body["model"] = upstream_model
        return UpstreamRequest("POST", f"{provider.base_url}/chat/completions", _headers(provider), orjson.dumps(body))

    def models_request(self, provider: Any) -> UpstreamRequest:
        return UpstreamRequest("GET", f"{provider.base_url}/models", _headers(provider))

    def chat_response(self, payload: bytes, public_model: str, upstream_model: str) -> bytes:
        return rewrite_model(payload, public_model)

    def stream_translator(self, public_model: str, upstream_model: str, *, secret: str = "") -> _ModelRewriter:
        return _ModelRewriter(public_model, secret)

    def failure(self, status: int, payload: bytes, headers: Mapping[str, str], *, secret: str = "") -> UpstreamFailure:
        return openai_failure(status, payload, headers, secret=secret)

    def transport(self) -> httpx.AsyncBaseTransport | None:
        return None
