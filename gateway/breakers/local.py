"""Breakers kept in this process: the embedded default, without Redis.

The rules are those of the Lua scripts in scripts.py, written in Python step
for step, so both implementations answer every question alike (the shared
tests run each case against both). Every change happens under one lock:
the event loop records outcomes while the admin's thread may reset.
"""

from __future__ import annotations

import asyncio
import math
import threading
import time
from collections import deque
from collections.abc import Callable
from typing import TYPE_CHECKING

from gateway.breakers.rules import (
    CLOSED,
    HALF_OPEN,
    OPEN,
    RECENT_ERRORS,
    RESET_REASON,
    BreakerRules,
    BreakerState,
    LatencyWatch,
    RecentError,
    Transition,
    clip,
    moment,
)

if TYPE_CHECKING:
    from gateway.breakers.history import TransitionLog


class _Breaker:
    __slots__ = (
        "name",
        "state",
        "since",
        "until",
        "reason",
        "granted",
        "round_until",
        "consecutive",
        "buckets",
        "errors",
    )

    def __init__(self, name: str) -> None:
        self.name = name
        self.state = CLOSED
        self.since: float | None = None
        self.until = 0.0  # while open: when probes may start
        self.reason = ""
        self.granted = 0  # probes granted in this half-open round...
        self.round_until = 0.0  # ...which ends then, when unanswered probes count as lost
        self.consecutive = 0
        self.buckets: dict[int, list[int]] = {}  # whole second -> [successes, failures]
        self.errors: deque[tuple[float, str]] = deque(maxlen=RECENT_ERRORS)


class LocalBreakers:
    def __init__(
        self,
        *,
        rules: BreakerRules,
        clock: Callable[[], float] = time.time,
        history: TransitionLog | None = None,
    ) -> None:
        """`clock` gives Unix seconds (a test's fake clock)."""
        self.rules = rules
        self._clock = clock
        self._history = history
        self._latency = LatencyWatch(rules.latency_multiple, rules.latency_floor)
        self._breakers: dict[int, _Breaker] = {}
        self._open: dict[int, float] = {}  # deployments not closed -> until when open (0: half-open)
        self._lock = threading.Lock()

    # --- the request path -----------------------------------------------------------------------------------

    def is_open(self, route_id: int) -> bool:
        until = self._open.get(route_id)
        return until is not None and until > self._clock()

    def allow(self, route_id: int) -> bool:
        """Closed. A half-open breaker's probes are granted by `acquire_probe`, as RedisBreakers' are."""
        return route_id not in self._open

    async def acquire_probe(self, route_id: int) -> bool:
        """The async `allow`: True when closed; when half-open, True if a probe slot is left."""
        if route_id not in self._open:
            return True
        with self._lock:
            return self._probe(route_id, self._clock())

    def record(
        self,
        route_id: int,
        name: str,
        *,
        ok: bool,
        latency: float | None = None,
        ttfb: float | None = None,
        reason: str = "",
    ) -> None:
        degraded = self._latency.degraded(route_id, latency, ttfb) if ok else ""
        with self._lock:
            now = self._clock()
            self._outcome(self._breaker(route_id, name), route_id, ok, reason, now)
            if degraded:
                self._open_until(self._breaker(route_id, name), route_id, now + self.rules.cooldown, degraded, now)

    def cool_down(self, route_id: int, name: str, seconds: float, reason: str) -> None:
        with self._lock:
            now = self._clock()
            self._open_until(self._breaker(route_id, name), route_id, now + seconds, reason, now)

    # --- operators ------------------------------------------------------------------------------------------

    def reset(self, route_id: int) -> None:
        with self._lock:
            breaker = self._breakers.get(route_id)
            if breaker is None or breaker.state == CLOSED:
                return
            change = self._move(breaker, route_id, CLOSED, RESET_REASON, self._clock(), log=False)
        if self._history is not None:
            self._history.write([change])

    def state(self, route_id: int) -> BreakerState:
        with self._lock:
            breaker = self._breakers.get(route_id) or _Breaker("")
            errors = tuple(RecentError(moment(at), why) for at, why in reversed(breaker.errors))
            return BreakerState(
                route_id=route_id,
                state=breaker.state,
                since=None if breaker.since is None else moment(breaker.since),
                until=moment(breaker.until) if breaker.state == OPEN else None,
                reason=breaker.reason,
                last_errors=errors,
            )

    async def start(self) -> None:
        if self._history is not None:
            self._history.start()

    async def stop(self) -> None:
        if self._history is not None:
            await asyncio.to_thread(self._history.stop)

    async def flush(self) -> None:
        """Nothing waits here: outcomes take effect as they are recorded (the same call as RedisBreakers')."""

    # --- the rules (scripts.py in Python) -------------------------------------------------------------------

    def _breaker(self, route_id: int, name: str) -> _Breaker:
        breaker = self._breakers.get(route_id)
        if breaker is None:
            breaker = self._breakers[route_id] = _Breaker(name)
        elif name:
            breaker.name = name
        return breaker

    def _outcome(self, breaker: _Breaker, route_id: int, ok: bool, reason: str, now: float) -> None:
        if breaker.state == OPEN:
            return  # sent before it opened
        if not ok:
            reason = reason or "failed"
            breaker.errors.append((now, clip(reason)))
        if breaker.state == HALF_OPEN:
            if ok:
                self._move(breaker, route_id, CLOSED, "a probe succeeded", now)
            else:
                self._open_until(breaker, route_id, now + self.rules.cooldown, f"a probe failed: {reason}", now)
            return
        rules = self.rules
        second = math.floor(now)
        counts = breaker.buckets.get(second)
        if counts is None:  # at most once a second: forget what left the window
            horizon = now - rules.window
            for old in [old for old in breaker.buckets if old <= horizon]:
                del breaker.buckets[old]
            counts = breaker.buckets[second] = [0, 0]
        counts[0 if ok else 1] += 1
        breaker.consecutive = 0 if ok else breaker.consecutive + 1
        if ok:
            return
        total = sum(ok + failed for ok, failed in breaker.buckets.values())
        failed = sum(failed for _, failed in breaker.buckets.values())
        if rules.consecutive_failures and breaker.consecutive >= rules.consecutive_failures:
            why = f"{breaker.consecutive} failures in a row: {reason}"
        elif total >= rules.min_requests and failed >= rules.error_ratio * total:
            why = f"{failed} of {total} requests failed within {rules.window:g} s: {reason}"
        else:
            return
        self._open_until(breaker, route_id, now + rules.cooldown, why, now)

    def _probe(self, route_id: int, now: float) -> bool:
        breaker = self._breakers.get(route_id)
        if breaker is None or breaker.state == CLOSED:
            return True
        if breaker.state == OPEN:
            if now < breaker.until:
                return False
            self._move(breaker, route_id, HALF_OPEN, "cooldown over: probing", now)
        if now >= breaker.round_until:
            breaker.granted, breaker.round_until = 0, now + self.rules.cooldown
        if breaker.granted >= self.rules.half_open_probes:
            return False
        breaker.granted += 1
        return True

    def _open_until(self, breaker: _Breaker, route_id: int, until: float, reason: str, now: float) -> None:
        if breaker.state == OPEN:
            if until > breaker.until:  # a longer cooldown wins; a shorter one never cuts one short
                breaker.until = until
                self._open[route_id] = until
            return
        breaker.until = until
        self._move(breaker, route_id, OPEN, reason, now)

    def _move(
        self, breaker: _Breaker, route_id: int, to: str, reason: str, now: float, *, log: bool = True
    ) -> Transition:
        change = Transition(route_id, breaker.name, breaker.state, to, clip(reason), now)
        breaker.state, breaker.since, breaker.reason = to, now, change.reason
        breaker.buckets.clear()
        breaker.consecutive = 0
        if to == CLOSED:
            self._open.pop(route_id, None)
        else:
            self._open[route_id] = breaker.until if to == OPEN else 0.0
        if to == HALF_OPEN:
            breaker.round_until = 0.0
        if log and self._history is not None:
            self._history.add(change)
        return change
