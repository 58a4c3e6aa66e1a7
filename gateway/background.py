"""Handing work to the background: the one way Portico's code does it.

    enqueue("gateway.tasks.batches_start", batch_id)
    enqueue("gateway.tasks.batches_run_chunk", batch_id, queue="batch", countdown=5)

Two modes, chosen by PORTICO_CELERY_BROKER_URL (else REDIS_URL; gateway/settings.py):

* with a broker, the job is published for `portico worker`, and `portico beat`
  keeps the schedule (gateway/schedule.py);
* without one (the embedded default), the job runs in this process on one of
  PORTICO_BACKGROUND_THREADS threads, with the task's own retry policy
  (gateway/tasks_base.py), and each server process keeps the schedule
  (`start_scheduler`, from the ASGI lifespan), one per data directory at a time.

Either way the caller never waits: `enqueue` puts the job on an in-memory queue
that those threads run or publish (past PORTICO_BACKGROUND_QUEUE_LIMIT waiting
jobs, a new one is dropped and logged). Inside a transaction the job is queued
once the transaction commits, so it never looks for rows that are not there yet,
and never runs at all if they were rolled back. Jobs run in queue order:
`interactive` before `default` before `batch`.

The embedded mode is not durable: jobs waiting or running when the process
stops are lost (a periodic job runs again at its next interval), and time
limits do not apply (a thread cannot be killed). See docs/background-jobs.md.
"""

from __future__ import annotations

import atexit
import fcntl
import functools
import heapq
import importlib
import io
import itertools
import logging
import os
import queue
import threading
import time
import uuid
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import IO, Any

from celery import Task
from celery.exceptions import Ignore, Retry
from django.conf import settings
from django.db import connections, transaction
from kombu.exceptions import OperationalError

from gateway.celery import QUEUES, app, broker_configured, queue_for
from gateway.schedule import AT_START, JOBS, PeriodicJob, StartJob, is_registered, periodic_jobs

logger = logging.getLogger(__name__)

_PRIORITY = {name: rank for rank, name in enumerate(QUEUES)}


def enqueue(
    task_name: str, *args: Any, queue: str | None = None, countdown: float | None = None, **kwargs: Any
) -> None:
    """Run task `task_name` with these arguments in the background; returns at once.

    `queue` is one of QUEUES (default: the task's route in CELERY_TASK_ROUTES, else
    `default`); `countdown` delays the job by that many seconds. The task's own
    arguments cannot be called `queue` or `countdown`.
    """
    if queue is not None and queue not in QUEUES:
        raise ValueError(f"unknown queue {queue!r}: one of {', '.join(QUEUES)}")
    job = Job(name=task_name, args=args, kwargs=kwargs, queue=queue or queue_for(task_name), countdown=countdown)
    if transaction.get_connection().in_atomic_block:
        transaction.on_commit(functools.partial(runner.submit, job))
    else:
        runner.submit(job)


@dataclass(eq=False)
class Job:
    name: str
    args: tuple[Any, ...]
    kwargs: dict[str, Any]
    queue: str
    countdown: float | None = None
    id: str = field(default_factory=lambda: str(uuid.uuid4()))
    retries: int = 0
    # Set once the job is over: it ran for the last time, or was dropped.
    done: threading.Event = field(default_factory=threading.Event)


class Runner:
    """This process's background threads: they run jobs (embedded) or publish them (with a broker).

    The threads start with the first job. Jobs that are not due yet (a countdown,
    a retry's backoff; embedded only, as a broker keeps those itself) wait in a
    heap until a timer thread moves them to the queue.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._lanes = _Lanes()

    def submit(self, job: Job) -> None:
        lanes = self._start()
        if job.countdown and not broker_configured():
            lanes.put_later(job)
        else:
            lanes.put(job)

    def pending(self) -> int:
        """Jobs waiting to run or to be published, due or not."""
        return self._lanes.ready.qsize() + len(self._lanes.later)

    def _start(self) -> _Lanes:
        lanes = self._lanes
        if lanes.threads:
            return lanes
        with self._lock:
            lanes = self._lanes
            if not lanes.threads:
                count = settings.PORTICO_BACKGROUND_THREADS
                lanes.threads = [
                    threading.Thread(target=self._work, args=(lanes,), name=f"portico-background-{n}", daemon=True)
                    for n in range(count)
                ]
                lanes.threads.append(threading.Thread(target=_wait_for_due, args=(lanes,), daemon=True))
                for thread in lanes.threads:
                    thread.start()
        return lanes

    def stop(self, timeout: float = 5.0) -> None:
        """Let the jobs running now finish, for up to `timeout` seconds; those still waiting are dropped."""
        with self._lock:
            lanes, self._lanes = self._lanes, _Lanes()
        if not lanes.threads:
            return
        with lanes.timer:
            lanes.stopping = True
            left = len(lanes.later)
            lanes.timer.notify()
        for _ in lanes.threads[:-1]:  # one for each thread but the timer
            lanes.ready.put((-1, next(lanes.seq), None))
        deadline = time.monotonic() + timeout
        for thread in lanes.threads:
            thread.join(max(0.0, deadline - time.monotonic()))
        left += lanes.ready.qsize()
        if left:
            logger.warning("%d background job(s) were still waiting at shutdown and were dropped", left)

    def forget(self) -> None:
        """In a forked child: the parent's threads are not there, and its locks may be held forever."""
        self._lock = threading.Lock()
        self._lanes = _Lanes()

    def _work(self, lanes: _Lanes) -> None:
        while True:
            _, _, job = lanes.ready.get()
            if job is None:
                return
            try:
                self._execute(job, lanes)
            except Exception:  # noqa: BLE001 - no job may take a thread down; its failure is logged with the traceback
                logger.exception("background job %s failed", job.name)
                job.done.set()

    def _execute(self, job: Job, lanes: _Lanes) -> None:
        if broker_configured():
            try:
                app.send_task(job.name, job.args, job.kwargs, task_id=job.id, queue=job.queue, countdown=job.countdown)
            except OperationalError as exc:  # the broker did not answer, after the publish retry policy
                logger.error("background job %s dropped: the broker did not take it (%s)", job.name, exc)
            finally:
                job.done.set()
            return
        task = registered_task(job.name)
        if task is None:
            is_registered(job.name, ())  # says so, once
            job.done.set()
            return
        started = time.monotonic()
        try:
            _call(task, job)
            logger.debug("background job %s ran in %.3f s", job.name, time.monotonic() - started)
        except Retry as retry:
            _retry(job, retry, lanes)
            return
        except Ignore:
            pass
        finally:
            # This thread serves no request: nothing else would hand its connections back to the pool.
            connections.close_all()
        job.done.set()


@dataclass(eq=False)
class _Lanes:
    """One generation of a runner's queues and threads: stop() leaves it to the threads that still hold it."""

    ready: queue.PriorityQueue[tuple[int, int, Job | None]] = field(default_factory=queue.PriorityQueue)
    later: list[tuple[float, int, Job]] = field(default_factory=list)
    timer: threading.Condition = field(default_factory=threading.Condition)
    seq: itertools.count[int] = field(default_factory=itertools.count)
    threads: list[threading.Thread] = field(default_factory=list)
    stopping: bool = False

    def put(self, job: Job) -> None:
        waiting = self.ready.qsize()
        if waiting >= settings.PORTICO_BACKGROUND_QUEUE_LIMIT:
            _drop(job, waiting)
            return
        self.ready.put((_PRIORITY.get(job.queue, 1), next(self.seq), job))

    def put_later(self, job: Job) -> None:
        """Queue `job` once its countdown has passed."""
        with self.timer:
            if len(self.later) >= settings.PORTICO_BACKGROUND_QUEUE_LIMIT:
                _drop(job, len(self.later))
                return
            heapq.heappush(self.later, (time.monotonic() + (job.countdown or 0), next(self.seq), job))
            self.timer.notify()


def _drop(job: Job, waiting: int) -> None:
    logger.error("background job %s dropped: %d jobs were waiting (PORTICO_BACKGROUND_QUEUE_LIMIT)", job.name, waiting)
    job.done.set()


def _wait_for_due(lanes: _Lanes) -> None:
    with lanes.timer:
        while not lanes.stopping:
            now = time.monotonic()
            while lanes.later and lanes.later[0][0] <= now:
                lanes.put(heapq.heappop(lanes.later)[2])
            lanes.timer.wait(lanes.later[0][0] - now if lanes.later else None)


def _retry(job: Job, retry: Retry, lanes: _Lanes) -> None:
    """Run `job` again once the wait its task's policy asked for has passed."""
    if retry.sig is not None:
        job.args, job.kwargs = tuple(retry.sig.args), dict(retry.sig.kwargs)
    job.retries += 1
    job.countdown = max(0.01, _seconds(retry.when))
    logger.warning("background job %s: retry %d in %.1f s after %r", job.name, job.retries, job.countdown, retry.exc)
    lanes.put_later(job)


def _seconds(when: Any) -> float:
    """A Retry's `when`: seconds, or the datetime of the retry."""
    if isinstance(when, datetime):
        return (when - datetime.now(when.tzinfo)).total_seconds()
    return float(when or 0)


def _call(task: Task, job: Job) -> None:
    """Run `task` in this thread as a worker would, so that its retry policy applies (it raises Retry)."""
    task.push_request(
        id=job.id,
        task=job.name,
        args=list(job.args),
        kwargs=job.kwargs,
        retries=job.retries,
        is_eager=True,
        called_directly=False,
        delivery_info={"is_eager": True, "routing_key": job.queue},
    )
    try:
        task.run(*job.args, **job.kwargs)
    finally:
        task.pop_request()


@functools.cache
def _discover_tasks() -> None:
    # A worker imports every app's tasks module, and CELERY_IMPORTS, as it starts; other processes do it once,
    # on first need (the schedule may fire before anything else has imported gateway.tasks_queue).
    app.autodiscover_tasks(force=True)
    for module in settings.CELERY_IMPORTS:
        importlib.import_module(module)


def registered_task(name: str) -> Task | None:
    _discover_tasks()
    task: Task | None = app.tasks.get(name)
    return task


# --- the embedded schedule ---------------------------------------------------------------------------------------

_LOCK_RETRY = 5.0  # seconds between attempts to take the schedule over from another process


class EmbeddedScheduler:
    """The schedule of gateway/schedule.py, kept by this process when there is no broker (and so no beat).

    Of the processes that share a data directory (a server's workers), the one
    that holds its lock file keeps the schedule; when it stops, another takes
    over within _LOCK_RETRY seconds. A job's first run comes one interval after
    the start, as with beat, and a job whose previous run is still going is
    skipped rather than run twice at once. The `at_start` jobs are queued once,
    as soon as the lock is held: what a worker queues as it starts, with a broker.
    """

    def __init__(
        self,
        *,
        jobs: tuple[PeriodicJob, ...] = JOBS,
        at_start: tuple[StartJob, ...] = (),
        lock_path: Path | None = None,
    ) -> None:
        self.jobs = jobs
        self.at_start = at_start
        self.lock_path = lock_path
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._last: dict[str, Job] = {}

    def start(self) -> None:
        if self._thread is not None:
            return
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, args=(self._stop,), name="portico-schedule", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        thread, self._thread = self._thread, None
        if thread is not None:
            self._stop.set()
            thread.join(timeout)

    def forget(self) -> None:
        self._thread = None

    def _run(self, stop: threading.Event) -> None:
        handle = _take_lock(self.lock_path or Path(settings.DATA_DIR) / "scheduler.lock", stop)
        if handle is None:
            return
        try:
            for job in self.at_start:
                self._fire(job.task, job.kwargs)
            next_at: dict[str, float] = {}
            while True:
                now = time.monotonic()
                jobs = periodic_jobs(self.jobs)
                for due in jobs:
                    if now >= next_at.setdefault(due.task, now + due.interval):
                        next_at[due.task] = now + due.interval
                        self._fire(due.task)
                wake = min((next_at[due.task] for due in jobs), default=now + 60.0)
                if stop.wait(max(0.01, wake - now)):
                    return
        finally:
            handle.close()  # lets another process take over

    def _fire(self, task: str, kwargs: dict[str, Any] | None = None) -> None:
        _discover_tasks()
        if not is_registered(task, app.tasks):
            return
        previous = self._last.get(task)
        if previous is not None and not previous.done.is_set():
            logger.warning("periodic job %s skipped: its previous run has not finished", task)
            return
        job = Job(name=task, args=(), kwargs=dict(kwargs or {}), queue=queue_for(task))
        self._last[task] = job
        runner.submit(job)


def _take_lock(path: Path, stop: threading.Event) -> IO[str] | None:
    """The schedule's lock file, locked by this process; None if `stop` was set before it could be."""
    try:
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        handle = path.open("a", encoding="utf-8")
    except OSError as exc:
        logger.warning("cannot open %s (%s): every process keeps the schedule", path, exc)
        return io.StringIO()  # a lock that locks nothing
    while True:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return handle
        except BlockingIOError:
            if stop.wait(_LOCK_RETRY):
                handle.close()
                return None


runner = Runner()
scheduler = EmbeddedScheduler(at_start=AT_START)


def start_scheduler() -> bool:
    """Keep the schedule in this process: only without a broker, unless PORTICO_INPROCESS_SCHEDULER is off."""
    if not settings.PORTICO_INPROCESS_SCHEDULER:
        return False
    if broker_configured():
        logger.warning("PORTICO_INPROCESS_SCHEDULER is ignored with a broker: `portico beat` keeps the schedule")
        return False
    scheduler.start()
    return True


def shutdown(timeout: float = 5.0) -> None:
    """Stop the schedule, and let running jobs finish for up to `timeout` seconds."""
    scheduler.stop(timeout)
    runner.stop(timeout)


def _forget_after_fork() -> None:
    runner.forget()
    scheduler.forget()


os.register_at_fork(after_in_child=_forget_after_fork)
# A command (`portico ...`) that enqueued a job in the embedded mode lets it finish before the process ends.
atexit.register(shutdown)
