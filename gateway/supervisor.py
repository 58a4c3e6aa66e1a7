"""The parent of `portico serve --workers N`: uvicorn's supervisor, with a bound on how long stopping takes.

uvicorn's supervisor sends each worker one SIGTERM and then waits for it with
no limit. A worker that misses that signal (one was seen idle in its event
loop, the signal never acted on) keeps the parent, the port and its database
connections forever, and an orchestrator's stop turns into a kill of the
parent alone, which orphans the worker. Here a worker still running a few
seconds after the SIGTERM is sent another, and one still running at the end
of the grace is killed, so the parent always exits and takes its workers
with it.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from multiprocessing.process import BaseProcess
from typing import Protocol

from uvicorn.supervisors.multiprocess import Multiprocess

logger = logging.getLogger("uvicorn.error")

# Seconds after the first SIGTERM when a worker still running is sent a second one.
RESEND_AFTER = 5.0


class Worker(Protocol):
    """What the stop needs of uvicorn's worker handle."""

    @property
    def process(self) -> BaseProcess: ...

    @property
    def pid(self) -> int | None: ...


class BoundedMultiprocess(Multiprocess):
    """uvicorn's `Multiprocess`, whose stop ends within `grace` seconds of the workers' SIGTERM."""

    grace: float = 30.0

    def join_all(self) -> None:
        stop_workers(self.processes, self.grace)


def stop_workers(
    processes: Sequence[Worker], grace: float, *, clock: Callable[[], float] = time.monotonic, poll: float = 0.1
) -> None:
    """Wait for workers already sent SIGTERM: resend it once, and kill those alive when `grace` runs out."""
    started = clock()
    resent = False
    while running := [process for process in processes if process.process.is_alive()]:
        waited = clock() - started
        if waited >= grace:
            for process in running:
                logger.warning("Worker [%s] did not stop within %.0f s of SIGTERM: killing it", process.pid, grace)
                process.process.kill()
                process.process.join()
            return
        if not resent and waited >= min(RESEND_AFTER, grace / 2):
            resent = True
            for process in running:
                logger.info("Worker [%s] is still running: sending SIGTERM again", process.pid)
                process.process.terminate()
        running[0].process.join(poll)
