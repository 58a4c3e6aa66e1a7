"""Hedged calls: a second deployment asked when the first is slower than usual, the first answer taken.

"Slower than usual" is the first deployment's recent p95 time to first byte
(`FirstByteTimes`), or the model's first-byte timeout until enough samples exist,
so about one call in twenty costs a second upstream call. A first call that fails
before then starts the second at once.
"""

from __future__ import annotations

import math
import time
from collections import deque
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Generic, TypeVar

from gateway.ensembles.calls import (
    Attempt,
    Calls,
    Discard,
    Done,
    EnsembleResult,
    OpenStream,
    Outcome,
    Run,
    answers,
    close_loser,
    keep,
    streams,
)

if TYPE_CHECKING:
    from providers.facade import RouteInfo

S = TypeVar("S", bound=OpenStream)
T = TypeVar("T")


class FirstByteTimes:
    """Each deployment's recent times to first byte and their 95th percentile. Process-local, event loop only.

    Fed by the loop with `record()` after each call. A call `hedge` cancelled counts
    with the time it had waited: its first byte came no sooner, and leaving it out
    would pull the p95 toward the fast answers that were let finish, which would then
    hedge ever more calls. Failed calls are left out: a refused connection in a
    millisecond says nothing of how long an answer takes. Samples older than
    `stale_after` seconds are forgotten. Sorting at most `size` floats costs a few
    microseconds, and is done only after a new sample.
    """

    def __init__(
        self,
        *,
        size: int = 64,
        min_samples: int = 8,
        stale_after: float = 300.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._size = size
        self._min_samples = min_samples
        self._stale_after = stale_after
        self._clock = clock
        self._samples: dict[int, deque[float]] = {}
        self._updated: dict[int, float] = {}
        self._p95: dict[int, float] = {}

    def record(self, outcome: Outcome) -> None:
        if outcome.ok:
            self.observe(outcome.route.id, outcome.latency if outcome.ttfb is None else outcome.ttfb)
        elif outcome.cancelled:
            self.observe(outcome.route.id, outcome.latency)

    def observe(self, route_id: int, seconds: float) -> None:
        samples = self._samples.get(route_id)
        if samples is None or self._stale(route_id):
            samples = self._samples[route_id] = deque(maxlen=self._size)
        samples.append(seconds)
        self._updated[route_id] = self._clock()
        self._p95.pop(route_id, None)

    def p95(self, route_id: int) -> float | None:
        """Seconds, or None with fewer than `min_samples` recent samples."""
        samples = self._samples.get(route_id)
        if samples is None or len(samples) < self._min_samples or self._stale(route_id):
            return None
        if route_id not in self._p95:
            ordered = sorted(samples)
            self._p95[route_id] = ordered[math.ceil(len(ordered) * 0.95) - 1]
        return self._p95[route_id]

    def _stale(self, route_id: int) -> bool:
        return self._clock() - self._updated.get(route_id, 0.0) > self._stale_after


@dataclass(frozen=True, slots=True)
class HedgedStream(Generic[S]):
    stream: S | None  # the winner, first event in; None when every open failed
    route: RouteInfo | None  # the winner's deployment
    outcomes: tuple[Outcome, ...]  # every other call: failed opens, and cancelled or closed losers
    headers: dict[str, str]


async def hedge(
    routes: Sequence[RouteInfo], attempt: Attempt, stats: FirstByteTimes, *, first_byte_timeout_default: float
) -> EnsembleResult:
    """The first deployment's answer, or the second's when the first is slower than its p95 or fails.

    When both fail, `chosen` is the second's failure.
    """
    delay = _delay(routes, stats, first_byte_timeout_default)
    winner, losers, hedged_after = await _race(routes, answers(attempt), keep, delay)
    if winner is None or winner.value is None:
        chosen, outcomes = losers[-1], tuple(losers)
    else:
        chosen, outcomes = winner.value, (winner.value, *losers)
    header = _header(hedged_after, winner.route if winner else None, routes)
    return EnsembleResult(chosen, outcomes, {"x-portico-ensemble": header})


async def hedge_stream(
    routes: Sequence[RouteInfo],
    open_stream: Callable[[RouteInfo], Awaitable[S]],
    stats: FirstByteTimes,
    *,
    first_byte_timeout_default: float,
) -> HedgedStream[S]:
    """`hedge` for streams: `open_stream` returns once the first event is in; the first such stream is taken.

    A loser that opened anyway is closed. One still opening is cancelled, so the
    loop's opener must close what it opened when it sees the CancelledError (an
    `async with` around the upstream response does).
    """
    delay = _delay(routes, stats, first_byte_timeout_default)
    winner, losers, hedged_after = await _race(routes, streams(open_stream), close_loser, delay)
    headers = {"x-portico-ensemble": _header(hedged_after, winner.route if winner else None, routes)}
    if winner is None:
        return HedgedStream(None, None, tuple(losers), headers)
    return HedgedStream(winner.value, winner.route, tuple(losers), headers)


def _delay(routes: Sequence[RouteInfo], stats: FirstByteTimes, default: float) -> float:
    if not routes:
        raise ValueError("an ensemble needs at least one deployment")
    p95 = stats.p95(routes[0].id)
    return default if p95 is None else p95


async def _race(
    routes: Sequence[RouteInfo], run: Run[T], discard: Discard[T], delay: float
) -> tuple[Done[T] | None, list[Outcome], float | None]:
    """The first call to succeed among the first and, after `delay` or its failure, the second.

    Returns the winner (None when both failed), every other call's outcome, and when
    the second call started (seconds after the first; None if it never did).
    """
    calls = Calls(run, discard)
    backups = list(routes[1:2])
    losers: list[Outcome] = []
    hedged_after: float | None = None
    try:
        calls.start(routes[0])
        while calls.pending:
            finished = await calls.next_done(within=delay if backups else None)
            winner = None
            for done in finished:
                if done.failure is not None:
                    losers.append(done.failure)
                elif winner is None:
                    winner = done
                else:  # both came back in the same turn of the loop: the first started wins
                    losers.append(await discard(done))
            if winner is not None:
                losers.extend(await calls.cancel_rest())
                return winner, losers, hedged_after
            if backups:  # the first is slow (nothing finished) or failed: start the second now
                hedged_after = calls.elapsed()
                calls.start(backups.pop())
        return None, losers, hedged_after
    finally:
        await calls.cancel_rest()  # anything left only when we are being cancelled ourselves


def _header(hedged_after: float | None, winner: RouteInfo | None, routes: Sequence[RouteInfo]) -> str:
    if hedged_after is None:
        return "hedge; not hedged" if winner is not None else "hedge; not hedged; failed"
    won = "both failed" if winner is None else "first won" if winner.id == routes[0].id else "second won"
    return f"hedge; second started after {hedged_after * 1000:.0f} ms; {won}"
