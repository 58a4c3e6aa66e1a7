"""The values ensembles hand back, and the concurrent calls of one ensemble.

`Calls` is the one place tasks are started: each either finishes and is collected
with `next_done`, or is cancelled and awaited by `cancel_rest`, which the modes call
both before returning and in a `finally`, so no task outlives its ensemble.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Generic, Protocol, TypeVar

if TYPE_CHECKING:
    from providers.facade import RouteInfo

logger = logging.getLogger(__name__)

CANCELLED = 499  # the status recorded for a call Portico cancelled, as nginx logs a request cut short


@dataclass(frozen=True, slots=True)
class Outcome:
    """One upstream call on one deployment, as the loop bills and records it."""

    route: RouteInfo
    status: int  # the upstream's status; CANCELLED when cancelled here; 502 when no answer came
    body: bytes = b""  # the chat completion JSON, or the error JSON
    usage: dict[str, Any] | None = None  # the upstream's usage object; None when unknown
    latency: float = 0.0  # seconds from the call's start to its end (or to its cancellation)
    ttfb: float | None = None
    error: Exception | None = None
    detail: Any = field(default=None, compare=False)  # whatever the loop attaches; never read here

    @property
    def ok(self) -> bool:
        return self.error is None and 200 <= self.status < 300

    @property
    def cancelled(self) -> bool:
        return isinstance(self.error, Superseded)


class Superseded(Exception):
    """Portico cancelled this call: another deployment's answer was taken."""


@dataclass(frozen=True, slots=True)
class EnsembleResult:
    chosen: Outcome  # what the client gets
    outcomes: tuple[Outcome, ...]  # every upstream call made, chosen included
    headers: dict[str, str]  # x-portico-ensemble, and x-portico-votes for a vote


Attempt = Callable[["RouteInfo"], Awaitable[Outcome]]


class OpenStream(Protocol):
    """A stream the loop has opened and read the first event of; all a hedge needs is to close a loser."""

    async def aclose(self) -> None: ...


S = TypeVar("S", bound=OpenStream)
T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class Done(Generic[T]):
    route: RouteInfo
    value: T | None  # an answer or an opened stream that may be taken
    failure: Outcome | None  # else how the call failed
    latency: float


Run = Callable[["RouteInfo"], Coroutine[Any, Any, Done[T]]]
Discard = Callable[[Done[T]], Awaitable[Outcome]]


class Calls(Generic[T]):
    """The concurrent calls of one ensemble. `run` never raises; `discard` turns an unwanted value into an outcome."""

    def __init__(self, run: Run[T], discard: Discard[T]) -> None:
        self._run = run
        self._discard = discard
        self._clock = asyncio.get_running_loop().time
        self.began = self._clock()
        self._started = 0
        self._tasks: dict[asyncio.Task[Done[T]], tuple[int, RouteInfo, float]] = {}

    @property
    def pending(self) -> bool:
        return bool(self._tasks)

    def elapsed(self) -> float:
        return self._clock() - self.began

    def start(self, route: RouteInfo) -> None:
        self._tasks[asyncio.create_task(self._run(route))] = (self._started, route, self._clock())
        self._started += 1

    async def next_done(self, within: float | None = None) -> list[Done[T]]:
        """The calls that finished next, in the order they were started; [] when `within` seconds passed first."""
        done, _ = await asyncio.wait(self._tasks, timeout=within, return_when=asyncio.FIRST_COMPLETED)
        finished = sorted(done, key=lambda task: self._tasks[task][0])
        for task in finished:
            del self._tasks[task]
        return [task.result() for task in finished]

    async def cancel_rest(self) -> list[Outcome]:
        """Cancel the calls still running, wait for them, and report each."""
        tasks = sorted(self._tasks, key=lambda task: self._tasks[task][0])
        if not tasks:
            return []
        for task in tasks:
            task.cancel()
        await asyncio.wait(tasks)
        outcomes = []
        for task in tasks:
            _, route, began = self._tasks.pop(task)
            if task.cancelled():
                outcomes.append(superseded(route, self._clock() - began))
                continue
            # It finished before the cancellation reached it: a whole answer, or a stream to close.
            done = task.result()
            outcomes.append(done.failure if done.failure is not None else await self._discard(done))
        return outcomes


def superseded(route: RouteInfo, latency: float) -> Outcome:
    return Outcome(route, CANCELLED, latency=latency, error=Superseded("another deployment answered first"))


def failed(route: RouteInfo, exc: Exception, latency: float) -> Outcome:
    return Outcome(route, getattr(exc, "status", 502), latency=latency, error=exc)


async def call_once(attempt: Attempt, route: RouteInfo) -> Outcome:
    began = time.monotonic()
    try:
        return await attempt(route)
    except Exception as exc:  # any failure of one call is that call's outcome, never the ensemble's
        return failed(route, exc, time.monotonic() - began)


def answers(attempt: Attempt) -> Run[Outcome]:
    """Calls that return whole answers: an error answer is a failure, a 2xx one a value."""

    async def run(route: RouteInfo) -> Done[Outcome]:
        outcome = await call_once(attempt, route)
        if outcome.ok:
            return Done(route, outcome, None, outcome.latency)
        return Done(route, None, outcome, outcome.latency)

    return run


async def keep(done: Done[Outcome]) -> Outcome:
    assert done.value is not None
    return done.value  # a whole answer that lost still came back, and is billed as it is


def streams(open_stream: Callable[[RouteInfo], Awaitable[S]]) -> Run[S]:
    """Calls that open a stream and return once its first event is in."""

    async def run(route: RouteInfo) -> Done[S]:
        began = time.monotonic()
        try:
            stream = await open_stream(route)
        except Exception as exc:  # as in call_once
            latency = time.monotonic() - began
            return Done(route, None, failed(route, exc, latency), latency)
        return Done(route, stream, None, time.monotonic() - began)

    return run


async def close_loser(done: Done[S]) -> Outcome:
    assert done.value is not None
    try:
        await done.value.aclose()
    except Exception:  # a loser that fails to close must not fail the winner's call
        logger.warning("closing the losing stream of %s failed", done.route.name, exc_info=True)
    return superseded(done.route, done.latency)
