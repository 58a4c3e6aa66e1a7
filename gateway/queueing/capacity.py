"""Whether a model's deployments have a free slot in this process: the gate a call waits at when they are full.

A model whose every deployment has `max_in_flight` is full when this process's
calls in flight on them (the routing loop's own count, `gateway.routing.stats`)
plus the calls let through this gate that have not yet reached a deployment
reach the sum of those caps. A call let through is counted until its first
attempt starts (`call.attempts`) or it ends, so two waiters are never handed
the same slot in the moment between the gate and the routing loop.

This is the one place the queue looks at deployments, and it sees what this
process sees: the routing loop's caps are shared by every process through the
limiter (gateway.routing_caps), so with several processes a call the gate lets
through may still find the deployment full (and get the loop's 503). A model
with an uncapped deployment, or capped by requests or tokens per minute
only, never waits here.
"""

from __future__ import annotations

import functools
from typing import TYPE_CHECKING, Protocol

from providers.facade import ModelInfo

if TYPE_CHECKING:
    from gateway.accounting import Call


class _InFlight(Protocol):
    def in_flight(self, route_id: int) -> int: ...


@functools.cache
def _stats() -> _InFlight:
    # gateway.routing imports gateway.accounting, which imports this package: the loop's count is looked up once
    # both have loaded, on the first call that reaches a capped model.
    from gateway.routing import stats

    return stats


def capacity(model: ModelInfo) -> int | None:
    """The calls the model's deployments may have in flight at once; None if any of them has no such cap."""
    total = 0
    for route in model.routes:
        if route.max_in_flight is None:
            return None
        total += route.max_in_flight
    return total


class Gate:
    """This process's calls let through to each capped model and not yet at a deployment."""

    def __init__(self) -> None:
        self._passing: dict[str, list[Call]] = {}

    def has_room(self, model: ModelInfo, cap: int) -> bool:
        stats = _stats()
        busy = sum(stats.in_flight(route.id) for route in model.routes)
        passing = self._passing.get(model.public_id)
        if passing:
            passing[:] = [call for call in passing if not call.attempts and not call.finished]
            busy += len(passing)
        return busy < cap

    def let_through(self, model: ModelInfo, call: Call) -> None:
        self._passing.setdefault(model.public_id, []).append(call)


gate = Gate()
