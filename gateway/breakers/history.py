"""The history of breaker transitions, written to `gateway.models.BreakerTransition` off the request path.

The event loop only appends to a list; a thread inserts what has gathered
every `interval` seconds. A database that does not answer costs the rows of
that flush, with a log line, never a request: history is for operators, and
the breaker works without it. An operator's reset, made in the admin's own
thread, is written at once (`write`).

A breaker that opens from closed is announced to the operators' alert
channels with the same insert (notifications): only the process that made a
transition has it here (RedisBreakers: the one whose script made it), so each
opening is announced once. Reopening after a failed probe is not announced
again: the deployment has not recovered since the last alert.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
from collections.abc import Callable, Sequence

from django.db import DatabaseError, connection, transaction

from gateway.breakers.rules import CLOSED, OPEN, Transition, moment

logger = logging.getLogger(__name__)

PENDING_MAX = 10_000  # transitions held for the next flush; more are dropped (a breaker flapping very fast)

Insert = Callable[[Sequence[Transition], str], None]


def process_name() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"[:100]


def insert_transitions(transitions: Sequence[Transition], process: str) -> None:
    from gateway.models import BreakerTransition

    rows = [
        BreakerTransition(
            route_id=change.route_id,
            route_name=change.route_name[:200],
            from_state=change.from_state,
            to_state=change.to_state,
            reason=change.reason,
            at=moment(change.at),
            process=process,
        )
        for change in transitions
    ]
    with transaction.atomic():
        BreakerTransition.objects.bulk_create(rows)
        announce_openings(transitions)


def announce_openings(transitions: Sequence[Transition]) -> None:
    # Imported here, as the models above: the breakers load before the apps' models are ready.
    from notifications.models import AlertEvent
    from notifications.services import notify

    for change in transitions:
        if change.from_state != CLOSED or change.to_state != OPEN:
            continue
        at = moment(change.at)
        notify(
            event=AlertEvent.BREAKER_OPEN,
            tenant_id=None,
            key=f"breaker:{change.route_id}:{change.at!r}",
            subject=f"Portico: deployment {change.route_name or change.route_id} is out of rotation",
            text=f"Its circuit breaker opened at {at:%Y-%m-%d %H:%M:%S} UTC: {change.reason}.",
            payload={
                "deployment": {"id": change.route_id, "name": change.route_name},
                "reason": change.reason,
                "at": at.isoformat(),
            },
        )


class TransitionLog:
    def __init__(self, *, interval: float = 1.0, insert: Insert = insert_transitions) -> None:
        self.interval = interval
        self.process = process_name()
        self._insert = insert
        self._pending: list[Transition] = []
        self._dropped = 0
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def add(self, change: Transition) -> None:
        with self._lock:
            if len(self._pending) < PENDING_MAX:
                self._pending.append(change)
            else:
                self._dropped += 1

    def flush(self) -> int:
        """Insert what has gathered; return how many rows were written."""
        with self._lock:
            pending, self._pending = self._pending, []
            dropped, self._dropped = self._dropped, 0
        if dropped:
            logger.warning("dropped %d breaker transition(s) from the history: too many at once", dropped)
        return self.write(pending)

    def write(self, transitions: Sequence[Transition]) -> int:
        if not transitions:
            return 0
        try:
            self._insert(transitions, self.process)
        except DatabaseError:
            logger.exception("could not write %d breaker transition(s) to the history; dropped", len(transitions))
            return 0
        return len(transitions)

    def start(self) -> None:
        if self._thread is None:
            self._stop.clear()
            self._thread = threading.Thread(target=self._run, name="portico-breaker-history", daemon=True)
            self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        """Write what is left and end the thread; blocks, so call it off the event loop."""
        if self._thread is not None:
            self._stop.set()
            self._thread.join(timeout)
            self._thread = None

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            self._flush_and_release()
        self._flush_and_release()

    def _flush_and_release(self) -> None:
        try:
            self.flush()
        finally:
            connection.close()  # this thread's own; the pool gets it back between the rare flushes
