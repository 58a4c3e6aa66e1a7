"""Tasks for the tests that run a real worker and beat (tests/celery_processes.py).

A worker imports this module with `--include tests.celery_tasks`; beat with
`--scheduler tests.celery_tasks:TickScheduler`. Each task leaves its traces in
Redis, under the Redis prefix of the processes (which the test process shares),
so the test reads what ran, where and how often.
"""

from __future__ import annotations

import os
import time

import redis
from celery import shared_task
from django.conf import settings

from gateway.schedule import PeriodicJob, Scheduler

HOLD_LIMIT = 30.0  # seconds a held task waits for its release before it gives up


def client() -> redis.Redis:
    return redis.Redis.from_url(settings.REDIS_URL, socket_timeout=5, socket_connect_timeout=5)


def trace(key: str, what: str) -> str:
    """The Redis key where the tasks record `what` for the test's `key`."""
    return f"{settings.PORTICO_REDIS_PREFIX}:celery-test:{key}:{what}"


@shared_task(name="tests.celery_tasks.record")
def record(key: str, value: str) -> None:
    """Append `value` and the pid of the process that ran it."""
    with client() as redis_client:
        redis_client.rpush(trace(key, "values"), f"{value}:{os.getpid()}")


@shared_task(name="tests.celery_tasks.tick")
def tick() -> None:
    """Beat's test job: records when it ran."""
    with client() as redis_client:
        redis_client.rpush(trace("tick", "at"), repr(time.time()))


@shared_task(name="tests.celery_tasks.hold_once")
def hold_once(key: str) -> None:
    """Count the run, wait until the test releases `key`, then do the work: at most once, whatever the runs."""
    with client() as redis_client:
        redis_client.incr(trace(key, "runs"))
        redis_client.rpush(trace(key, "pids"), os.getpid())
        deadline = time.monotonic() + HOLD_LIMIT
        while not redis_client.exists(trace(key, "release")):
            if time.monotonic() > deadline:
                raise TimeoutError(f"{key} was never released")
            time.sleep(0.02)
        # The idempotency key: a run that comes after one that finished does nothing.
        if redis_client.set(trace(key, "done"), "1", nx=True):
            redis_client.incr(trace(key, "completions"))


class TickScheduler(Scheduler):
    """Beat with one job, the tick, at the interval the batch sweep's setting gives (so a test sets it)."""

    jobs = (PeriodicJob("tests.celery_tasks.tick", "PORTICO_BATCH_SWEEP_INTERVAL"),)
