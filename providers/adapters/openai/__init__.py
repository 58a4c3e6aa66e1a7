"""OpenAI and every OpenAI-compatible server: passed through, the model renamed and chat brought to OpenAI's shapes.

What a particular server does not accept is declared on its provider row
(`accepts_stream_options`, `accepts_max_completion_tokens`, `serves_completions`)
and handled here, in one place; so is whether its chat answers are already OpenAI's
exact shapes (`exact_shapes`), which spares them `providers.adapters.shapes`.
"""

from __future__ import annotations

from collections.abc import AsyncIterable, Iterable
from typing import Any

import orjson

from providers.adapters.answers import whole_answer
from providers.adapters.base import CHAT_STREAMED, OPENAI_PATHS, BaseAdapter, Operation, Target, UpstreamRequest
from providers.adapters.headers import with_credential
from providers.adapters.openai.events import EVENT_STREAMED, TypedEvents
from providers.adapters.openai.options import OPTIONS
from providers.adapters.shapes import ChunkShaper, completion_is_exact, shape_completion
from providers.adapters.wire import (
    model_rewriter,
    openai_model_ids,
    rewrite_model,
    usage_is_plausible,
    wrote_output,
)
from providers.redaction import NO_SECRETS, Redactor
from providers.values import ProviderInfo


def headers_for(provider: ProviderInfo, *, content_type: str | None = "application/json") -> dict[str, str]:
    headers = {"accept-encoding": "identity"}
    if content_type:
        headers["content-type"] = content_type
    return with_credential(headers, provider, default_header="authorization")


def adjust_body(operation: Operation, provider: ProviderInfo, body: dict[str, Any]) -> dict[str, Any]:
    """Ask for stream usage (the ledger needs it) and drop what this server is declared not to accept."""
    if body.get("stream") and operation in CHAT_STREAMED:
        if provider.accepts_stream_options:
            body["stream_options"] = {**(body.get("stream_options") or {}), "include_usage": True}
        else:
            body.pop("stream_options", None)
    if not provider.accepts_max_completion_tokens and "max_completion_tokens" in body:
        cap = body.pop("max_completion_tokens")
        body.setdefault("max_tokens", cap)
    return body


def exact_completion(payload: bytes, public_model: str) -> tuple[bytes, dict[str, Any] | None]:
    """A whole chat completion in OpenAI's exact shape, and its parse when that is still what the bytes say
    (None when renaming the model changed them); raises ValueError for a body that is not one."""
    body = whole_answer("chat", payload)
    if "error" in body or completion_is_exact(body):
        content = rewrite_model(payload, public_model)
        return content, body if content is payload else None
    shaped = shape_completion(body, public_model)
    return orjson.dumps(shaped), shaped


def chunk_shaper(operation: Operation, target: Target) -> ChunkShaper | None:
    """The stream's shaper: chat only (legacy completions have shapes of their own), unless the server is exact."""
    if operation != "chat" or target.provider.exact_shapes:
        return None
    return ChunkShaper(target.public_model)


def error_event(event: bytes, redactor: Redactor) -> bytes:
    """An upstream's error event with every string redacted, escaped ones included (errors are rare)."""
    if not redactor:
        return event
    try:
        return orjson.dumps(redactor.deep(orjson.loads(event)))
    except orjson.JSONDecodeError:
        return event


class PassThrough:
    """An OpenAI stream relayed as is: the model renamed, usage noted (and dropped unless asked for).

    With a `shaper`, chat chunks that are not already OpenAI's exact shape are brought to it. A usage
    report that cannot be right (see `usage_is_plausible`) is kept from the client and the call: the
    gateway then counts the tokens itself and sends its own usage chunk if the client asked for one.
    """

    __slots__ = ("done", "failed", "include_usage", "redactor", "rewrite", "shaper", "usage", "wrote")

    def __init__(
        self,
        public_model: str,
        *,
        include_usage: bool,
        redactor: Redactor = NO_SECRETS,
        shaper: ChunkShaper | None = None,
    ) -> None:
        self.rewrite = model_rewriter(public_model)
        self.redactor = redactor
        self.include_usage = include_usage
        self.shaper = shaper
        self.done = False
        self.failed = False
        self.wrote = False  # some answer text or tool call went by
        self.usage: dict[str, Any] | None = None

    def feed(self, event: bytes) -> Iterable[bytes]:
        if event == b"[DONE]":
            self.done = True
            return ()
        # An event may quote a secret, error events above all, as error answers can.
        event = self.redactor.bytes(event)
        if event.startswith(b'{"error"'):
            self.failed = True
            return (error_event(event, self.redactor),)
        if (head := event.lstrip()[:1]) != b"{":
            if not head:
                return ()  # an empty event says nothing, and a client would choke on it
            # A JSON array, number, string or null is no chunk; the relay ends the stream on ValueError.
            raise ValueError("not an OpenAI stream event")
        if not self.wrote:
            self.wrote = wrote_output(event)
        if b'"usage":{' in event or b'"usage": {' in event:
            return self._usage_chunk(orjson.loads(event))
        if not self.include_usage and b',"usage":null' in event:
            # Asked for usage, an upstream marks every chunk "usage": null; a client that did not ask never sees it.
            event = event.replace(b',"usage":null', b"", 1)
        if self.shaper is not None:
            event = self.shaper.shape(event)
        return (self.rewrite(event),)

    def _usage_chunk(self, chunk: Any) -> Iterable[bytes]:
        if not isinstance(chunk, dict) or not isinstance(chunk.get("choices") or [], list):
            raise ValueError("not an OpenAI stream event")
        usage = chunk.get("usage") or None
        self.usage = usage if usage_is_plausible(usage, wrote_output=self.wrote) else None
        relayed = self.usage is not None and self.include_usage
        if not chunk.get("choices"):
            if not relayed:
                return ()  # the usage chunk Portico asked for on its own behalf, or one it counts itself
        elif not relayed:
            # Some servers put usage on the last choice chunk: its choices go on, the usage as the client asked.
            chunk["usage"] = None
            if not self.include_usage:
                del chunk["usage"]
        if self.shaper is not None:
            chunk = self.shaper.shape_chunk(chunk)
        return (self.rewrite(orjson.dumps(chunk)),)


class OpenAIAdapter(BaseAdapter):
    kind = "openai"
    label = "OpenAI or OpenAI-compatible"
    option_fields = OPTIONS
    operations: frozenset[Operation] = frozenset(OPENAI_PATHS)

    # OpenAI streams images and transcriptions as typed events too (providers.adapters.openai.events).
    streamed: frozenset[Operation] = CHAT_STREAMED | EVENT_STREAMED

    def url(self, operation: Operation, target: Target) -> str:
        return f"{target.provider.base_url}{OPENAI_PATHS[operation]}"

    def request(self, operation: Operation, target: Target, body: dict[str, Any]) -> UpstreamRequest:
        body["model"] = target.upstream_model
        body = adjust_body(operation, target.provider, body)
        return UpstreamRequest("POST", self.url(operation, target), headers_for(target.provider), orjson.dumps(body))

    def upload_request(
        self, operation: Operation, target: Target, content: AsyncIterable[bytes], content_type: str
    ) -> UpstreamRequest:
        headers = headers_for(target.provider, content_type=content_type)
        return UpstreamRequest("POST", self.url(operation, target), headers, content)

    def response(self, operation: Operation, target: Target, payload: bytes) -> bytes:
        return self.answer(operation, target, payload)[0]

    def answer(self, operation: Operation, target: Target, payload: bytes) -> tuple[bytes, dict[str, Any] | None]:
        if operation == "chat" and not target.provider.exact_shapes:
            return exact_completion(payload, target.public_model)
        return rewrite_model(payload, target.public_model), None  # the relay checks its shape (adapters.answers)

    def stream_translator(
        self, operation: Operation, target: Target, *, include_usage: bool, redactor: Redactor = NO_SECRETS
    ) -> PassThrough | TypedEvents:
        if operation in EVENT_STREAMED:
            return TypedEvents(operation, redactor=redactor)
        shaper = chunk_shaper(operation, target)
        return PassThrough(target.public_model, include_usage=include_usage, redactor=redactor, shaper=shaper)

    def models_request(self, provider: ProviderInfo) -> UpstreamRequest:
        return UpstreamRequest("GET", f"{provider.base_url}/models", headers_for(provider, content_type=None))

    def model_ids(self, payload: bytes) -> list[str]:
        return openai_model_ids(payload)
