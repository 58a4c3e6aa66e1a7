"""Background jobs through a real broker: `portico worker` and `portico beat` as processes, the test Redis between.

The tasks are tests/celery_tasks.py's; they leave their traces in Redis, where
each test reads them under a key of its own.
"""

from __future__ import annotations

import fcntl
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import redis
from django.conf import settings

from gateway.background import enqueue
from tests.celery_processes import CeleryWorker, StartBeat, StartWorker
from tests.celery_tasks import trace
from tests.servers import PorticoServer

pytestmark = pytest.mark.integration

TASKS = ["tests.celery_tasks"]
DEADLINE = 30.0
# A worker that dies mid-job leaves it unacknowledged; another worker takes it back this many seconds after it was
# handed out. The hard time limit must stay below it (gateway/settings.py checks).
VISIBILITY = "3"
SHORT_LIMITS = {"PORTICO_CELERY_VISIBILITY_TIMEOUT": VISIBILITY, "CELERY_TASK_TIME_LIMIT": "2"}
SHORT_LIMITS["CELERY_TASK_SOFT_TIME_LIMIT"] = "1"


@pytest.fixture
def traces() -> Iterator[redis.Redis]:
    client = redis.Redis.from_url(settings.REDIS_URL, decode_responses=True)
    yield client
    for key in client.scan_iter(f"{settings.PORTICO_REDIS_PREFIX}:celery-test:*"):
        client.delete(key)
    client.close()


@pytest.fixture
def key() -> str:
    return uuid.uuid4().hex[:12]


def until(condition: Callable[[], object], what: str, deadline: float = DEADLINE) -> None:
    give_up = time.monotonic() + deadline
    while not condition():
        assert time.monotonic() < give_up, f"gave up waiting: {what}"
        time.sleep(0.02)


def broker_queue(name: str) -> str:
    """The Redis list that holds the queue `name` (see CELERY_BROKER_TRANSPORT_OPTIONS' key prefix)."""
    return f"{settings.PORTICO_REDIS_PREFIX}:celery:{name}"


def test_a_job_enqueued_here_runs_in_a_worker_which_takes_interactive_jobs_before_batch_ones(
    start_worker: StartWorker, traces: redis.Redis, key: str
) -> None:
    for queue in ("batch", "interactive", "batch", "interactive"):
        enqueue("tests.celery_tasks.record", key, queue, queue=queue)
    # They wait in the broker, published by this process's background threads, before any worker runs.
    until(lambda: traces.llen(broker_queue("batch")) == traces.llen(broker_queue("interactive")) == 2, "published")

    worker: CeleryWorker = start_worker(include=TASKS)

    until(lambda: traces.llen(trace(key, "values")) == 4, "every job ran")
    ran = [value.split(":") for value in traces.lrange(trace(key, "values"), 0, -1)]
    # One job at a time (concurrency 1, prefetch 1), the interactive queue first however they were queued.
    assert [what for what, _ in ran] == ["interactive", "interactive", "batch", "batch"]
    assert all(int(pid) != worker.pid for _, pid in ran), "jobs run in the worker's pool, not its main process"


def test_beat_sends_the_periodic_job_at_the_interval_its_setting_gives(
    start_worker: StartWorker, start_beat: StartBeat, traces: redis.Redis
) -> None:
    start_worker(include=TASKS)
    start_beat(options=["--scheduler", "tests.celery_tasks:TickScheduler"], PORTICO_BATCH_SWEEP_INTERVAL="0.5")

    until(lambda: traces.llen(trace("tick", "at")) >= 4, "four ticks")
    ticks = [float(at) for at in traces.lrange(trace("tick", "at"), 0, -1)]
    gaps = [later - earlier for earlier, later in zip(ticks, ticks[1:], strict=False)]
    assert all(0.3 < gap < 2.0 for gap in gaps), gaps


def test_a_job_whose_worker_is_killed_mid_job_is_run_again_by_another_and_done_once(
    start_worker: StartWorker, traces: redis.Redis, key: str
) -> None:
    first = start_worker(include=TASKS, **SHORT_LIMITS)
    enqueue("tests.celery_tasks.hold_once", key)
    until(lambda: traces.get(trace(key, "runs")) == "1", "the first worker started the job")

    first.kill()  # the worker and its pool, mid-job: nothing acknowledges the job
    traces.set(trace(key, "release"), "1")
    second = start_worker(include=TASKS, **SHORT_LIMITS)

    until(lambda: traces.get(trace(key, "completions")) == "1", "the job done by the second worker")
    assert traces.get(trace(key, "runs")) == "2"
    assert traces.lrange(trace(key, "pids"), 0, -1)[0] != traces.lrange(trace(key, "pids"), 0, -1)[1]
    # Acknowledged this time: nothing is left for a third delivery.
    until(lambda: traces.hlen(broker_queue("unacked")) == 0, "the job acknowledged")
    assert traces.llen(broker_queue("default")) == 0
    assert second.running


def test_without_a_broker_a_server_keeps_the_schedule_while_it_runs_and_lets_it_go_when_it_stops(
    celery_env: dict[str, str], tmp_path: Path
) -> None:
    env = {**celery_env, "PORTICO_CELERY_BROKER_URL": "embedded", "PORTICO_INPROCESS_SCHEDULER": "true"}
    server = PorticoServer(env={**env, "PORTICO_DATA_DIR": str(tmp_path)}, log_path=tmp_path / "server.log")
    lock_path = tmp_path / "scheduler.lock"
    server.start()
    try:
        until(lambda: lock_path.exists(), "the schedule's lock file")
        with lock_path.open("a") as lock:
            with pytest.raises(BlockingIOError):
                fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
            server.stop()
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)  # let go on shutdown
    finally:
        server.stop()
