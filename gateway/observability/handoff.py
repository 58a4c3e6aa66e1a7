"""What the request path hands over, and what turns it into metrics and request log lines.

The event loop only appends a tuple to a deque (atomic, no lock, no wake-up):

    hand_off.call(row, clock)        gateway.accounting, through billing.metering's `recorded` hook
    hand_off.answer(status, clock)   gateway.fastpath, for an answer no call was made for
    hand_off.refusal(kind, tenant)   gateway.accounting, a limiter's refusal that is the answer

Every PORTICO_METRICS_INTERVAL seconds everything waiting is taken: the
metrics are updated, one `portico.requests` log line is written per request,
and the gauges (gauges.py) are sampled. A server's event loop does that
itself (`serve_on`, from the ASGI start-up), a few items per turn so that
requests keep their turns in between, and adds the pass's tallies to the
metrics once the pass is over. A process with no such loop (a worker running
batch lines) gets a daemon thread instead, started by its first item.
/metrics drains the queue first, so a scrape of this process sees every
request it has answered.

Why the loop rather than a thread: the work is the same, but on a thread of
its own it cost more than twice as much CPU. Measured under 32 clients with
the limited key: the thread took 23-25 µs per request, while the loop takes
5-10 µs more of its own. Likely reasons: the items, made on the loop's thread, are read
from another core's cache, and the two threads hand the interpreter to each
other dozens of times a second.
"""

from __future__ import annotations

import asyncio
import atexit
import logging
import threading
import time
from collections import deque
from typing import Any

from django.conf import settings

from gateway.observability import gauges, request_log
from gateway.observability.clock import RequestClock
from gateway.observability.metrics import Metrics

logger = logging.getLogger(__name__)

_CALL, _ANSWER, _REFUSAL = 0, 1, 2
# Items a loop's turn takes at most, some 0.08 ms of work: the requests waiting behind it wait no longer than that.
# One client, plain key, alternating runs: with 32 a turn its p99 was 1.99-2.08 ms, against 1.18-1.31 when a thread
# drained; with 8 it is 1.22-1.31 ms, for 0.3 % more instructions per request on the loop.
TURN = 8
# When a scrape is draining on another thread, the loop looks again this much later rather than wait for it.
BUSY_RETRY = 0.01
# The thread's drain sleeps this long after every SLICE items. Its Python holds the interpreter; the event loop's
# thread, wanting it back for a request, would wait CPython's whole switch interval (5 ms) before it could ask
# for it. A sleep hands it over at once: the loop waits for a slice (some 0.3 ms of work), not 5 ms. The plain
# key's p99 at one client went from 5.6-6.1 ms to 2.3-2.4 ms, with no loss at 32 clients (alternating bench runs).
SLICE = 16
PAUSE = 0.0001


class HandOff:
    def __init__(self, metrics: Metrics, *, interval: float) -> None:
        self.metrics = metrics
        self.interval = interval
        self._pending: deque[tuple[Any, ...]] = deque()
        self._lock = threading.Lock()  # one drain at a time: the thread's, or a scrape's
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()
        self._loop: asyncio.AbstractEventLoop | None = None  # the server's loop, once it drains here
        self._timer: asyncio.TimerHandle | asyncio.Handle | None = None
        self._at_exit = False

    # --- the request path: one append each ---

    def call(self, row: dict[str, Any], clock: RequestClock | None) -> None:
        self._pending.append((_CALL, row, clock))
        if self._loop is None and self._thread is None:  # a worker running batch lines starts it here
            self.start()

    def answer(self, status: int, clock: RequestClock, path: str) -> None:
        self._pending.append((_ANSWER, status, clock, path))
        if self._loop is None and self._thread is None:
            self.start()

    def refusal(self, refused: str, tenant: str) -> None:
        self._pending.append((_REFUSAL, refused, tenant))
        if self._loop is None and self._thread is None:
            self.start()

    # --- a server's event loop ---

    def serve_on(self, loop: asyncio.AbstractEventLoop) -> None:
        """Drain on `loop` from now on, called from it; a thread started before then is stopped first."""
        if self._loop is loop:
            return
        self.stop()
        self._loop = loop
        self._timer = loop.call_later(self.interval, self._turn)
        self._drain_at_exit()

    def _turn(self) -> None:
        """One turn's share of the drain; the next share on the next turn, or the next pass an interval later."""
        loop = self._loop
        if loop is None:
            return
        try:
            if not self._lock.acquire(blocking=False):  # a scrape drains on its own thread: it takes them all
                self._timer = loop.call_later(BUSY_RETRY, self._turn)
                return
            try:
                self._drain_locked(limit=TURN, flush=False)
                if not self._pending:  # the pass is over: its tallies go to the metrics at once, not turn by turn
                    self.metrics.flush()
            finally:
                self._lock.release()
            if self._pending:
                self._timer = loop.call_soon(self._turn)
                return
            gauges.sample(self.metrics)
        except Exception:  # noqa: BLE001 - observing must never stop; the requests themselves are served
            logger.exception("metrics and request log hand-off failed; carrying on")
        self._timer = loop.call_later(self.interval, self._turn)

    # --- a thread, where no server's loop drains ---

    def start(self) -> None:
        if self._thread is None and self._loop is None:
            self._stop.clear()
            self._thread = threading.Thread(target=self._run, name="portico-observer", daemon=True)
            self._thread.start()
            self._drain_at_exit()

    def _drain_at_exit(self) -> None:
        if not self._at_exit:
            self._at_exit = True
            atexit.register(self.stop)

    def stop(self) -> None:
        """Stop draining, on a thread or a loop (called from that loop), and drain what is left."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(2.0)
            self._thread = None
        if self._timer is not None and self._loop is not None and not self._loop.is_closed():
            self._timer.cancel()  # at exit, a loop that closed without the server's shutdown has dropped it
        self._timer, self._loop = None, None
        self.drain()

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            try:
                self.drain(pausing=True)
                gauges.sample(self.metrics)
            except Exception:  # noqa: BLE001 - observing must never stop; the requests themselves are served
                logger.exception("metrics and request log hand-off failed; carrying on")

    def drain(self, *, pausing: bool = False) -> int:
        """Apply everything waiting; how many items were. `pausing`: give the interpreter up every SLICE items."""
        with self._lock:
            return self._drain_locked(pausing=pausing)

    def _drain_locked(self, *, pausing: bool = False, limit: int | None = None, flush: bool = True) -> int:
        """`drain`, under the lock already held; `limit`: at most that many items. Not `flush`: what was counted
        stays tallied for a later flush (a scrape's drain flushes, so it sees every request all the same)."""
        pending, metrics, log_on = self._pending, self.metrics, request_log.enabled()
        done = 0
        with request_log.batched():
            while pending and done != limit:
                try:
                    item = pending.popleft()
                except IndexError:
                    break
                done += 1
                if pausing and not done % SLICE:
                    _pause()
                if item[0] == _CALL:
                    _, row, clock = item
                    call = clock.call if clock is not None else None
                    if call is None or call.request_id != row["request_id"]:
                        call = clock = None  # a call made in a request's task but not its own (a batch line)
                    tenant = call.grant.tenant_slug if call is not None else str(row["tenant_id"])
                    overhead = clock.seconds if clock is not None else None
                    metrics.record_call(row, tenant if metrics.tenant_labels else "", overhead)
                    if log_on:
                        request_log.call(row, tenant, overhead)
                elif item[0] == _ANSWER:
                    _, status, clock, path = item
                    metrics.record_answer(status, clock.seconds)
                    if log_on:
                        request_log.answer(status, clock, path)
                else:
                    _, refused, tenant = item
                    metrics.record_refusal(refused, tenant if metrics.tenant_labels else "")
            if flush:
                metrics.flush()
        return done


def _pause() -> None:
    time.sleep(PAUSE)


def _build() -> HandOff:
    from gateway.observability.metrics import build
    from gateway.observability.registry import process_registry

    return HandOff(build(process_registry()), interval=settings.PORTICO_METRICS_INTERVAL)


hand_off = _build()
