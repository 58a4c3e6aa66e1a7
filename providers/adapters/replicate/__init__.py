"""Replicate's predictions API, for chat-style language models, spoken as OpenAI's chat.

The provider's `base_url` is the API root (`https://api.replicate.com`, the default); the
credential goes out as a bearer token. A deployment's upstream model is `owner/name` (an
official model: `POST /v1/models/{owner}/{name}/predictions`) or `owner/name:version` (a
version of a community model: `POST /v1/predictions` with that `version`).

The conversation becomes the model's `input` in `inputs`, the finished prediction a chat
completion in `answers`, its event stream chunks in `stream`, its errors OpenAI's in `errors`.
A whole answer is asked for in sync mode (`Prefer: wait`, bounded by `sync_wait` and the
provider's read timeout); what the relay's single request cannot do (polling a prediction
still running, following it to its stream URL) is done by `transport.PredictionTransport`.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import httpx
import orjson
from django.conf import settings

from providers.adapters.base import (
    BaseAdapter,
    Operation,
    Target,
    UnsupportedOperation,
    UpstreamFailure,
    UpstreamRequest,
)
from providers.adapters.kind_options import with_defaults
from providers.adapters.openai import headers_for
from providers.adapters.replicate.answers import asked_cap, chat_completion, prediction, prediction_id
from providers.adapters.replicate.errors import replicate_failure
from providers.adapters.replicate.inputs import prediction_input
from providers.adapters.replicate.options import MAX_SYNC_WAIT, OPTIONS, check_options
from providers.adapters.replicate.stream import NamedEventSplitter, ReplicateStream
from providers.adapters.replicate.transport import NetworkPool, PredictionTransport
from providers.redaction import NO_SECRETS, Redactor
from providers.values import ProviderInfo

__all__ = ["DEFAULT_BASE_URL", "ReplicateAdapter"]

DEFAULT_BASE_URL = "https://api.replicate.com"


def api_root(provider: ProviderInfo) -> str:
    """The API root, whether the row names it with its `/v1` or without."""
    return (provider.base_url or DEFAULT_BASE_URL).rstrip("/").removesuffix("/v1")


def sync_wait(provider: ProviderInfo, options: Mapping[str, Any]) -> int:
    """Seconds Replicate may hold the request: the option, kept a second inside the read timeout."""
    within_read = max(1, math.floor(provider.read_timeout) - 1)
    return max(1, min(int(options["sync_wait"]), within_read, MAX_SYNC_WAIT))


class ReplicateAdapter(BaseAdapter):
    kind = "replicate"
    label = "Replicate (predictions API, language models)"
    default_base_url = DEFAULT_BASE_URL
    option_fields = OPTIONS
    operations: frozenset[Operation] = frozenset({"chat"})

    def clean_options(self, options: Any) -> dict[str, Any]:
        cleaned = super().clean_options(options)
        check_options(cleaned)
        return cleaned

    def request(self, operation: Operation, target: Target, body: dict[str, Any]) -> UpstreamRequest:
        """The prediction's creation; raises `UnsupportedParameter` for what these models cannot do."""
        self._chat_only(operation)
        provider = target.provider
        options = with_defaults(OPTIONS, provider.options)
        if target.max_output_tokens and not (body.get("max_completion_tokens") or body.get("max_tokens")):
            body["max_tokens"] = target.max_output_tokens  # the route's cap, which the call was admitted under
        created: dict[str, Any] = {"input": prediction_input(body, options)}
        model, _, version = target.upstream_model.partition(":")
        if version:
            created["version"] = version
            url = f"{api_root(provider)}/v1/predictions"
        else:
            url = f"{api_root(provider)}/v1/models/{model}/predictions"
        headers = headers_for(provider)
        if body.get("stream"):
            created["stream"] = True  # read from the prediction's stream URL by the transport
        else:
            headers["prefer"] = f"wait={sync_wait(provider, options)}"
        return UpstreamRequest("POST", url, headers, orjson.dumps(created))

    def response(self, operation: Operation, target: Target, payload: bytes) -> bytes:
        self._chat_only(operation)
        options = with_defaults(OPTIONS, target.provider.options)
        # The cap asked for, to tell an answer cut short from a finished one.
        cap = asked_cap(prediction(payload), options["max_tokens_input"])
        return orjson.dumps(chat_completion(payload, target.public_model, cap=cap))

    def upstream_id(self, payload: bytes) -> str:
        """The prediction's id: the client sees an OpenAI-style one, the ledger keeps Replicate's."""
        return prediction_id(payload)

    def stream_translator(
        self, operation: Operation, target: Target, *, include_usage: bool, redactor: Redactor = NO_SECRETS
    ) -> ReplicateStream:
        self._chat_only(operation)
        return ReplicateStream(target.public_model, include_usage=include_usage, redactor=redactor)

    def splitter(self) -> NamedEventSplitter:
        return NamedEventSplitter()  # Replicate's events are told apart by name, which the SSE splitter drops

    def models_request(self, provider: ProviderInfo) -> UpstreamRequest:
        return UpstreamRequest("GET", f"{api_root(provider)}/v1/models", headers_for(provider, content_type=None))

    def model_ids(self, payload: bytes) -> list[str]:
        """The `owner/name` of each model on the list's first page (Replicate pages its public models)."""
        try:
            return [f"{item['owner']}/{item['name']}" for item in orjson.loads(payload)["results"]]
        except (orjson.JSONDecodeError, KeyError, TypeError) as exc:
            raise ValueError("not a Replicate model list") from exc

    def failure(
        self, status: int, payload: bytes, headers: Mapping[str, str], *, redactor: Redactor = NO_SECRETS
    ) -> UpstreamFailure:
        return replicate_failure(status, payload, headers, redactor=redactor)

    def transport(self) -> httpx.AsyncBaseTransport:
        # The pool opens with the first request: asking for a transport costs nothing (see NetworkPool).
        return PredictionTransport(NetworkPool(settings.PORTICO_UPSTREAM_MAX_CONNECTIONS))

    def _chat_only(self, operation: Operation) -> None:
        if operation != "chat":
            raise UnsupportedOperation(f"Replicate does not serve '{operation}' here; the gateway bridges it onto chat")
