"""The protocol every provider kind implements, and the values it trades in.

Adapters are pure: they turn an OpenAI request into the upstream's request,
and the upstream's answers (whole bodies, stream events, errors) back into
OpenAI's shapes. They never do I/O; `providers/http.py` and the gateway's
relay do that around them.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

import httpx


@dataclass(frozen=True, slots=True)
class UpstreamRequest:
    method: str
    url: str
    headers: dict[str, str] = field(repr=False)  # they carry the provider's credential
    content: bytes = field(default=b"", repr=False)


@dataclass(frozen=True, slots=True)
class UpstreamFailure:
    """An upstream error answer, in OpenAI's terms."""

    status: int
    message: str
    type: str
    code: str | None = None
    param: str | None = None
    headers: dict[str, str] = field(default_factory=dict)


class StreamTranslator(Protocol):
    def feed(self, event: bytes) -> Iterable[bytes]:
        """One upstream stream event in, zero or more OpenAI SSE `data:` payloads out."""
        ...


class Adapter(Protocol):
    kind: str
    label: str

    def chat_request(self, provider: Any, upstream_model: str, body: dict[str, Any]) -> UpstreamRequest: ...

    def models_request(self, provider: Any) -> UpstreamRequest: ...

    def chat_response(self, payload: bytes, public_model: str, upstream_model: str) -> bytes: ...

    def stream_translator(self, public_model: str, upstream_model: str, *, secret: str = "") -> StreamTranslator:
        """Translate a stream's events; `secret` (the provider credential) is scrubbed from any it appears in."""
        ...

    def failure(self, status: int, payload: bytes, headers: Mapping[str, str], *, secret: str = "") -> UpstreamFailure:
        """Map an upstream error answer; `secret` (the provider credential) is scrubbed from messages."""
        ...

    def transport(self) -> httpx.AsyncBaseTransport | None:
        """An in-process transport for kinds that answer without a network (the mock), else None."""
        ...
