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

from providers.adapters.failures import FailedAnswer, UpstreamFailure
from providers.adapters.framing import EventSplitter, Splitter
from providers.adapters.kind_options import NO_OPTIONS, OptionField, clean_options
from providers.adapters.wire import openai_failure
from providers.redaction import NO_SECRETS, Redactor
from providers.values import ProviderInfo, Target

__all__ = [
    "OPENAI_PATHS",
    "OPERATIONS",
    "Adapter",
    "BaseAdapter",
    "FailedAnswer",
    "Operation",
    "StreamTranslator",
    "Target",
    "UnsupportedOperation",
    "UnsupportedParameter",
    "UpstreamFailure",
    "UpstreamRequest",
]

Operation = Literal["chat", "completions", "embeddings", "moderations", "images", "transcriptions"]
OPERATIONS: tuple[Operation, ...] = ("chat", "completions", "embeddings", "moderations", "images", "transcriptions")
CHAT_STREAMED: frozenset[Operation] = frozenset({"chat", "completions"})
# The path of each operation under an OpenAI-style base URL.
OPENAI_PATHS: dict[Operation, str] = {
    "chat": "/chat/completions",
    "completions": "/completions",
    "embeddings": "/embeddings",
    "moderations": "/moderations",
    "images": "/images/generations",
    "transcriptions": "/audio/transcriptions",
}


class UnsupportedOperation(NotImplementedError):
    """An operation this kind does not speak; the gateway checks `operations` first, so reaching it is a bug."""


class UnsupportedParameter(ValueError):
    """A request this kind cannot express; the gateway answers 400 naming `param`."""

    def __init__(self, message: str, param: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.param = param


def function_call(call: dict[str, Any], param: str) -> dict[str, Any]:
    """An earlier tool call's `function`, for a kind whose calls are functions only: a custom call (its text
    `input` for a tool of free-form grammar) has no name or arguments to translate, so it is refused."""
    kind = call.get("type", "function")
    if kind != "function":
        raise UnsupportedParameter(f"Only tool calls of type 'function' are supported, not {kind!r}.", param)
    return call.get("function") or {}


@dataclass(frozen=True, slots=True)
class UpstreamRequest:
    method: str
    url: str
    headers: dict[str, str] = field(repr=False)  # they carry the provider's credential
    # Bytes for JSON bodies; an async iterable for uploads streamed through as they arrive.
    content: bytes | AsyncIterable[bytes] = field(default=b"", repr=False)


class StreamTranslator(Protocol):
    """Turns one upstream stream into OpenAI `chat.completion.chunk` (or `text_completion`) payloads, or
    relays OpenAI's typed events of images and transcriptions (providers.adapters.openai.events).

    The relay splits the upstream bytes into events with the kind's `splitter()` (SSE `data`
    payloads, NDJSON lines) and feeds them in order.
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
    # The base URL used when the provider row names none (the mock's in-process one); "" if one is required.
    default_base_url: str
    # The operations this kind speaks natively.
    operations: frozenset[Operation]
    # The kind's own settings, kept in `Provider.options` (see kind_options.py).
    option_fields: Mapping[str, OptionField]

    # The operations this kind answers as a stream when asked to; `stream: true` on another is refused.
    streamed: frozenset[Operation]

    def clean_options(self, options: Any) -> dict[str, Any]:
        """The options as stored; raises `InvalidOptions` for an unknown key or a value of the wrong type."""
        ...

    def request(self, operation: Operation, target: Target, body: dict[str, Any]) -> UpstreamRequest:
        """The upstream request for a JSON operation; `body` is the client's, already validated, and may be changed."""
        ...

    def upload_request(
        self, operation: Operation, target: Target, content: AsyncIterable[bytes], content_type: str
    ) -> UpstreamRequest:
        """The upstream request for a multipart operation (transcriptions), its body streamed through."""
        ...

    def response(self, operation: Operation, target: Target, payload: bytes) -> bytes:
        """The upstream's whole answer to `operation`, as OpenAI's JSON body.

        Raises ValueError for a payload that is not an answer, and `FailedAnswer` for one that says the
        upstream failed (the relay answers it as the upstream's error).
        """
        ...

    def answer(self, operation: Operation, target: Target, payload: bytes) -> tuple[bytes, dict[str, Any] | None]:
        """`response`, and its parse where making it parsed what it returns (None: the caller parses it).

        The relay reads usage from every whole answer: a kind that parsed the answer anyway spares it a second parse.
        """
        ...

    def stream_translator(
        self, operation: Operation, target: Target, *, include_usage: bool, redactor: Redactor = NO_SECRETS
    ) -> StreamTranslator:
        """Translate a stream's events. A usage chunk goes to the client only if `include_usage`
        (it asked for one); the provider's secrets (`redactor`) are scrubbed from every event."""
        ...

    def splitter(self) -> Splitter:
        """A fresh splitter for one stream of this kind's framing."""
        ...

    def models_request(self, provider: ProviderInfo) -> UpstreamRequest: ...

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


class BaseAdapter:
    """The defaults a kind inherits: SSE streams, no uploads, OpenAI-shaped errors, the network.

    A kind overrides what it does differently; what it does not speak at all raises
    `UnsupportedOperation`, which the gateway never reaches because it checks `operations` first.
    """

    kind: str = ""
    label: str = ""
    default_base_url: str = ""
    operations: frozenset[Operation] = frozenset()
    option_fields: Mapping[str, OptionField] = NO_OPTIONS

    # Every kind streams chat (and legacy completions, bridged or not); images and transcriptions only where said.
    streamed: frozenset[Operation] = CHAT_STREAMED

    def clean_options(self, options: Any) -> dict[str, Any]:
        return clean_options(self.option_fields, options, label=self.label)

    def request(self, operation: Operation, target: Target, body: dict[str, Any]) -> UpstreamRequest:
        raise UnsupportedOperation(f"{self.label} does not offer {operation}")

    def upload_request(
        self, operation: Operation, target: Target, content: AsyncIterable[bytes], content_type: str
    ) -> UpstreamRequest:
        raise UnsupportedOperation(f"{self.label} takes no uploads ({operation})")

    def response(self, operation: Operation, target: Target, payload: bytes) -> bytes:
        raise UnsupportedOperation(f"{self.label} does not offer {operation}")

    def answer(self, operation: Operation, target: Target, payload: bytes) -> tuple[bytes, dict[str, Any] | None]:
        return self.response(operation, target, payload), None

    def stream_translator(
        self, operation: Operation, target: Target, *, include_usage: bool, redactor: Redactor = NO_SECRETS
    ) -> StreamTranslator:
        raise UnsupportedOperation(f"{self.label} does not stream {operation}")

    def splitter(self) -> Splitter:
        return EventSplitter()

    def models_request(self, provider: ProviderInfo) -> UpstreamRequest:
        raise UnsupportedOperation(f"{self.label} lists no models")

    def model_ids(self, payload: bytes) -> list[str]:
        raise ValueError(f"{self.label} lists no models")

    def failure(
        self, status: int, payload: bytes, headers: Mapping[str, str], *, redactor: Redactor = NO_SECRETS
    ) -> UpstreamFailure:
        return openai_failure(status, payload, headers, redactor=redactor)

    def transport(self) -> httpx.AsyncBaseTransport | None:
        return None
