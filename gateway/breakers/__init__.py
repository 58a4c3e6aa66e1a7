"""Circuit breakers, one per deployment: a deployment that fails, slows down or says it is exhausted is kept
out of rotation for a while, then probed, then trusted again (the rules are in rules.py).

`RedisBreakers` shares every breaker between the processes and replicas that
use one Redis; `LocalBreakers` keeps them in the process (the embedded default,
without Redis). Both answer the same questions alike, from the same tests.

The request path asks and tells, and never waits unless it probes:

    if breakers.is_open(route.id): ...               # skip it: a dict lookup
    if not await breakers.acquire_probe(route.id):   # closed: True at once; half-open: one probe slot, or not
        ...                                          # skip it
    breakers.record(route.id, route.name, ok=False, reason="5xx")            # appends to a list
    breakers.record(route.id, route.name, ok=True, latency=0.8, ttfb=0.2)
    breakers.cool_down(route.id, route.name, retry_after, "429 with Retry-After")

A reason is shown to operators in the admin and kept in the history: pass
Portico's own classification of the failure (`upstream_unavailable`, "stall",
"429 with Retry-After"), never text an upstream sent.

The process's instance comes from `breakers_for_settings()`. The ASGI entry
point starts it with the server and stops it at shutdown:

    # gateway/asgi.py, Portico.startup():   await breakers_for_settings().start()
    # gateway/asgi.py, Portico.shutdown():  await breakers_for_settings().stop()

`state()` and `reset()` are the admin's: they are synchronous, run in the
admin's thread, and write the reset to the history at once. Transitions are
kept in `gateway.models.BreakerTransition`, written by a background thread.
"""

from __future__ import annotations

import functools

from gateway.breakers.history import TransitionLog
from gateway.breakers.local import LocalBreakers
from gateway.breakers.redis import RedisBreakers
from gateway.breakers.rules import (
    CLOSED,
    HALF_OPEN,
    OPEN,
    BreakerRules,
    Breakers,
    BreakerState,
    RecentError,
    Transition,
)

__all__ = [
    "CLOSED",
    "HALF_OPEN",
    "OPEN",
    "BreakerRules",
    "BreakerState",
    "Breakers",
    "LocalBreakers",
    "RecentError",
    "RedisBreakers",
    "Transition",
    "TransitionLog",
    "breakers_for_settings",
]


@functools.cache
def breakers_for_settings() -> Breakers:
    """This process's breakers, made on the first call from the settings: shared through Redis when it is set."""
    from django.conf import settings

    rules = BreakerRules.from_settings()
    if settings.REDIS_URL:
        return RedisBreakers(
            settings.REDIS_URL, prefix=settings.PORTICO_REDIS_PREFIX, rules=rules, history=TransitionLog()
        )
    return LocalBreakers(rules=rules, history=TransitionLog())
