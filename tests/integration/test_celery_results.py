"""Results never pile up in Redis: a real worker runs a Portico task that returns a value, and stores nothing.

Celery keeps a task's return value under `celery-task-meta-<id>` when a result
backend is set and results are not ignored; Portico sets none and ignores them
(gateway/settings.py), because tasks report through the database and the logs.
A result left in Redis would be kept for a day, one key per job, a batch of
thousands of lines included.
"""

from __future__ import annotations

import re
import time

import pytest
import redis
from django.conf import settings

from gateway.background import enqueue
from tests.celery_processes import StartWorker

pytestmark = pytest.mark.integration

DEADLINE = 30.0
TASK = "providers.tasks.provider_discovery_run"
# Only this task's own line: a starting worker also runs the model-list refresh, which succeeds first.
SUCCEEDED = re.compile(re.escape(f"Task {TASK}[") + r"[^\]]+\] succeeded in [^:]+: (.*)")


def test_a_task_that_returns_a_value_leaves_no_result_in_redis(start_worker: StartWorker) -> None:
    worker = start_worker(queues="default")

    # No provider to look at: the task returns its counts at once, a value a result backend would keep.
    enqueue(TASK, provider_ids=[])
    give_up = time.monotonic() + DEADLINE
    while (succeeded := SUCCEEDED.search(worker.log())) is None:
        assert time.monotonic() < give_up, f"the task did not run:\n{worker.log()}"
        time.sleep(0.05)
    assert succeeded.group(1) == "{'providers': 0, 'failed': 0}"  # it returned something, and the worker said so

    with redis.Redis.from_url(settings.REDIS_URL) as client:
        kept = list(client.scan_iter(match="*celery-task-meta-*", count=1000))
        assert kept == []
