"""Webhook signatures: HMAC-SHA256 over the timestamp, a dot and the body, keyed with the channel's secret.

    x-portico-signature: t=1764950400,v1=5257a869e7ecebeda32affa62cdca3fa51cad7e77a0e56ff536d0ce8e108d8bd

A receiver recomputes `hmac_sha256(secret, f"{t}." + raw body)` in hex, compares it in constant time
with `v1`, and refuses a `t` more than a few minutes old, so that a captured request cannot be replayed
later. `verify` does exactly that, for receivers written in Python.
"""

from __future__ import annotations

import hashlib
import hmac
import time

HEADER = "x-portico-signature"
TOLERANCE = 300  # seconds a receiver should accept between `t` and its own clock


def signature(*, secret: str, timestamp: int, body: bytes) -> str:
    """The header's value for this body, signed at `timestamp` (Unix seconds)."""
    digest = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()
    return f"t={timestamp},v1={digest}"


def verify(*, secret: str, header: str, body: bytes, now: float | None = None, tolerance: int = TOLERANCE) -> bool:
    """True if `header` signs `body` with `secret` and was made within `tolerance` seconds of `now`."""
    parts = {name.strip(): value for name, _, value in (part.partition("=") for part in header.split(","))}
    timestamp, given = parts.get("t", ""), parts.get("v1", "")
    if not timestamp.isdigit() or not given:
        return False
    if abs((time.time() if now is None else now) - int(timestamp)) > tolerance:
        return False
    expected = signature(secret=secret, timestamp=int(timestamp), body=body).rpartition("v1=")[2]
    return hmac.compare_digest(expected, given)
