"""Rate limits (requests and tokens per minute, requests in flight) and spending budgets.

The hot path builds an `Ask` from the snapshot, calls `acquire` once before the
upstream call and, with the request's actual usage, `settle` once after it:

    verdict = await limiter.acquire(Ask(request_id, windows, budgets, tokens=estimate, cost=worst_case))
    if not verdict.allowed:
        ...  # 429 with verdict.message, Retry-After: verdict.retry_after, verdict.headers
    ...
    await limiter.settle(verdict.ticket, tokens=used, cost=charged)

`RedisLimiter` shares the limits between every process, and keeps a reservation
ready for a key whose calls come steadily (spares.py); `LocalLimiter` keeps
them in one process (a Portico without Redis, or while Redis is away). Both
clamp what a request reserves and settles (`RESERVATION_MAX`), so no client
value can overflow a counter.
"""

from billing.limits.local import LocalLimiter
from billing.limits.redis import RedisLimiter
from billing.limits.verdicts import (
    COUNTER_MAX,
    RESERVATION_MAX,
    Ask,
    Budget,
    Limiter,
    LimiterFailed,
    LimiterUnavailable,
    Refusal,
    Ticket,
    Verdict,
    Window,
    clamp,
    format_reset,
)

__all__ = [
    "COUNTER_MAX",
    "RESERVATION_MAX",
    "Ask",
    "Budget",
    "Limiter",
    "LimiterFailed",
    "LimiterUnavailable",
    "LocalLimiter",
    "RedisLimiter",
    "Refusal",
    "Ticket",
    "Verdict",
    "Window",
    "clamp",
    "format_reset",
]
