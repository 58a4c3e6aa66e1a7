"""Results never pile up in Redis: a real worker runs a Portico task that returns a value, and stores nothing.

Celery keeps a task's return value under `celery-task-meta-<id>` when a result
backend is set and results are not ignored; Portico sets none and ignores them
(gateway/settings.py), because tasks report through the database and the logs.
A result left in Redis would be kept for a day, one key per job, a batch of
thousands of lines included.
"""

from __future__ import annotations

import time

import pytest
import redis
from django.conf import settings

from gateway.background import enqueue
from tests.celery_processes import StartWorker

pytestmark = pytest.mark.integration

DEADLINE = 30.0
TASK = "providers.tasks.provider_discovery_run"


def test_a_task_that_returns_a_value_leaves_no_result_in_redis(start_worker: StartWorker) -> None:
    worker = start_worker(queues="default")

    # No provider to look at: the task returns its counts at once, a value a result backend would keep.
    enqueue(TASK, provider_ids=[])
    give_up = time.monotonic() + DEADLINE
    while f"Task {TASK}[" not in worker.log() or " succeeded in " not in worker.log():
        assert time.monotonic() < give_up, f"the task did not run:\n{worker.log()}"
        time.sleep(0.05)
    assert "{'providers': 0, 'failed': 0}" in worker.log()  # it returned something, and the worker said so

    with redis.Redis.from_url(settings.REDIS_URL) as client:
        kept = list(client.scan_iter(match="*celery-task-meta-*", count=1000))
        assert kept == []
