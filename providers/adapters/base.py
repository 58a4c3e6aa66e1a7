"""The protocol every provider kind implements, and the values it trades in.

Adapters are pure: they turn an OpenAI request into the upstream's request,
and the upstream's answers (whole bodies, stream events, errors) back into
OpenAI's shapes. They never do I/O; `providers/http.py` and the gateway's
relay do that around them.

An operation is one of OpenAI's endpoints, named as in `OPERATIONS`. An
adapter lists those it speaks natively; the gateway bridges legacy
completions onto chat for kinds that have only chat, and refuses the rest
with a 400 naming what the model lacks.
"""

from __future__ import annotations

from collections.abc import AsyncIterable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

import httpx

from providers.redaction import NO_SECRETS, Redactor

Operation = Literal["chat", "completions", "embeddings", "moderations", "images", "transcriptions"]
OPERATIONS: tuple[Operation, ...] = ("chat", "completions", "embeddings", "moderations", "images", "transcriptions")
# The path of each operation under an OpenAI-style base URL.
OPENAI_PATHS: dict[Operation, str] = {
    "chat": "/chat/completions",
    "completions": "/completions",
    "embeddings": "/embeddings",
    "moderations": "/moderations",
    "images": "/images/generations",
    "transcriptions": "/audio/transcriptions",
}


class UnsupportedParameter(ValueError):
    """A request this kind cannot express; the gateway answers 400 naming `param`."""

    def __init__(self, message: str, param: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.param = param


@dataclass(frozen=True, slots=True)
class UpstreamRequest:
    method: str
    url: str
    headers: dict[str, str] = field(repr=False)  # they carry the provider's credential
    # Bytes for JSON bodies; an async iterable for uploads streamed through as they arrive.
    content: bytes | AsyncIterable[bytes] = field(default=b"", repr=False)


@dataclass(frozen=True, slots=True)
class UpstreamFailure:
    """An upstream error answer, in OpenAI's terms."""

    status: int
    message: str
    type: str
    code: str | None = None
    param: str | None = None
    headers: dict[str, str] = field(default_factory=dict)
    # Portico's own name for a failure it diagnosed itself (a refused credential, say), kept apart from
    # `code`, which may be the upstream's text.
    reason: str = ""


@dataclass(frozen=True, slots=True)
class Target:
    """Where one request goes: the provider (a `providers.facade.ProviderInfo`) and the route's names."""

    provider: Any
    upstream_model: str
    public_model: str
    # The route's output cap: Anthropic requires `max_tokens`, so it is sent when the client gave none.
    max_output_tokens: int | None = None


class StreamTranslator(Protocol):
    """Turns one upstream stream into OpenAI `chat.completion.chunk` (or `text_completion`) payloads.

    The relay splits the upstream bytes into events (SSE `data` payloads, or NDJSON lines for
    kinds whose `stream_format` is "ndjson") and feeds them in order.
    """

    # True once the upstream marked its stream complete ([DONE], message_stop, `"done": true`).
    done: bool
    # True once the upstream reported an error mid-stream (already relayed as an error payload).
    failed: bool
    # OpenAI's usage object, once the upstream reported it.
    usage: dict[str, Any] | None

    def feed(self, event: bytes) -> Iterable[bytes]:
        """One upstream event in, zero or more OpenAI SSE `data:` payloads out (never `[DONE]`)."""
        ...


class Adapter(Protocol):
    kind: str
    label: str
    stream_format: Literal["sse", "ndjson"]
    # The operations this kind speaks natively.
    operations: frozenset[Operation]

    def request(self, operation: Operation, target: Target, body: dict[str, Any]) -> UpstreamRequest:
        """The upstream request for a JSON operation; `body` is the client's, already validated, and may be changed."""
        ...

    def upload_request(
        self, operation: Operation, target: Target, content: AsyncIterable[bytes], content_type: str
    ) -> UpstreamRequest:
        """The upstream request for a multipart operation (transcriptions), its body streamed through."""
        ...

    def response(self, operation: Operation, target: Target, payload: bytes) -> bytes:
        """The upstream's whole answer to `operation`, as OpenAI's JSON body."""
        ...

    def stream_translator(
        self, operation: Operation, target: Target, *, include_usage: bool, redactor: Redactor = NO_SECRETS
    ) -> StreamTranslator:
        """Translate a stream's events. A usage chunk goes to the client only if `include_usage`
        (it asked for one); the provider's secrets (`redactor`) are scrubbed from every event."""
        ...

    def models_request(self, provider: Any) -> UpstreamRequest: ...

    def model_ids(self, payload: bytes) -> list[str]:
        """The model names in the answer to `models_request` (raises ValueError if it is not one)."""
        ...

    def failure(
        self, status: int, payload: bytes, headers: Mapping[str, str], *, redactor: Redactor = NO_SECRETS
    ) -> UpstreamFailure:
        """Map an upstream error answer; the provider's secrets (`redactor`) are scrubbed from every field."""
        ...

    def transport(self) -> httpx.AsyncBaseTransport | None:
        """An in-process transport for kinds that answer without a network (the mock), else None."""
        ...
