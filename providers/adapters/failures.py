"""An upstream's error answer in OpenAI's terms: what every adapter's `failure()` returns.

`FailedAnswer` carries one out of an adapter's `response()`, for an upstream that answers 200 with
a body saying it failed; the relay raises it as it would the error answer.

Kept apart from `base` so that the shared OpenAI mapping in `wire` and the adapters' base class can
both use it without importing each other.
"""

from __future__ import annotations

from dataclasses import dataclass, field

__all__ = ["FailedAnswer", "UpstreamFailure"]


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


class FailedAnswer(Exception):
    """A whole answer sent as a success that reports the upstream's own failure (a generation that errored)."""

    def __init__(self, failure: UpstreamFailure) -> None:
        super().__init__(failure.message)
        self.failure = failure
