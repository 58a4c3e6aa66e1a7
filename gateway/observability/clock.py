"""How long Portico itself spends on a request: its time, less the time it waits on upstreams.

One `RequestClock` per /v1/ request, started by the fast path as the request
arrives and found through a context variable by the code that waits (the
relay, in every task the call spawns: ensembles' calls share their request's
clock). The figure is fixed once, by whichever comes first:

    the call's end (a whole answer, an error)     gateway.accounting.finish   -> the ledger's overhead_ms
    the response's start (a stream's first byte)  gateway.fastpath            -> x-portico-overhead-ms

so the header and the ledger row always carry the same number. Waits that
overlap (a hedge's two calls) count once: the clock keeps how many are open
and times the stretch during which at least one is. Time a call spends in line
for capacity (`queue_ms`) is not Portico's work either and is left out too.

Per request this costs three clock reads plus two per upstream attempt.
"""

from __future__ import annotations

import time
from contextvars import ContextVar
from typing import Any

_now = time.monotonic  # the clock Call.started and Call.queued_at use


class RequestClock:
    __slots__ = ("arrived", "call", "ms", "seconds", "_began", "_open", "_waited")

    def __init__(self, arrived: float) -> None:
        self.arrived = arrived
        self.call: Any = None  # the request's gateway.accounting.Call, once it has one
        self.seconds: float | None = None  # Portico's own time, once fixed
        self.ms: int | None = None  # the same, rounded to whole milliseconds (the ledger's unit)
        self._open = 0  # upstream waits under way
        self._began = 0.0  # when the current stretch of waiting began
        self._waited = 0.0  # seconds of waiting in stretches that ended

    def wait_begins(self) -> None:
        if self._open == 0:
            self._began = _now()
        self._open += 1

    def wait_ends(self) -> None:
        self._open -= 1
        if self._open == 0:
            self._waited += _now() - self._began

    def freeze(self) -> int:
        """Fix the figure (the first call only); the whole milliseconds."""
        if self.ms is None:
            now = _now()
            waited = self._waited + (now - self._began if self._open else 0.0)
            spent = now - self.arrived - waited - _queued(self.call, now)
            self.seconds = max(spent, 0.0)
            self.ms = int(self.seconds * 1000 + 0.5)
        return self.ms


def _queued(call: Any, now: float) -> float:
    """Seconds the call waited in line for capacity (gateway.queueing), which is no work of Portico's."""
    if call is None:
        return 0.0
    if call.queue_ms is not None:
        return float(call.queue_ms) / 1000
    if call.queued_at is not None:
        return now - call.queued_at
    return 0.0


_current: ContextVar[RequestClock | None] = ContextVar("portico_request_clock", default=None)


def start() -> RequestClock:
    """A clock for the request arriving now, current in this task and in those it starts."""
    clock = RequestClock(_now())
    _current.set(clock)
    return clock


def current() -> RequestClock | None:
    return _current.get()
