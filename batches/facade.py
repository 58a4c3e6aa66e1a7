"""What a batch runner (gateway.batch_runner) is handed: frozen values, no models."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class BatchRun:
    """A batch as its runner sees it."""

    id: str
    tenant_id: int
    api_key_id: int | None
    key_prefix: str
    endpoint: str
    status: str
    expires_at: float  # epoch seconds
    not_before: float | None  # lines refused by the limits wait until then


@dataclass(frozen=True, slots=True)
class LineWork:
    """A line to run, or one found in flight after its runner died."""

    id: int
    number: int
    custom_id: str
    request_id: str
    body: bytes
    claimed_at: float = 0.0  # epoch seconds; for a line found in flight


@dataclass(frozen=True, slots=True)
class Answer:
    """How a line ended: the answer's status and body, or (status None) why it got none."""

    status: int | None
    body: bytes = b""
    error_code: str = ""
    error_message: str = ""

    @property
    def succeeded(self) -> bool:
        return self.status is not None and 200 <= self.status < 300


@dataclass(frozen=True, slots=True)
class Wait:
    """The tenant's limits refused the line before anything was sent: try it again in `seconds`."""

    seconds: float
