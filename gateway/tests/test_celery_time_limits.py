"""The tasks that may outlive the broker's visibility timeout, which a starting worker names (gateway.celery)."""

from __future__ import annotations

from gateway import tasks, tasks_queue  # noqa: F401 - registers the tasks with limits of their own
from gateway.celery import app, tasks_outliving
from gateway.queueing.runner import run_seconds


def test_no_task_outlives_the_default_visibility_timeout(settings) -> None:
    assert tasks_outliving(app.tasks.values(), visibility_timeout=settings.PORTICO_CELERY_VISIBILITY_TIMEOUT) == []


def test_a_task_whose_own_limit_is_not_under_the_timeout_is_named_with_its_limit() -> None:
    queue_job_limit = run_seconds() + 30  # gateway.tasks_queue.queue_job_run's own hard limit

    assert tasks_outliving(app.tasks.values(), visibility_timeout=queue_job_limit) == [
        f"gateway.tasks_queue.queue_job_run ({queue_job_limit:g} s)"
    ]
    assert tasks_outliving(app.tasks.values(), visibility_timeout=queue_job_limit + 1) == []
