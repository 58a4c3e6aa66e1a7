"""An upstream's error answer in OpenAI's terms: what every adapter's `failure()` returns.

Kept apart from `base` so that the shared OpenAI mapping in `wire` and the adapters' base class can
both use it without importing each other.
"""

from __future__ import annotations

from dataclasses import dataclass, field

__all__ = ["UpstreamFailure"]


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
