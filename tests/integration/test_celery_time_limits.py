"""A `portico worker` on a Redis broker names, as it starts, the tasks that may outlive the visibility timeout.

The default limit (CELERY_TASK_TIME_LIMIT, 90 s) is under the timeout here, so
the settings' own check lets the process load; the queued job's run has a
limit of its own (its slice in line plus the longest call), which is not.
"""

from __future__ import annotations

import pytest

from gateway.queueing.runner import run_seconds
from tests.celery_processes import StartWorker

pytestmark = pytest.mark.integration

WARNING = "should exceed every task's time limit"


def test_a_worker_names_the_tasks_that_may_outlive_the_visibility_timeout(start_worker: StartWorker) -> None:
    visibility = 120
    assert run_seconds() + 30 > visibility > 90

    worker = start_worker(PORTICO_CELERY_VISIBILITY_TIMEOUT=str(visibility))

    [said] = [line for line in worker.log().splitlines() if WARNING in line]
    assert "PORTICO_CELERY_VISIBILITY_TIMEOUT (120 s)" in said
    assert f"gateway.tasks_queue.queue_job_run ({run_seconds() + 30:g} s)" in said
    assert "gateway.tasks.batches_start" not in said  # the default limit, under the timeout


def test_a_worker_says_nothing_when_every_task_is_under_the_visibility_timeout(start_worker: StartWorker) -> None:
    worker = start_worker(PORTICO_CELERY_VISIBILITY_TIMEOUT=str(int(run_seconds()) + 60))
    assert WARNING not in worker.log()
