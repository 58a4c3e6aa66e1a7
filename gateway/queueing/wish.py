"""What a request asks of the queue, read once from its headers, and what a queued job's run carries.

    x-portico-queue-timeout: 5      wait at most 5 s in line (capped by the key's longest wait; 0: do not wait)
    Prefer: respond-async           if the request would be refused for capacity, answer 202 with a job (RFC 7240)
    x-portico-async: true           the same, for clients that cannot set Prefer

Most requests send none of these: `queue_wish` then costs three dict lookups
and returns None.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from django.http import HttpRequest

from gateway.errors import InvalidRequest
from tenants.facade import KeyGrant

TIMEOUT_HEADER = "HTTP_X_PORTICO_QUEUE_TIMEOUT"
ASYNC_HEADER = "HTTP_X_PORTICO_ASYNC"
PREFER_HEADER = "HTTP_PREFER"
# The request headers a job keeps to be served as it was sent: its routing extensions (gateway.extensions).
KEPT_PREFIX = "HTTP_X_PORTICO_"
_NOT_KEPT = frozenset({TIMEOUT_HEADER, ASYNC_HEADER})


@dataclass(frozen=True, slots=True)
class JobRun:
    """A queued job being run by a worker: it waits in line until `deadline`, as its client could not."""

    job_id: str
    queued_at: float  # epoch seconds the job was accepted: its queue time counts from there
    deadline: float  # epoch seconds after which it expires
    slice_ends: float  # epoch seconds this run stops waiting and hands the job back to the broker


@dataclass(frozen=True, slots=True)
class QueueWish:
    timeout: float | None = None  # x-portico-queue-timeout, seconds
    asynchronous: bool = False  # Prefer: respond-async, or x-portico-async: true
    request: HttpRequest | None = None  # what a job is made from
    job: JobRun | None = None


def queue_wish(request: HttpRequest, body: Mapping[str, Any], grant: KeyGrant) -> QueueWish | None:
    """The request's queue headers; 400 for a value Portico cannot read, or an asynchronous stream."""
    meta = request.META
    timeout, async_flag, prefer = meta.get(TIMEOUT_HEADER), meta.get(ASYNC_HEADER), meta.get(PREFER_HEADER)
    if timeout is None and async_flag is None and prefer is None:
        return None
    asynchronous = _asks_async(async_flag, prefer)
    if asynchronous and grant.queue.defers and body.get("stream"):
        raise InvalidRequest(
            "Asynchronous requests (Prefer: respond-async) cannot be streamed: leave out `stream`.",
            param="stream",
            code="invalid_value",
        )
    if timeout is None and not asynchronous:
        return None
    return QueueWish(timeout=_timeout(timeout), asynchronous=asynchronous, request=request)


def kept_headers(meta: Mapping[str, Any]) -> dict[str, str]:
    """The request's routing extension headers, as a job keeps them (META names)."""
    return {name: str(value) for name, value in meta.items() if name.startswith(KEPT_PREFIX) and name not in _NOT_KEPT}


def _asks_async(flag: str | None, prefer: str | None) -> bool:
    if flag is not None:
        value = flag.strip().lower()
        if value not in ("true", "false", "1", "0"):
            raise InvalidRequest(
                f"Invalid 'x-portico-async': expected true or false, got {flag!r}.",
                param="x-portico-async",
                code="invalid_value",
            )
        if value in ("true", "1"):
            return True
    # Prefer holds comma-separated preferences, each possibly with parameters: "respond-async, wait=10".
    return prefer is not None and any(
        item.split(";")[0].split("=")[0].strip().lower() == "respond-async" for item in prefer.split(",")
    )


def _timeout(value: str | None) -> float | None:
    if value is None:
        return None
    try:
        seconds = float(value)
    except ValueError:
        seconds = math.nan
    if not (math.isfinite(seconds) and seconds >= 0):
        raise InvalidRequest(
            f"Invalid 'x-portico-queue-timeout': expected a number of seconds of 0 or more, got {value!r}.",
            param="x-portico-queue-timeout",
            code="invalid_value",
        )
    return seconds
