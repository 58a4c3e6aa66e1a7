"""What both breaker implementations share: the rules, the values they hand out, and the latency watch.

A breaker is closed, open or half-open:

    closed --(error ratio over the window, N failures in a row, degraded latency,
              an upstream that says it is exhausted)--> open
    open --(the cooldown has passed and a probe is asked for)--> half_open
    half_open --(a probe succeeds)--> closed
    half_open --(a probe fails)--> open, for another cooldown
    any --(operator reset)--> closed

"open" turns into "half_open" lazily, when the first probe is granted, so no
timer runs anywhere. Outcomes recorded while a breaker is open came from
requests sent before it opened and are ignored.
"""

from __future__ import annotations

import statistics
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Protocol

CLOSED, OPEN, HALF_OPEN = "closed", "open", "half_open"
RESET_REASON = "reset by an operator"
RECENT_ERRORS = 10  # errors kept per breaker for the admin
REASON_MAX = 300  # characters of a reason kept (the history column's size)
RECENT_SAMPLES = 20  # latencies whose median is compared with the baseline
BASELINE_SAMPLES = 50  # latencies seen before the baseline is trusted
BASELINE_ALPHA = 0.02  # weight of one sample in the slow baseline
# A sample past the threshold moves the baseline this much less, so a slowdown does not become the new normal
# before it trips the breaker; a lasting change of speed is still learned, slowly.
DEGRADED_DAMPING = 10.0


@dataclass(frozen=True, slots=True)
class BreakerRules:
    window: float = 30.0  # seconds of outcomes the error ratio is taken over
    error_ratio: float = 0.5  # failures / requests in the window that open the breaker...
    min_requests: int = 10  # ...once the window holds at least this many requests
    consecutive_failures: int = 5  # failures in a row that open it whatever the ratio (0: off)
    cooldown: float = 30.0  # seconds it stays open before probes are let through
    half_open_probes: int = 3  # requests let through at once while half-open
    latency_multiple: float = 4.0  # recent median latency past this many baselines opens it (0: off)...
    # ...and past this many seconds: a baseline of a millisecond is passed four times over by the
    # gateway's own queueing under load, which says nothing about the provider.
    latency_floor: float = 1.0

    @classmethod
    def from_settings(cls) -> BreakerRules:
        from django.conf import settings

        return cls(
            window=settings.PORTICO_BREAKER_WINDOW,
            error_ratio=settings.PORTICO_BREAKER_ERROR_RATIO,
            min_requests=settings.PORTICO_BREAKER_MIN_REQUESTS,
            consecutive_failures=settings.PORTICO_BREAKER_CONSECUTIVE_FAILURES,
            cooldown=settings.PORTICO_BREAKER_COOLDOWN,
            half_open_probes=settings.PORTICO_BREAKER_HALF_OPEN_PROBES,
            latency_multiple=settings.PORTICO_BREAKER_LATENCY_MULTIPLE,
            latency_floor=settings.PORTICO_BREAKER_LATENCY_FLOOR,
        )


@dataclass(frozen=True, slots=True)
class RecentError:
    at: datetime
    reason: str


@dataclass(frozen=True, slots=True)
class BreakerState:
    route_id: int
    state: str  # CLOSED, OPEN or HALF_OPEN
    since: datetime | None  # None: never left closed
    until: datetime | None  # while open: when probes may start
    reason: str  # why it last changed state
    last_errors: tuple[RecentError, ...]  # newest first


@dataclass(frozen=True, slots=True)
class Transition:
    route_id: int
    route_name: str
    from_state: str
    to_state: str
    reason: str
    at: float  # Unix seconds


class Breakers(Protocol):
    """The breakers of every deployment. Methods other than state() and reset() run on the event loop."""

    def is_open(self, route_id: int) -> bool: ...
    def allow(self, route_id: int) -> bool: ...
    async def acquire_probe(self, route_id: int) -> bool: ...
    def record(
        self,
        route_id: int,
        name: str,
        *,
        ok: bool,
        latency: float | None = None,
        ttfb: float | None = None,
        reason: str = "",
    ) -> None: ...
    def cool_down(self, route_id: int, name: str, seconds: float, reason: str) -> None: ...
    def reset(self, route_id: int) -> None: ...
    def state(self, route_id: int) -> BreakerState: ...
    async def start(self) -> None: ...
    async def stop(self) -> None: ...


TransitionSink = Callable[[Transition], None]


def moment(seconds: float) -> datetime:
    return datetime.fromtimestamp(seconds, UTC)


def clip(reason: str) -> str:
    return reason[:REASON_MAX]


class _Signal:
    """One latency signal of one deployment: a slow EWMA baseline and the last few samples."""

    __slots__ = ("baseline", "seen", "recent")

    def __init__(self) -> None:
        self.baseline = 0.0
        self.seen = 0
        self.recent: deque[float] = deque(maxlen=RECENT_SAMPLES)


class LatencyWatch:
    """Per process: tells when a deployment's recent median latency leaves its own baseline far behind.

    Streams are judged by their time to first token, other calls by their whole
    latency: the two are kept apart, as one is a fraction of the other. Only
    successful calls count (a timeout is a failure, and counted as one).
    """

    def __init__(self, multiple: float, floor: float = 0.0) -> None:
        self.multiple = multiple
        self.floor = floor
        self._signals: dict[tuple[int, bool], _Signal] = {}

    def degraded(self, route_id: int, latency: float | None, ttfb: float | None) -> str:
        """Take one sample; return why the deployment counts as degraded, or ""."""
        if self.multiple <= 0 or (latency is None and ttfb is None):
            return ""
        streamed = ttfb is not None
        sample = ttfb if ttfb is not None else latency
        assert sample is not None
        signal = self._signals.get((route_id, streamed))
        if signal is None:
            signal = self._signals[route_id, streamed] = _Signal()
        signal.recent.append(sample)
        if signal.seen < BASELINE_SAMPLES:
            signal.seen += 1
            signal.baseline += (sample - signal.baseline) / signal.seen  # a plain mean until it is trusted
            return ""
        threshold = max(self.multiple * signal.baseline, self.floor)
        if sample <= threshold:
            signal.baseline += BASELINE_ALPHA * (sample - signal.baseline)
            return ""  # a median past the threshold needs this sample past it too: no need to sort
        signal.baseline += BASELINE_ALPHA / DEGRADED_DAMPING * (sample - signal.baseline)
        if len(signal.recent) < RECENT_SAMPLES:
            return ""
        median = statistics.median(signal.recent)
        if median <= threshold:
            return ""
        signal.recent.clear()  # judged afresh once it is back
        what = "time to first token" if streamed else "latency"
        return (
            f"degraded: median {what} {median:.3f} s is over {self.multiple:g} x its baseline {signal.baseline:.3f} s"
        )
